"""Record batches per topic partition (stream/batch_send.py), against a producer that behaves
like aiokafka's ``create_batch``/``send_batch`` (the worker tests use the real one)."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest

from nextbehavior.stream.batch_send import BatchSender


class Rec(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None


class Builder:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes | None]] = []
        self.closed = False

    def append(self, *, key: Any, value: Any, timestamp: Any, headers: Any) -> object | None:
        if self.closed or (self.records and len(self.records) >= self.capacity):
            return None
        self.records.append((key, value))
        return object()

    def close(self) -> None:
        self.closed = True


class Producer:
    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self.batches: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    def create_batch(self) -> Builder:
        return Builder(self.capacity)

    async def send_batch(self, batch: Builder, topic: str, *, partition: int) -> Any:
        assert batch.closed
        self.batches.append((topic, partition, batch.records))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(len(self.batches))
        return fut


def by_key(topic: str, key: bytes) -> int:
    return int(key[1:]) % 2


async def test_records_are_grouped_per_partition_in_order() -> None:
    producer = Producer()
    calls: list[bytes] = []

    def partition_of(topic: str, key: bytes) -> int:
        calls.append(key)
        return by_key(topic, key)

    sender = BatchSender(lambda: producer, partition_of)
    records = [
        Rec("out", b"u1", b"p1"),
        Rec("log", b"u1", b"s1", partition=7),  # an explicit partition wins over the key
        Rec("out", b"u2", b"p2"),
        Rec("out", b"u3", b"p3"),
        Rec("out", b"u1", b"p4"),
    ]
    futures = await sender.send(records)
    assert sorted(producer.batches) == [
        ("log", 7, [(b"u1", b"s1")]),
        ("out", 0, [(b"u2", b"p2")]),
        ("out", 1, [(b"u1", b"p1"), (b"u3", b"p3"), (b"u1", b"p4")]),
    ]
    results = await asyncio.gather(*futures)
    assert results[0] == results[3] == results[4]  # one record batch, one future
    assert len(set(results)) == 3
    assert calls == [b"u1", b"u2", b"u3"]  # key partitions are cached


async def test_a_full_batch_is_sent_and_another_started() -> None:
    producer = Producer(capacity=2)
    sender = BatchSender(lambda: producer, by_key)
    records = [Rec("out", b"u1", f"p{n}".encode()) for n in range(5)]
    futures = await sender.send(records)
    assert [len(recs) for _, _, recs in producer.batches] == [2, 2, 1]
    assert [v for _, _, recs in producer.batches for _, v in recs] == [r.value for r in records]
    assert await asyncio.gather(*futures) == [1, 1, 2, 2, 3]


async def test_a_record_without_key_or_partition_is_refused() -> None:
    sender = BatchSender(lambda: Producer(), by_key)
    with pytest.raises(ValueError, match="neither key nor partition"):
        await sender.send([Rec("out", None, b"x")])


async def test_learn_topics_retries_until_the_producer_knows_each_topic() -> None:
    from aiokafka.errors import UnknownTopicOrPartitionError
    from faust.exceptions import NotReady

    asked: list[str] = []
    answers: dict[str, list[BaseException | set[int]]] = {
        "preds": [NotReady("producer not started"), {0, 1}],
        "dlq": [UnknownTopicOrPartitionError(), UnknownTopicOrPartitionError(), {0}],
    }

    class Learning(Producer):
        async def partitions_for(self, topic: str) -> set[int]:
            asked.append(topic)
            answer = answers[topic].pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer

    producer = Learning()
    known: list[str] = []
    sender = BatchSender(lambda: producer, by_key)
    await sender.learn_topics(["preds", "dlq", "preds"], known.append, timeout_s=1, retry_s=0.01)
    assert known == ["preds", "dlq"]  # each once, in order, after its failures
    assert asked == ["preds", "preds", "dlq", "dlq", "dlq"]
