"""Send a batch's records in one record batch per topic partition (aiokafka ``send_batch``).

Sending record by record costs a coroutine, a future and an accumulator append each: for a
worker that sends a prediction and two changelog records per event, that was ~15% of its
event-loop time. :class:`BatchSender` groups a micro-batch's records by topic and partition
(the key's partition, as the producer's partitioner would choose it, unless a record names
one) and hands each group to the producer as one record batch. Order within a partition is
the order given; each record's delivery future is its record batch's.

At-least-once only: a transactional (exactly-once) send goes through the producer of its
transaction, record by record (:func:`nextbehavior.stream.durability.transactional_senders`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from aiokafka.errors import KafkaError
from faust.exceptions import NotReady

logger = logging.getLogger(__name__)

PARTITION_CACHE: Final = 100_000
"""(topic, key) -> partition answers kept (cleared when full)."""


class Record(Protocol):
    """What :class:`BatchSender` reads of a record (``Outgoing`` in the pipeline)."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    @property
    def partition(self) -> int | None: ...


class BatchSender:
    """Sends records grouped into record batches through an ``AIOKafkaProducer``."""

    def __init__(
        self,
        producer: Callable[[], Any],
        partition_of: Callable[[str, bytes], int],
    ) -> None:
        """``producer()``: the started aiokafka producer; ``partition_of(topic, key)``: the
        partition the producer's partitioner gives a key."""
        self._producer = producer
        self._partition_of = partition_of
        self._partitions: dict[tuple[str, bytes], int] = {}

    def partition(self, topic: str, key: bytes) -> int:
        cached = self._partitions.get((topic, key))
        if cached is None:
            if len(self._partitions) >= PARTITION_CACHE:
                self._partitions.clear()
            cached = self._partitions[(topic, key)] = self._partition_of(topic, key)
        return cached

    async def learn_topics(
        self,
        topics: Iterable[str],
        on_known: Callable[[str], None],
        *,
        timeout_s: float,
        retry_s: float = 1.0,
    ) -> None:
        """Load the producer's metadata for ``topics`` (calling ``on_known(topic)`` for each),
        retrying after ``retry_s`` (doubling up to 30 s) until all are known. Otherwise the
        first send to a topic waits for it (aiokafka asks on first use, retrying every
        100 ms): the first predictions after a start would be late by that much."""
        pending = list(dict.fromkeys(topics))
        while pending:
            topic = pending[0]
            try:
                await asyncio.wait_for(self._producer().partitions_for(topic), timeout_s)
            except (KafkaError, NotReady, TimeoutError) as exc:
                logger.warning("no metadata yet for %s (%r); retrying in %gs", topic, exc, retry_s)
                await asyncio.sleep(retry_s)
                retry_s = min(2 * retry_s, 30.0)
                continue
            on_known(pending.pop(0))

    def forget_partitions(self) -> None:
        """Drop cached key partitions (call when partition counts may have changed)."""
        self._partitions.clear()

    async def send(self, records: Sequence[Record]) -> list[Awaitable[Any]]:
        """Queue ``records``; one delivery future per record, in order. A record without a
        key and partition is refused (ValueError): it has no defined partition."""
        groups: dict[tuple[str, int], list[int]] = {}
        for i, rec in enumerate(records):
            partition = rec.partition
            if partition is None:
                if rec.key is None:
                    raise ValueError(f"record for {rec.topic} has neither key nor partition")
                partition = self.partition(rec.topic, rec.key)
            groups.setdefault((rec.topic, partition), []).append(i)
        producer = self._producer()
        futures: list[Awaitable[Any]] = [None] * len(records)  # type: ignore[list-item]
        for (topic, partition), members in groups.items():
            batch = producer.create_batch()
            held: list[int] = []
            for i in members:
                rec = records[i]
                headers = rec.headers or []
                if batch.append(key=rec.key, value=rec.value, timestamp=None, headers=headers):
                    held.append(i)
                    continue
                await self._submit(producer, batch, topic, partition, held, futures)
                batch = producer.create_batch()
                if batch.append(key=rec.key, value=rec.value, timestamp=None, headers=headers):
                    held = [i]
                else:  # an empty batch takes any one record: this cannot happen
                    raise RuntimeError(f"a record for {topic}[{partition}] fits no batch")
            await self._submit(producer, batch, topic, partition, held, futures)
        return futures

    @staticmethod
    async def _submit(
        producer: Any,
        batch: Any,
        topic: str,
        partition: int,
        members: list[int],
        futures: list[Awaitable[Any]],
    ) -> None:
        if not members:
            return
        batch.close()
        future = await producer.send_batch(batch, topic, partition=partition)
        for i in members:
            futures[i] = future
