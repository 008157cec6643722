"""Load for the end-to-end benchmark: synthetic events, a backlog or a paced stream of them,
and a collector that sees each output arrive.

Events follow the schema of INTERFACE.md, keyed by user, with 20-hex-digit event ids (the
length ``replay`` gives), items and behavior types from the served bundle's vocabulary, and
per-user increasing event times. The collector reads the output topic from its start and
records, per source event id, the output record's timestamp (set by the producer of the
process under test, when it sent it) and the local time the record was read.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from nextbehavior.stream.connection import aiokafka_options
from nextbehavior.stream.settings import Settings


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One synthetic input record."""

    event_id: str
    key: bytes
    value: bytes


def synthetic_events(
    n: int,
    *,
    users: int,
    items: Sequence[str],
    event_types: Sequence[str],
    start_ms: int,
    step_ms: int = 50,
    seed: int = 0,
) -> list[Outgoing]:
    """``n`` valid events for ``users`` users (random user per event), ``step_ms`` apart."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = f"user{rng.randrange(users)}"
        event_id = f"{rng.getrandbits(80):020x}"
        value = orjson.dumps(
            {
                "event_id": event_id,
                "user_id": user,
                "item_id": rng.choice(items),
                "event_type": rng.choice(event_types),
                "timestamp": start_ms + i * step_ms,
            }
        )
        out.append(Outgoing(event_id, user.encode(), value))
    return out


def _producer(settings: Settings, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **aiokafka_options(settings),
        client_id="nextbehavior-bench",
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=512 * 1024,
        enable_idempotence=False,
    )


async def produce_backlog(settings: Settings, topic: str, events: Sequence[Outgoing]) -> float:
    """Send every event as fast as the broker takes them; seconds it took (all acknowledged)."""
    producer = _producer(settings, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [await producer.send(topic, e.value, key=e.key) for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def produce_paced(
    settings: Settings, topic: str, events: Sequence[Outgoing], per_s: float
) -> dict[str, float]:
    """Send events at ``per_s`` a second (no producer linger); ``{event_id: send time}``
    (``time.time()`` seconds, taken just before each send)."""
    producer = _producer(settings, linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    futures = []
    try:
        start = time.perf_counter()
        for n, e in enumerate(events):
            ahead = start + n / per_s - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
            sent[e.event_id] = time.time()
            futures.append(await producer.send(topic, e.value, key=e.key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


@dataclass
class Arrival:
    """When an output for one source event was produced (ms, its record timestamp) and read."""

    produced_ms: int
    read_s: float


@dataclass
class OutputCollector:
    """Reads ``topic`` (all partitions, from the start) in the background; first arrival per
    source event id. Start with :meth:`start`, stop with :meth:`stop`."""

    settings: Settings
    topic: str
    partitions: int
    arrivals: dict[str, Arrival] = field(default_factory=dict)
    records: int = 0
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self.settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,  # bounds what polling adds to a measured latency
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for rec in records:
                    self.records += 1
                    event_id = _event_id(rec.value)
                    if event_id is not None and event_id not in self.arrivals:
                        self.arrivals[event_id] = Arrival(rec.timestamp, now)

    async def wait_for(self, ids: Sequence[str], timeout_s: float) -> bool:
        """Until every id in ``ids`` has arrived (True) or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        pending = [i for i in ids if i not in self.arrivals]
        while pending:
            if self._task is not None and self._task.done():
                self._task.result()  # raises what ended it
                return False
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
            pending = [i for i in pending if i not in self.arrivals]
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


def _event_id(value: bytes | None) -> str | None:
    """The ``event_id`` of an output record (an event or a prediction), if it has one."""
    if not value:
        return None
    try:
        obj: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    event_id = obj.get("event_id") if isinstance(obj, dict) else None
    return event_id if isinstance(event_id, str) else None
