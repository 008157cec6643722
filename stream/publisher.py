"""Send planned events to the input topic: one aiokafka producer, keyed by user, paced, acked.

Per-user order: the events come in time order, each is keyed by ``user_id`` (so all of a user's
events go to one partition), and one producer sends them; aiokafka keeps at most one batch in
flight per partition, so retries never reorder a partition. Every send is awaited to its broker
acknowledgement before :func:`publish` returns. Record timestamps are left to the producer (now):
the original, historical event time is inside the event, and a record timestamp months in the
past would be deleted at once by a real Kafka's time-based retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from nextbehavior.stream.connection import aiokafka_options
from nextbehavior.stream.events import Event
from nextbehavior.stream.replay import Pacer
from nextbehavior.stream.settings import Settings

log = logging.getLogger(__name__)

MAX_UNACKED = 20_000
"""Sends in flight before the publisher waits for their acknowledgements (bounds memory)."""


def producer_options(settings: Settings, *, linger_ms: int = 5) -> dict[str, Any]:
    """aiokafka producer options: throughput-minded, ordered, at-least-once.

    No idempotence: the embedded broker refuses aiokafka's InitProducerId (BROKER.md); order
    holds anyway because aiokafka keeps one batch in flight per partition.
    """
    return {
        **aiokafka_options(settings),
        "client_id": "nextbehavior-replay",
        "acks": "all",
        "linger_ms": linger_ms,
        "max_batch_size": 512 * 1024,
        "enable_idempotence": False,
    }


class Producer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` the publisher uses."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> asyncio.Future[Any]: ...

    async def flush(self) -> None: ...


@dataclass
class PublishResult:
    sent: int = 0  # acknowledged by the broker
    failed: int = 0  # delivery failed (after the producer's own retries)
    first_error: str | None = None


async def _settle(
    pending: list[asyncio.Future[Any]], result: PublishResult, timeout_s: float
) -> None:
    """Wait for the acknowledgements of ``pending`` and count them; empties the list."""
    if not pending:
        return
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*pending, return_exceptions=True), timeout=timeout_s
        )
    except TimeoutError:
        outcomes = [TimeoutError(f"no acknowledgement within {timeout_s:g} s")] * len(pending)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            result.failed += 1
            if result.first_error is None:
                result.first_error = f"{type(outcome).__name__}: {outcome}"
        else:
            result.sent += 1
    pending.clear()


async def publish(
    producer: Producer,
    topic: str,
    events: Iterable[Event],
    pacer: Pacer,
    *,
    on_sent: Callable[[int], None] | None = None,
    ack_timeout_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    raw: Iterable[tuple[bytes, bytes]] = (),
) -> PublishResult:
    """Publish ``events`` in order, paced by ``pacer``; return counts once all are acknowledged.

    ``on_sent(n)`` is called as batches of ``n`` sends are handed to the producer (for a
    progress bar). ``raw`` (key, value) records are sent after the events, unvalidated: the demo
    uses it to show the dead-letter path.
    """
    result = PublishResult()
    pending: list[asyncio.Future[Any]] = []
    start = clock()
    handed = 0
    for event in events:
        wait = pacer.wait_s(event.timestamp, clock() - start)
        if wait > 0:
            if handed and on_sent is not None:
                on_sent(handed)
                handed = 0
            await sleep(wait)
        pending.append(
            await producer.send(topic, value=event.to_json(), key=event.user_id.encode("utf-8"))
        )
        handed += 1
        if handed >= 500 and on_sent is not None:
            on_sent(handed)
            handed = 0
        if len(pending) >= MAX_UNACKED:
            await _settle(pending, result, ack_timeout_s)
    for key, value in raw:
        pending.append(await producer.send(topic, value=value, key=key))
        handed += 1
    try:
        await asyncio.wait_for(producer.flush(), timeout=ack_timeout_s)
    except TimeoutError:
        log.warning("producer flush did not finish within %g s", ack_timeout_s)
    await _settle(pending, result, ack_timeout_s)
    if handed and on_sent is not None:
        on_sent(handed)
    if result.failed:
        log.warning(
            "%d of %d sends failed; first: %s",
            result.failed,
            result.sent + result.failed,
            result.first_error,
        )
    return result


class PublishError(RuntimeError):
    """The producer could not start or the input topic is missing; one-line reason."""


async def send_events(
    settings: Settings,
    events: Iterable[Event],
    *,
    first_ts_ms: int,
    speed: float | None,
    on_sent: Callable[[int], None] | None = None,
    raw: Iterable[tuple[bytes, bytes]] = (),
    start_timeout_s: float = 15.0,
) -> PublishResult:
    """Publish ``events`` (then ``raw`` records) to ``settings.input_topic`` with a new producer.

    The topic must exist (``nextbehavior topics create``): a producer would otherwise wait for
    metadata, or have the embedded broker create it with a default partition count.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from nextbehavior.stream.topics import TopicError, list_topics

    try:
        existing = await list_topics(settings, timeout_s=start_timeout_s)
    except TopicError as exc:
        raise PublishError(str(exc)) from None
    if settings.input_topic not in existing:
        raise PublishError(
            f"topic {settings.input_topic!r} does not exist on {settings.bootstrap} "
            "(run `nextbehavior topics create`)"
        )
    producer = AIOKafkaProducer(**producer_options(settings, linger_ms=5 if speed is None else 0))
    try:
        async with asyncio.timeout(start_timeout_s):
            await producer.start()
    except (TimeoutError, KafkaError) as exc:
        await producer.stop()
        raise PublishError(f"cannot start a producer on {settings.bootstrap}: {exc!r}") from None
    try:
        return await publish(
            producer,
            settings.input_topic,
            events,
            Pacer(first_ts_ms, speed),
            on_sent=on_sent,
            raw=raw,
            ack_timeout_s=settings.request_timeout_s * 2,
        )
    finally:
        async with asyncio.timeout(start_timeout_s):
            await producer.stop()
