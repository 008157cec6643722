"""The changelog barrier: an event is acknowledged only after its changelog writes are confirmed;
a failed or lost write stops all further acknowledgements (nothing more gets committed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest

from nextbehavior.stream.durability import (
    ChangelogBarrier,
    ChangelogError,
    tracked_table,
    transactional_senders,
)
from nextbehavior.stream.intake import Intake, Record
from nextbehavior.stream.pipeline import Pipeline
from nextbehavior.stream.predictor import Predictor


class Event:
    """Stands for a Faust event (the barrier only uses its identity)."""


async def test_ack_waits_for_the_events_changelog_writes() -> None:
    barrier = ChangelogBarrier(timeout_s=5)
    acked: list[Event] = []

    async def ack(event: Event) -> None:
        acked.append(event)

    first, second = Event(), Event()
    loop = asyncio.get_running_loop()
    writes = [loop.create_future() for _ in range(2)]
    for fut in writes:
        barrier.track(first, fut)
    other = loop.create_future()
    barrier.track(second, other)
    assert barrier.pending == 3
    guarded = barrier.guard(ack)

    acking = asyncio.ensure_future(guarded(first))
    await asyncio.sleep(0.01)
    assert not acked  # its writes are still in flight
    writes[0].set_result("meta")
    await asyncio.sleep(0.01)
    assert not acked
    writes[1].set_result("meta")
    await acking
    assert acked == [first]  # the other event's write does not hold it back
    assert barrier.pending == 1
    other.set_result("meta")
    await guarded(second)
    assert acked == [first, second]
    assert barrier.confirmed == 3 and barrier.pending == 0


async def test_an_event_without_writes_is_acked_at_once() -> None:
    barrier = ChangelogBarrier(timeout_s=5)
    acked: list[Event] = []

    async def ack(event: Event) -> None:
        acked.append(event)

    done = asyncio.get_running_loop().create_future()
    done.set_result("meta")
    event = Event()
    barrier.track(event, done)  # already confirmed: nothing to wait for
    await barrier.guard(ack)(event)
    await barrier.guard(ack)(Event())  # a duplicate: no write at all
    assert len(acked) == 2


async def test_a_failed_write_blocks_this_and_every_later_ack() -> None:
    barrier = ChangelogBarrier(timeout_s=5)
    acked: list[Event] = []

    async def ack(event: Event) -> None:
        acked.append(event)

    loop = asyncio.get_running_loop()
    bad, later = Event(), Event()
    fut = loop.create_future()
    barrier.track(bad, fut)
    fut.set_exception(ConnectionError("broker gone"))
    with pytest.raises(ChangelogError, match="broker gone"):
        await barrier.guard(ack)(bad)
    with pytest.raises(ChangelogError):
        await barrier.guard(ack)(later)  # sticky: memory and changelog differ now
    assert acked == []


async def test_an_unconfirmed_write_times_out_and_blocks_acks() -> None:
    barrier = ChangelogBarrier(timeout_s=0.05)
    acked: list[Event] = []

    async def ack(event: Event) -> None:
        acked.append(event)

    event = Event()
    barrier.track(event, asyncio.get_running_loop().create_future())  # never confirmed
    with pytest.raises(ChangelogError, match="not confirmed within"):
        await barrier.guard(ack)(event)
    with pytest.raises(ChangelogError):
        await barrier.guard(ack)(Event())
    assert acked == []


def test_tracked_table_is_a_faust_table() -> None:
    cls = tracked_table(ChangelogBarrier(timeout_s=1))
    assert issubclass(cls, faust.Table)
    app = faust.App("durability-test", broker="kafka://127.0.0.1:1", Table=cls)
    table = app.Table("t", default=int).tumbling(60.0)
    assert isinstance(table.table, cls)  # windowed tables are tracked too


async def test_exactly_once_outputs_go_to_their_source_partitions_transaction(
    tiny_bundle: Path,
) -> None:
    """Each prediction and dead letter is sent by its source partition's sender; each sender
    sends inside that partition's Faust transaction (``{app}-{group}-{partition}``)."""
    sent: list[tuple[str, str | None]] = []

    class Producer:
        async def send(self, topic: str, *args: Any, transactional_id: str | None = None) -> Any:
            sent.append((topic, transactional_id))
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

    app = SimpleNamespace(
        conf=SimpleNamespace(id="app"),
        assignor=SimpleNamespace(group_for_topic=lambda topic: {"events": 0}[topic]),
        producer=Producer(),
    )
    senders = transactional_senders(app, "events")  # type: ignore[arg-type]
    predictor = Predictor(tiny_bundle, ["CPUExecutionProvider"])
    intake = Intake({}, max_len=predictor.max_len, horizon_ms=None, max_bytes=4096)
    acks: list[int] = []

    async def ack(token: int) -> None:
        acks.append(token)

    async def unused(*args: Any) -> Any:
        raise AssertionError("the plain sender is not used with send_for")

    pipeline: Pipeline[int] = Pipeline(
        intake,
        predictor,
        send=unused,
        ack=ack,
        output_topic="out",
        dlq_topic="dlq",
        batch_size=8,
        batch_wait_s=0.01,
        send_for=senders,
    )
    good = orjson.dumps(
        {"event_id": "e", "user_id": "u", "item_id": "i1", "event_type": "view", "timestamp": 1}
    )
    runner = asyncio.create_task(pipeline.run())
    await pipeline.take(0, Record(b"u", good, "events", 3, 0))
    await pipeline.take(1, Record(b"v", b"junk", "events", 1, 0))
    pipeline.close()
    await asyncio.wait_for(runner, timeout=20)
    assert sorted(sent) == [("dlq", "app-0-1"), ("out", "app-0-3")]
    assert acks == [0, 1]
