"""The demo's torch step (train + ONNX export) in a child process, so Ctrl-C never lands in torch.

Torch and the ONNX exporter call back into Python from C++. A ``KeyboardInterrupt`` raised in
such a callback cannot unwind through C++: pybind11 throws ``error_already_set``, nothing catches
it, and the process aborts (exit -6) before any cleanup runs. So the demo process never runs torch
itself: it writes the training events and a small job file into the work directory, runs
``python -m nextbehavior.stream.demo_training JOB`` in its own session (a terminal's Ctrl-C
reaches only the demo) and waits. Whatever way the demo leaves (done, error, Ctrl-C, SIGTERM),
:func:`training_child` stops the child's whole process group. The child keeps the default
actions of SIGINT and SIGTERM (it dies at once, no Python exception is raised inside C++) and,
on Linux, dies with the demo. Its result (training metrics, or a one-line error) comes back as
JSON; data travel as JSON lines, never pickled.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from nextbehavior.stream.events import Event

MODEL_OPTIONS = {"max_len": 20, "d_model": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.1}
JOB_FILE = "train_job.json"
EVENTS_FILE = "train_events.jsonl"
RESULT_FILE = "train_result.json"
LOG_FILE = "train.log"
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


class TrainingError(RuntimeError):
    """Training or export failed in the child; one-line reason."""


@dataclass(frozen=True)
class TrainJob:
    """What the child trains: the events file (in ``workdir``), where they came from, the budget."""

    workdir: Path
    source: str
    train_seconds: float
    seed: int
    parent_pid: int

    def write(self, events: Sequence[Event]) -> Path:
        """Write the events (one JSON array per line) and the job file; return the job's path."""
        with (self.workdir / EVENTS_FILE).open("wb") as fh:
            for e in events:
                row = [e.event_id, e.user_id, e.item_id, e.event_type, e.timestamp]
                fh.write(orjson.dumps(row) + b"\n")
        job = {
            "source": self.source,
            "train_seconds": self.train_seconds,
            "seed": self.seed,
            "parent_pid": self.parent_pid,
        }
        path = self.workdir / JOB_FILE
        path.write_bytes(orjson.dumps(job))
        return path

    @classmethod
    def read(cls, path: Path) -> TrainJob:
        job = orjson.loads(path.read_bytes())
        return cls(
            path.parent, str(job["source"]), float(job["train_seconds"]), int(job["seed"]),
            int(job["parent_pid"]),
        )  # fmt: skip

    def table(self) -> Any:
        """The training table, built row by row as the demo always built it (ids kept)."""
        from nextbehavior.model.table import LoadReport, TableBuilder

        builder = TableBuilder(LoadReport(source=self.source, format="demo"), with_ids=True)
        with (self.workdir / EVENTS_FILE).open("rb") as fh:
            for row, line in enumerate(fh, start=1):
                event_id, user, item, event_type, timestamp = orjson.loads(line)
                builder.report.lines_read += 1
                builder.add(user, item, event_type, timestamp, row, event_id)
        return builder.build()


def train_and_export(
    table: Any, workdir: Path, train_seconds: float, seed: int
) -> tuple[Path, dict[str, Any]]:
    """Train a small model within the time budget, export it; (bundle dir, training metrics).
    Runs torch: call it only in the training child (or another process that owns its signals)."""
    from nextbehavior.export.writer import export_bundle
    from nextbehavior.model.train import TrainConfig, train

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision-not-installed notes

    config = TrainConfig(
        epochs=30, patience=3, lr=3e-3, warmup_steps=20, seed=seed,
        max_minutes=train_seconds / 60.0,
    )  # fmt: skip
    metrics = train(table, workdir / "checkpoint", MODEL_OPTIONS, config)
    export_bundle(workdir / "checkpoint", workdir / "bundle", top_k=20)
    return workdir / "bundle", metrics


# --- the demo's side ----------------------------------------------------------------------------
@contextlib.contextmanager
def training_child(job: TrainJob, events: Sequence[Event]) -> Iterator[subprocess.Popen[bytes]]:
    """Start the training child (own session, log in ``workdir/train.log``; on a terminal its
    progress bars go to our stderr); on the way out stop its process group (SIGTERM, then
    SIGKILL) and remove the events file."""
    path = job.write(events)
    (job.workdir / RESULT_FILE).unlink(missing_ok=True)
    log = (job.workdir / LOG_FILE).open("ab")
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nextbehavior.stream.demo_training", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=None if sys.stderr.isatty() else log,
            start_new_session=True,  # the terminal's Ctrl-C reaches the demo, not torch
        )
        yield proc
    finally:
        if proc is not None:
            _stop_group(proc)
        log.close()
        (job.workdir / EVENTS_FILE).unlink(missing_ok=True)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, SIGKILL it if still there after a while; reap."""
    # The group's id is the child's pid; Linux reuses no pid while a group of that id lives.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def training_result(proc: subprocess.Popen[bytes], workdir: Path) -> tuple[Path, dict[str, Any]]:
    """Wait for the child; (bundle dir, training metrics), or :class:`TrainingError`."""
    code = proc.wait()  # Ctrl-C / SIGTERM interrupt this wait, then training_child stops it
    result_path = workdir / RESULT_FILE
    result = orjson.loads(result_path.read_bytes()) if result_path.is_file() else {}
    if code == 0 and "metrics" in result:
        return Path(result["bundle"]), dict(result["metrics"])
    if "error" in result:
        raise TrainingError(str(result["error"]))
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    lines = (workdir / LOG_FILE).read_text(errors="replace").strip().splitlines()
    raise TrainingError(f"training {how}: " + " | ".join(lines[-8:]))


# --- the child's side ---------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL when the demo dies, however it dies (no orphaned training)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the demo died before prctl took effect
        os._exit(1)


def main(argv: Sequence[str]) -> int:
    """The child: train and export the job in ``argv[0]``; write the result JSON; exit code."""
    # Default actions: a signal ends this process at once, never as an exception inside C++.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from nextbehavior.stream.console import setup_logging

    setup_logging("WARNING", False)
    job = TrainJob.read(Path(argv[0]))
    _die_with_parent(job.parent_pid)
    out: dict[str, Any]
    try:
        bundle, metrics = train_and_export(job.table(), job.workdir, job.train_seconds, job.seed)
        out = {"bundle": str(bundle), "metrics": metrics}
    except ImportError as exc:
        out = {"error": f"the demo trains a model: pip install 'nextbehavior[train]' ({exc})"}
    except OSError as exc:
        out = {"error": str(exc)}
    except ValueError as exc:
        out = {"error": f"demo data: {exc}"}
    (job.workdir / RESULT_FILE).write_bytes(
        orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    )
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
