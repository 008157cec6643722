"""Sending a batch's records: record batches where possible, delivery waits, bounded resends.

:class:`Outbox` queues records through the producer (``send``: one record; ``send_many``: a
batch's records grouped per partition, at-least-once; ``send_for``: the sender of each source
partition's transaction, exactly-once) and waits for their delivery. Outputs that fail are sent
again a few times, then :class:`SendFailedError` stops the worker with nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from aiokafka.errors import MessageSizeTooLargeError

from nextbehavior.stream.stats import Stats

logger = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
Sender = Callable[
    [str, bytes | None, bytes | None, Headers | None, int | None], Awaitable[Awaitable[Any]]
]
"""``await send(topic, key, value, headers, partition)`` queues a record (partition None: by
key) and returns its delivery future."""
BatchSend = Callable[[Sequence["Outgoing"]], Awaitable[list[Awaitable[Any]]]]
"""``await send_many(records)`` queues records (grouped per partition); a future per record."""

SEND_ATTEMPTS = 3
SEND_BACKOFF_S = 0.5


class Outgoing(NamedTuple):
    """A record to send, and the partition of the input record that caused it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    source: int
    partition: int | None = None  # None: chosen from the key; changelog records: the source's


class SendFailedError(RuntimeError):
    """Outputs could not be delivered after retries; the worker must stop (nothing is acked)."""


class Outbox:
    """Queues records and waits for their delivery (see the module docstring)."""

    def __init__(
        self,
        send: Sender,
        dlq_topic: str,
        stats: Stats,
        *,
        send_for: Callable[[int], Sender] | None = None,
        send_many: BatchSend | None = None,
    ) -> None:
        self.send = send
        self.dlq_topic = dlq_topic
        self.stats = stats
        self.send_for = send_for  # exactly-once: the sender of each source partition's transaction
        self.send_many = send_many  # at-least-once: predictions and changelogs in record batches

    async def enqueue_all(self, records: list[Outgoing]) -> list[Awaitable[Any]]:
        """Queue ``records``: in record batches when possible; a future per record, in order.
        Dead letters (with headers) go one by one, for the size handling of :meth:`enqueue`."""
        if self.send_many is None or self.send_for is not None:
            return [await self.enqueue(rec) for rec in records]
        plain = [rec for rec in records if rec.headers is None]
        batched = iter(await self.send_many(plain) if plain else [])
        return [
            next(batched) if rec.headers is None else await self.enqueue(rec) for rec in records
        ]

    async def enqueue(self, rec: Outgoing) -> Awaitable[Any]:
        """Queue one record. A dead letter too large for the dead-letter topic (its headers
        push it over the limit) goes without its value, with a ``value_dropped`` header,
        rather than crash-looping the worker on it."""
        topic, key, value, headers, source, partition = rec
        send = self.send if self.send_for is None else self.send_for(source)
        try:
            return await send(topic, key, value, headers, partition)
        except MessageSizeTooLargeError:
            if topic != self.dlq_topic or value is None:
                raise
            logger.error(
                "dead letter of %d bytes is too large; sending it without its value", len(value)
            )
            dropped = ("value_dropped", f"{len(value)} bytes: too large to forward".encode())
            return await send(topic, key, None, [*(headers or []), dropped], partition)

    async def deliver(self, out: list[Outgoing], futures: list[Awaitable[Any]]) -> None:
        """Wait for delivery of ``out`` (``futures``: their first sends); resend failures a few
        times, then give up loudly."""
        todo = out
        for attempt in range(1, SEND_ATTEMPTS + 1):
            results = await asyncio.gather(*futures, return_exceptions=True)
            lost = [rec for rec, res in zip(todo, results, strict=True) if failed(res)]
            if not lost:
                return
            first = next(res for res in results if failed(res))
            if attempt == SEND_ATTEMPTS:
                raise SendFailedError(f"{len(lost)} output(s) undeliverable: {first!r}")
            logger.warning("%d send(s) failed (%r); retry %d", len(lost), first, attempt)
            self.stats.send_retries += 1
            await asyncio.sleep(SEND_BACKOFF_S * attempt)
            todo = lost
            futures = [await self.enqueue(rec) for rec in todo]


def failed(result: Any) -> bool:
    """Whether a gathered delivery result is an error."""
    return isinstance(result, BaseException)
