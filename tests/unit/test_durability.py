"""State before offsets: a batch is acknowledged only once its changelog writes (and outputs)
are confirmed; a failed changelog write stops the pipeline with nothing more acknowledged; each
user's state is written once per batch, to the partition of the record that changed it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from nextbehavior.stream.durability import transactional_senders
from nextbehavior.stream.intake import Intake, Record
from nextbehavior.stream.pipeline import ChangelogError, Headers, Pipeline
from nextbehavior.stream.predictor import Predictor
from nextbehavior.stream.state import decode_history
from nextbehavior.stream.table_writes import TableWriter, UserStates

CHANGELOG = "state-changelog"


def event(eid: str, user: str, ts: int = 1) -> bytes:
    value = {"event_id": eid, "user_id": user, "item_id": "i1", "event_type": "view"}
    return orjson.dumps({**value, "timestamp": ts})


class Broker:
    """Holds every delivery future until the test confirms or fails it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        partition: int | None,
    ) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value, partition))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut

    def of(self, topic: str) -> list[int]:
        return [i for i, rec in enumerate(self.sent) if rec[0] == topic]


def pipeline_on(
    broker: Broker, predictor: Predictor, acks: list[int], state: dict[bytes, bytes]
) -> Pipeline[int]:
    intake = Intake(
        UserStates(TableWriter(state, CHANGELOG)),
        max_len=predictor.max_len,
        horizon_ms=None,
        max_bytes=4096,
    )

    async def ack(token: int) -> None:
        acks.append(token)

    return Pipeline(
        intake,
        predictor,
        send=broker.send,
        ack=ack,
        output_topic="out",
        dlq_topic="dlq",
        batch_size=3,
        batch_wait_s=0.01,
    )


@pytest.fixture
def predictor(tiny_bundle: Path) -> Predictor:
    return Predictor(tiny_bundle, ["CPUExecutionProvider"])


async def until(check: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.005)


async def test_a_batch_is_acked_only_after_its_changelog_writes_are_confirmed(
    predictor: Predictor,
) -> None:
    broker, acks, state = Broker(), [], {}
    pipeline = pipeline_on(broker, predictor, acks, state)
    runner = asyncio.create_task(pipeline.run())
    # One batch: u1 twice (partition 2), u2 once (partition 5).
    await pipeline.take(0, Record(b"u1", event("a", "u1", 1), "events", 2, 10))
    await pipeline.take(1, Record(b"u2", event("b", "u2", 1), "events", 5, 20))
    await pipeline.take(2, Record(b"u1", event("c", "u1", 2), "events", 2, 11))
    await until(lambda: len(broker.of("out")) == 3)
    changelog = [broker.sent[i] for i in broker.of(CHANGELOG)]
    # One record per user per batch, the user's latest state, to the source's partition.
    assert sorted((key, partition) for _, key, _, partition in changelog) == [
        (b"u1", 2),
        (b"u2", 5),
    ]
    u1 = next(value for _, key, value, _ in changelog if key == b"u1")
    assert [s.event_id for s in decode_history(u1)] == ["a", "c"]
    assert state[b"u1"] == u1  # the table's store holds what the changelog holds
    for i in broker.of("out"):
        broker.futures[i].set_result(None)  # predictions delivered...
    await asyncio.sleep(0.05)
    assert acks == []  # ...but the state is not durable yet
    for i in broker.of(CHANGELOG):
        broker.futures[i].set_result(None)
    await until(lambda: acks == [0, 1, 2])
    pipeline.close()
    await asyncio.wait_for(runner, timeout=10)


async def test_a_failed_changelog_write_stops_the_pipeline_and_nothing_is_acked(
    predictor: Predictor,
) -> None:
    broker, acks = Broker(), []
    pipeline = pipeline_on(broker, predictor, acks, {})
    runner = asyncio.create_task(pipeline.run())
    await pipeline.take(0, Record(b"u1", event("a", "u1"), "events", 0, 0))
    await until(lambda: broker.of("out") and broker.of(CHANGELOG))
    for i in broker.of("out"):
        broker.futures[i].set_result(None)
    broker.futures[broker.of(CHANGELOG)[0]].set_exception(ConnectionError("broker gone"))
    # The pipeline stops by itself, idle as it is: not resent (it could land after a newer
    # write of the same key), nothing acked, so a restart replays the record.
    with pytest.raises(ChangelogError, match="broker gone"):
        await asyncio.wait_for(runner, timeout=10)
    assert acks == []
    assert len(broker.of(CHANGELOG)) == 1


