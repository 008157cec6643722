"""Read whole topics without a consumer group: for ``tail``, ``monitor`` and the demo.

Partitions are assigned by hand (no group join, which the embedded broker holds for seconds,
nothing committed), read from the beginning. "Caught up" is decided from the high watermark
that fetch responses carry (``consumer.highwater``), not from ListOffsets, which the embedded
broker answers wrongly (BROKER.md). Topics are checked to exist first: asking the embedded
broker for an unknown topic's metadata would create it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from nextbehavior.stream.connection import aiokafka_options
from nextbehavior.stream.settings import Settings

log = logging.getLogger(__name__)


class ReaderError(RuntimeError):
    """A topic cannot be read (missing, broker unreachable); one-line reason."""


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, decoupled from aiokafka's types."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def consumer_options(settings: Settings) -> dict[str, Any]:
    """A group-less consumer that starts at the earliest offset and commits nothing."""
    return {
        **aiokafka_options(settings),
        "client_id": "nextbehavior-reader",
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": 200,
    }


async def _caught_up(consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]) -> bool:
    for tp in partitions:
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True


async def read_topics(
    settings: Settings,
    topics: Sequence[str],
    *,
    follow: bool = False,
    idle_s: float | None = None,
    duration_s: float | None = None,
    start_timeout_s: float = 15.0,
    poll_ms: int = 200,
) -> AsyncGenerator[list[Record], None]:
    """Yield batches of records from ``topics``, oldest first per partition.

    Stops (without ``follow``) once every partition is read up to its high watermark; with
    ``follow`` it keeps going, and yields an empty batch after each quiet poll. Either way it
    stops after ``idle_s`` seconds without a record, or ``duration_s`` seconds in all. Raises
    :class:`ReaderError` for a missing topic.
    """
    consumer = AIOKafkaConsumer(**consumer_options(settings))
    try:
        try:
            async with asyncio.timeout(start_timeout_s):
                await consumer.start()
                existing = await consumer.topics()
        except TimeoutError:
            raise ReaderError(
                f"broker {settings.bootstrap} did not answer within {start_timeout_s:g}s"
            ) from None
        except KafkaError as exc:
            raise ReaderError(f"broker {settings.bootstrap}: {exc}") from None
        missing = [t for t in topics if t not in existing]
        if missing:
            names = ", ".join(repr(t) for t in missing)
            verb = "does" if len(missing) == 1 else "do"
            raise ReaderError(
                f"topic {names} {verb} not exist on {settings.bootstrap} "
                "(run `nextbehavior topics create`)"
            )
        partitions = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = last_record = time.monotonic()
        while True:
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                return
            if idle_s is not None and now - last_record >= idle_s:
                return
            batches = await consumer.getmany(timeout_ms=poll_ms)
            records = [
                Record(
                    m.topic,
                    m.partition,
                    m.offset,
                    m.timestamp,
                    m.key,
                    m.value,
                    tuple((k, bytes(v)) for k, v in (m.headers or ())),
                )
                for tp in partitions
                for m in batches.get(tp, ())
            ]
            if records:
                last_record = time.monotonic()
                yield records
            elif not follow and await _caught_up(consumer, partitions):
                return
            elif follow:
                yield []  # a heartbeat: lets a following caller refresh or stop
    finally:
        await consumer.stop()
