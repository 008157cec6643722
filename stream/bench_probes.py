"""What ``bench e2e`` measures about the processes under test: CPU per event and profiles.

CPU time comes from ``/proc`` (:func:`~nextbehavior.stream.worker_process.process_cpu_seconds`,
Linux; None elsewhere); profiles are ``py-spy record`` runs (samples holding the GIL, per
thread, as collapsed stacks).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nextbehavior.stream.worker_process import process_cpu_seconds

CpuMeter = Callable[[int], tuple[float | None, float | None]]
"""``meter(n)``: ms of CPU per event (of ``n``) of the processes, and of the broker, so far."""


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU seconds of ``pids`` together (None if any cannot be read)."""
    used = [process_cpu_seconds(pid) for pid in pids]
    return None if any(u is None for u in used) else sum(u for u in used if u is not None)


def per_event_ms(before: float | None, after: float | None, events: int) -> float | None:
    """CPU ms per event between two readings (None if either is missing)."""
    if before is None or after is None:
        return None
    return round((after - before) * 1000.0 / events, 4)


def cpu_meter(pids: Sequence[int], broker_pid: int | None) -> CpuMeter:
    """Start counting CPU now, for ``pids`` together and for the broker process."""

    def broker() -> float | None:
        return None if broker_pid is None else process_cpu_seconds(broker_pid)

    cpu0, broker0 = cpu_seconds(pids), broker()

    def per_event(n: int) -> tuple[float | None, float | None]:
        return per_event_ms(cpu0, cpu_seconds(pids), n), per_event_ms(broker0, broker(), n)

    return per_event


def start_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` into ``out`` until :func:`stop_spies`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("py-spy")
    cmd = [str(exe) if exe.exists() else "py-spy", "record", "--pid", str(pid)]
    cmd += ["--format", "raw", "--threads", "--gil", "--rate", "200", "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_spies(spies: Sequence[subprocess.Popen[bytes]]) -> None:
    """Stop profilers (SIGINT: py-spy writes its output) and wait for them."""
    for spy in spies:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
