"""EmbeddedBroker as a context manager: free or fixed port, log capture, teardown by PID."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from nextbehavior.stream.broker import EmbeddedBroker, free_port
from nextbehavior.stream.probe import ProbeError, metadata


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_free_port_lifecycle() -> None:
    with EmbeddedBroker() as broker:
        pid = broker.pid
        assert pid is not None and broker.running
        assert broker.url == f"kafka://{broker.bootstrap}"
        assert broker.bootstrap == f"127.0.0.1:{broker.port}" and broker.port > 0
        assert metadata(broker.bootstrap).brokers[0][2] == broker.port
        assert "listening on" in broker.log_tail()
        log = broker.log_path
    assert not broker.running
    assert not _pid_alive(pid)
    assert not log.exists()  # its own temp log is removed after a clean stop
    with pytest.raises(ProbeError):
        metadata(broker.bootstrap, timeout_s=1)


def test_fixed_port_and_kept_log(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "broker.log"
    with EmbeddedBroker(port=port, log_path=log) as broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        metadata(broker.bootstrap)
    assert log.exists() and "listening on" in log.read_text()


def test_a_dead_broker_is_noticed_and_stop_is_safe() -> None:
    broker = EmbeddedBroker().start()
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGKILL)
    assert broker.wait() != 0
    assert not broker.running
    broker.stop()
    broker.stop()  # idempotent
