"""The demo's parts: the held-out user split, the prediction line, the summary table, the
training job file, and how Ctrl-C / SIGTERM are handled (never lost, held during cleanup)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from rich.console import Console

from nextbehavior.stream.demo import split_users
from nextbehavior.stream.demo_training import TrainJob
from nextbehavior.stream.demo_view import DemoView, summary_table
from nextbehavior.stream.events import Event, Prediction, ScoredItem
from nextbehavior.stream.interrupts import Interrupts


def test_split_users_holds_out_whole_users() -> None:
    events = [Event(f"e{n}", f"u{n % 10}", "i", "view", n) for n in range(100)]
    train, replay = split_users(events, 25, seed=1)
    held = {e.user_id for e in replay}
    assert len(replay) == 25 and held.isdisjoint(e.user_id for e in train)
    assert len(train) + 30 == 100  # three users of ten events held out, 25 of them replayed
    assert [e.timestamp for e in replay] == sorted(e.timestamp for e in replay)
    assert split_users(events, 25, seed=1) == (train, replay)  # seeded
    _, most = split_users(events, 10_000, seed=1)
    assert len({e.user_id for e in most}) == 5  # never more than half the users


def test_prediction_line_and_summary_table() -> None:
    console = Console(width=120, record=True)
    view = DemoView(console)
    view.events["e1"] = Event("e1", "u1", "i7", "cart", 1)
    line = view.describe(
        Prediction(
            "u1", "e1", 1, 2, "v", 3, [ScoredItem("i8", 0.9)], {"view": 0.3, "purchase": 0.7}
        )
    )
    assert line == "u1 after cart i7 (history 3) -> next items i8; next behavior purchase 70%"
    metrics = {"hit@10": 0.5, "ndcg@10": 0.25, "type_accuracy": 0.0}
    summary = {
        "counts": {"events_sent": 10, "bad_events_sent": 5, "predictions_received": 10,
                   "dead_letters": 5, "users": 2},
        "online": {"scored": 8, "total": metrics},
        "offline": {"pairs": 8, **metrics},
        "model": {"test_ndcg@10": 0.4},
        "dead_letter_types": {"not_json": 2, "missing_field": 3},
        "seconds": {"total": 12.0},
    }  # fmt: skip
    console.print(summary_table(summary))
    text = console.export_text()
    assert "online hit@10" in text and "0.5000  (offline 0.5000)" in text
    assert "0.0000  (offline 0.0000)" in text  # a zero is still shown next to its twin
    assert "not_json 2, missing_field 3" in text and "12.0s" in text


def test_training_job_round_trip_builds_the_same_table(tmp_path: Path) -> None:
    """The training child rebuilds exactly the table the demo used to build in process."""
    from nextbehavior.model.table import LoadReport, TableBuilder

    events = [Event(f"e{n}", f"u{n % 7}", f"i{n % 11}", "view", 1000 + n) for n in range(50)]
    job = TrainJob(tmp_path, "src", 5.0, 3, os.getpid())
    read = TrainJob.read(job.write(events))
    assert read == job
    table = read.table()
    builder = TableBuilder(LoadReport(source="src", format="demo"), with_ids=True)
    for row, e in enumerate(events, start=1):
        builder.report.lines_read += 1
        builder.add(e.user_id, e.item_id, e.event_type, e.timestamp, row, e.event_id)
    want = builder.build()
    assert [table.event(i) for i in range(len(table))] == [want.event(i) for i in range(50)]
    assert table.report.to_dict() == want.report.to_dict()
    assert (table.row == want.row).all()


def test_a_swallowed_interrupt_is_raised_again_and_handlers_come_back() -> None:
    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    with Interrupts() as interrupts:
        interrupts.check()
        with contextlib.suppress(KeyboardInterrupt):  # as in a fork hook: printed, then lost
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before


def test_signals_wait_while_held() -> None:
    done = []
    with Interrupts() as interrupts, pytest.raises(KeyboardInterrupt), interrupts.held():
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        done.append("cleanup finished")
    assert done == ["cleanup finished"] and interrupts.signum == signal.SIGTERM


@pytest.mark.parametrize("swallow", [False, True])
def test_a_signal_cancels_the_async_step(swallow: bool) -> None:
    cleaned = []

    async def step() -> str:
        asyncio.get_running_loop().call_later(0.05, signal.raise_signal, signal.SIGTERM)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if not swallow:
                raise
        finally:
            await asyncio.sleep(0)  # the cleanup may still await
            cleaned.append(True)
        return "finished"

    started = time.monotonic()
    with Interrupts() as interrupts, pytest.raises(KeyboardInterrupt):
        interrupts.run(step())
    assert cleaned == [True] and time.monotonic() - started < 5
    with Interrupts() as interrupts:
        assert interrupts.run(asyncio.sleep(0, "ok")) == "ok"
