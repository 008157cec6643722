"""CPU per event as ``bench e2e`` measures it (stream/bench_probes.py)."""

from __future__ import annotations

import os
import sys
import time

import pytest

from nextbehavior.stream.bench_probes import cpu_meter, cpu_seconds, per_event_ms

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="CPU time is read from /proc")


@linux_only
def test_cpu_meter_counts_the_cpu_a_process_burns() -> None:
    meter = cpu_meter([os.getpid()], broker_pid=None)
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    process_ms, broker_ms = meter(100)
    assert process_ms is not None and 2.5 <= process_ms < 30  # 0.3 s over 100 events, + noise
    assert broker_ms is None  # no broker process given


@linux_only
def test_cpu_seconds_of_a_missing_process_is_none() -> None:
    assert cpu_seconds([os.getpid()]) is not None
    assert cpu_seconds([os.getpid(), 2**22 + 12345]) is None  # above pid_max's default


def test_per_event_ms_needs_both_readings() -> None:
    assert per_event_ms(1.0, 1.5, 100) == 5.0
    assert per_event_ms(None, 1.5, 100) is None
    assert per_event_ms(1.0, None, 100) is None
