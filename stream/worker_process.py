"""A worker (or the passthrough) as a child process, for benchmarks: start, wait, stop.

Configured through ``NBP_*`` variables; its log goes to a file, whose tail is shown when it
fails. Readiness and assignment come from its ``/stats`` page (``assigned`` partitions).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from nextbehavior.stream.broker import die_with_parent, free_port

WORKER_MODULE: Final = ("-m", "nextbehavior.stream", "worker")
PASSTHROUGH_MODULE: Final = ("-m", "nextbehavior.stream.passthrough")


class ProcessError(RuntimeError):
    """A child process died or did not get ready; the message carries its log tail."""


class ChildProcess:
    """``python <args>`` with ``env`` added to ours and a fresh web port. On Linux it gets
    SIGTERM when the thread that started it dies, even by SIGKILL (start it from a long-lived
    thread)."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        log_dir: Path,
        *,
        append_log: bool = False,
    ) -> None:
        self.name = name
        self.web_port = free_port()
        self.log = log_dir / f"{name}.log"
        self.started_at = time.monotonic()
        full_env = {**os.environ, **env, "NBP_WEB_PORT": str(self.web_port)}
        with self.log.open("ab" if append_log else "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *args],
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stats(self) -> dict[str, Any] | None:
        """``/stats`` as JSON, or None while the web server does not answer."""
        url = f"http://127.0.0.1:{self.web_port}/stats"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far (Linux), else None."""
        return process_cpu_seconds(self.pid)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ProcessError(
                f"{self.name} exited with {self.proc.returncode}; log {self.log}:\n{self.tail()}"
            )

    def wait_assigned(self, timeout_s: float = 120.0) -> float:
        """Wait until ``/stats`` lists assigned partitions; seconds since the process started."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            stats = self.stats()
            if stats is not None and stats.get("assigned"):
                return time.monotonic() - self.started_at
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.name} got no partitions within {timeout_s:g}s")
            time.sleep(0.05)

    def wait_ready(self, timeout_s: float = 120.0, path: str = "/readyz") -> float:
        """Wait until ``path`` answers 200 (the worker's readiness: bundle warm, group joined,
        table recovery done); seconds since the process started."""
        url = f"http://127.0.0.1:{self.web_port}{path}"
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - self.started_at
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not up yet, or 503: not ready
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.name} not ready within {timeout_s:g}s")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code."""
        return stop_process(self.proc, timeout_s)


def stop_process(
    proc: subprocess.Popen[bytes], timeout_s: float = 30.0, kill_wait_s: float = 10.0
) -> int:
    """SIGTERM ``proc`` (if running), then SIGKILL after ``timeout_s``; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(kill_wait_s)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid``, from ``/proc`` (None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_group_settled(procs: Sequence[ChildProcess], partitions: int, timeout_s: float) -> None:
    """Wait until the processes together own every partition, each some, none twice."""
    deadline = time.monotonic() + timeout_s
    owned: list[set[int]] = []
    while time.monotonic() < deadline:
        for p in procs:
            p.check_alive()
        owned = [set((p.stats() or {}).get("assigned", [])) for p in procs]
        union = set().union(*owned)
        if all(owned) and sum(map(len, owned)) == len(union) == partitions:
            return
        time.sleep(0.1)
    raise ProcessError(f"partitions never split between the processes: {owned}")
