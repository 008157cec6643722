"""Safe fetches on the real broker: records Faust would throw away stay unread.

The first two tests pair the guarded fetch (:func:`nextbehavior.stream.safe_fetch.fetch_guarded`)
with aiokafka's plain ``fetched_records``, as Faust calls it, in the same situation: the plain
call hands the records over (position past them, and Faust would drop them), the guarded one
leaves the position where it was, so the next read gets them. The last covers what the guard's
copy of the active set changes: it must itself keep the records of a partition paused meanwhile
(and hand over those of one Faust holds back for a full buffer, as Faust takes them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka_checks import new_topic
from worker_proc import run

from nextbehavior.stream import safe_fetch
from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.safe_fetch import fetch_guarded


@asynccontextmanager
async def _consumer(broker: EmbeddedBroker) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _topic(broker: EmbeddedBroker) -> tuple[TopicPartition, TopicPartition]:
    topic = await new_topic(broker, "safe-fetch", partitions=2)
    return TopicPartition(topic, 0), TopicPartition(topic, 1)


async def _produce_to(broker: EmbeddedBroker, tp: TopicPartition, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(tp.topic, f"r{i}".encode(), partition=tp.partition)
    finally:
        await producer.stop()


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, n: int) -> list[int]:
    """The offsets the next reads of ``tp`` return, until ``n`` (or 5 s)."""
    offsets: list[int] = []
    deadline = asyncio.get_running_loop().time() + 5
    while len(offsets) < n and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=500)
        offsets += [record.offset for record in batch.get(tp, [])]
    return offsets


def _plain(consumer: AIOKafkaConsumer, active: Collection[TopicPartition], timeout: float) -> Any:
    """The fetch as Faust 0.15.3 makes it (``AIOKafkaConsumerThread._fetch_records``)."""
    return consumer._fetcher.fetched_records(active, timeout=timeout, max_records=500)


def _guarded(consumer: AIOKafkaConsumer, active: Collection[TopicPartition], timeout: float) -> Any:
    return fetch_guarded(consumer, active, timeout=timeout, max_records=500)


FETCHES = {"plain": _plain, "guarded": _guarded}


@pytest.mark.parametrize("how", FETCHES)
def test_records_of_a_new_assignment_are_not_handed_to_a_call_made_before_it(
    broker: EmbeddedBroker, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A call waiting when the assignment changes must not hand over the new assignment's
    records (Faust drops them: seen as a table recovery that waited forever)."""
    caplog.set_level(logging.INFO, logger=safe_fetch.__name__)

    async def scenario() -> tuple[dict[Any, Any], int, list[int]]:
        tp, other = await _topic(broker)
        await _produce_to(broker, tp, 5)
        async with _consumer(broker) as consumer:
            consumer.assign([tp, other])
            consumer.seek(tp, 5)  # read to the end: the call below waits
            consumer.seek(other, 0)
            waiting = asyncio.create_task(FETCHES[how](consumer, {tp, other}, 5.0))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            consumer.assign([tp, other])  # a new assignment (as at a rebalance) ...
            consumer.seek(tp, 0)  # ... whose table recovery reads tp from the start
            handed = await asyncio.wait_for(waiting, 10)
            position = await consumer.position(tp)
            return handed, position, await _read(consumer, tp, 5)

    handed, position, reread = run(scenario())
    if how == "plain":  # the bug: handed over to a call Faust discards, position at the end
        assert sum(map(len, handed.values())) == 5 and position == 5 and reread == []
    else:
        assert handed == {} and position == 0 and reread == [0, 1, 2, 3, 4]
        assert "kept 5 records fetched across a rebalance unread" in caplog.text


@pytest.mark.parametrize("how", FETCHES)
def test_an_empty_active_set_hands_over_nothing(broker: EmbeddedBroker, how: str) -> None:
    async def scenario() -> tuple[dict[Any, Any], int]:
        tp, _ = await _topic(broker)
        await _produce_to(broker, tp, 3)
        async with _consumer(broker) as consumer:
            consumer.assign([tp])
            consumer.seek(tp, 0)
            await consumer.position(tp)
            deadline = asyncio.get_running_loop().time() + 10
            while tp not in consumer._fetcher._records:  # wait until fetched, not handed over
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            handed = await FETCHES[how](consumer, set(), 0.0)
            return handed, await consumer.position(tp)

    handed, position = run(scenario())
    if how == "plain":  # aiokafka reads an empty set as "every partition"
        assert [len(batch) for batch in handed.values()] == [3] and position == 3
    else:
        assert handed == {} and position == 0


@pytest.mark.parametrize("moved_to", ["paused", "buffered"])
def test_a_partition_leaving_the_active_set_during_the_call(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture, moved_to: str
) -> None:
    """Faust drops records of a partition no longer in its active set when they arrive, unless
    it paused it for a full agent buffer; the guarded fetch asks for a copy of the set, so it
    puts the records Faust would drop back itself, and hands over the buffered ones."""
    caplog.set_level(logging.INFO, logger=safe_fetch.__name__)

    async def scenario() -> tuple[dict[Any, Any], int, list[int]]:
        tp, other = await _topic(broker)
        async with _consumer(broker) as consumer:
            consumer.assign([tp, other])
            await consumer.seek_to_beginning(tp, other)
            active, buffered = {tp, other}, set[TopicPartition]()
            waiting = asyncio.create_task(
                fetch_guarded(consumer, active, timeout=5.0, buffered=buffered)
            )
            await asyncio.sleep(0.3)
            active.discard(tp)  # Faust pauses tp while the call waits
            if moved_to == "buffered":
                buffered.add(tp)
            await _produce_to(broker, tp, 4)
            handed = await asyncio.wait_for(waiting, 10)
            position = await consumer.position(tp)
            return handed, position, await _read(consumer, tp, 4 - len(handed.get(tp, [])))

    handed, position, reread = run(scenario())
    if moved_to == "paused":
        assert handed == {} and position == 0 and reread == [0, 1, 2, 3]
        assert "of partitions paused meanwhile unread" in caplog.text
    else:  # taken as Faust takes them; the rest follows, each record once
        (tp,) = handed
        taken = [record.offset for record in handed[tp]]
        assert taken and position == len(taken) and taken + reread == [0, 1, 2, 3]
        assert "kept" not in caplog.text
