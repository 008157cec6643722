"""``nextbehavior demo`` end to end (small sizes), and its cleanup when interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

DEMO = [sys.executable, "-m", "nextbehavior.stream", "demo"]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone too: it only waits for its parent (ours) to reap it
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z"


def test_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    done = subprocess.run(
        [*DEMO, "--events", "300", "--users", "300", "--train-seconds", "5",
         "--replay-seconds", "2", "--workdir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=220, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    counts = summary["counts"]
    assert counts["events_sent"] == 300 and counts["bad_events_sent"] == 5
    assert counts["predictions_received"] >= 300 and counts["dead_letters"] == 5
    online, offline = summary["online"], summary["offline"]
    assert online["scored"] == offline["pairs"] == 300 - counts["users"]
    assert online["total"]["hit@10"] == pytest.approx(offline["hit@10"], abs=0.02)
    assert online["total"]["hit@10"] > 0.3  # the synthetic process is learnable
    assert set(summary["dead_letter_types"]) >= {"not_json", "missing_field", "unknown_field"}
    assert (tmp_path / "bundle" / "model.onnx").is_file()
    # the broker and the worker it started are gone
    pids = [int(p) for p in re.findall(r"pid (\d+)", done.stderr)]
    assert len(pids) == 2 and all(gone(p) for p in pids)


def trainers(workdir: Path) -> list[int]:
    """Live training children of the demo in ``workdir`` (their command line names its job)."""
    job = str(workdir / "train_job.json")
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and job in (proc / "cmdline").read_text(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return [p for p in pids if not gone(p)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_interrupted_stops_what_it_started(tmp_path: Path, signum: int) -> None:
    """Ctrl-C or SIGTERM while it trains: exit 130 (never a C++ abort from inside torch), the
    broker and the training child are gone."""
    proc = subprocess.Popen(
        [*DEMO, "--events", "100", "--users", "200", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    broker_pid = None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        lines.append(line)
        found = re.search(r"broker at \S+ \(pid (\d+)\)", line)
        broker_pid = int(found.group(1)) if found else broker_pid
        if "training" in line or time.monotonic() > deadline:
            break
    assert broker_pid is not None, "".join(lines)
    time.sleep(1.0)  # inside training now
    assert trainers(tmp_path), "no training child"
    proc.send_signal(signum)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted" in rest and "terminate called" not in rest
    assert gone(broker_pid)
    assert not trainers(tmp_path)