async def test_acks_keep_batch_order_when_a_later_batch_is_confirmed_first(
    predictor: Predictor,
) -> None:
    broker, acks = Broker(), []
    pipeline = pipeline_on(broker, predictor, acks, {})
    runner = asyncio.create_task(pipeline.run())
    for n in range(3):  # batch one (full)
        await pipeline.take(n, Record(b"u1", event(f"a{n}", "u1", n), "events", 0, n))
    await until(lambda: len(broker.of("out")) == 3)
    first = list(range(len(broker.sent)))
    await pipeline.take(3, Record(b"u2", event("b", "u2"), "events", 1, 0))  # batch two
    await until(lambda: len(broker.of("out")) == 4)
    for i in range(len(broker.sent)):
        if i not in first:
            broker.futures[i].set_result(None)
    await asyncio.sleep(0.05)
    assert acks == []  # batch two is delivered but waits for batch one
    for i in first:
        broker.futures[i].set_result(None)
    await until(lambda: acks == [0, 1, 2, 3])
    pipeline.close()
    await asyncio.wait_for(runner, timeout=10)


async def test_exactly_once_outputs_go_to_their_source_partitions_transaction(
    tiny_bundle: Path,
) -> None:
    """Each prediction, dead letter and changelog write is sent by its source partition's
    sender; each sender sends inside that partition's Faust transaction
    (``{app}-{group}-{partition}``)."""
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
    state = UserStates(TableWriter({}, CHANGELOG))
    intake = Intake(state, max_len=predictor.max_len, horizon_ms=None, max_bytes=4096)
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
    assert sorted(sent) == [("dlq", "app-0-1"), ("out", "app-0-3"), (CHANGELOG, "app-0-3")]
    assert acks == [0, 1]


async def test_many_small_batches_in_delivery_all_get_acked(predictor: Predictor) -> None:
    """Backpressure on batches in delivery (deliveries confirmed at random moments, as a
    broker does) never stalls: every record is acked, in order."""
    import random

    rng = random.Random(3)
    loop = asyncio.get_running_loop()

    class Jittery(Broker):
        async def send(self, *args: Any) -> asyncio.Future[Any]:
            fut = await super().send(*args)
            loop.call_later(rng.random() * 0.004, fut.set_result, None)
            return fut

    broker, acks = Jittery(), []
    pipeline = pipeline_on(broker, predictor, acks, {})
    pipeline.batcher.max_size = 1  # a batch per record: many batches in delivery at once
    pipeline.batcher.max_wait_s = 0.0
    runner = asyncio.create_task(pipeline.run())
    n = 300
    for k in range(n):
        user = f"u{k % 7}"
        await pipeline.take(k, Record(user.encode(), event(f"e{k}", user, k), "events", 0, k))
        if k % 25 == 0:
            await asyncio.sleep(0)
    await until(lambda: len(acks) == n, timeout_s=60)
    assert acks == list(range(n))
    pipeline.close()
    await asyncio.wait_for(runner, timeout=10)


async def test_backpressure_does_not_spin_on_delivered_batches(predictor: Predictor) -> None:
    """Batches whose delivery is done but whose done-callbacks have not run yet (both can be
    queued in one loop turn) must not make the next batch wait forever: it goes on."""
    broker, acks = Broker(), []
    pipeline = pipeline_on(broker, predictor, acks, {})
    loop = asyncio.get_running_loop()
    for _ in range(4):  # as many as may be in delivery, all done, none forgotten yet
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        pipeline._delivering.append(done)
    work = pipeline.intake.take(Record(b"u1", event("a", "u1"), "events", 0, 0))
    await asyncio.wait_for(pipeline._handle([(0, work)]), timeout=10)
    assert len(pipeline._delivering) == 1  # only the new batch is in delivery
    for fut in broker.futures:
        fut.set_result(None)
    await until(lambda: acks == [0])
