"""Exactly-once outputs: the sender of each source partition's Faust transaction.

At-least-once durability (an input offset is committed only once its record's state change and
outputs are on the broker) lives in :mod:`nextbehavior.stream.pipeline` and
:mod:`nextbehavior.stream.table_writes`: the worker writes its tables' changelog records itself,
once per batch, and acknowledges a batch only after every one of them is confirmed.
Why not Faust's own table writes (faust-streaming 0.15.3, ``faust/transport/producer.py``): a
table assignment puts its changelog record in the producer *buffer*, whose ``flush()`` before a
commit returns once nothing was handed over for 0.1 s, waits for batches to finish rather than
succeed, and a failed changelog send only logs a warning, so an offset could be committed while
its state change was in memory only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from nextbehavior.stream.outbox import Headers, Sender

logger = logging.getLogger(__name__)


def producer_sender(app: faust.App, transactional_id: str | None = None) -> Sender:
    """A :data:`Sender` through the app's producer (inside transaction ``transactional_id``
    when given)."""

    async def send(
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        partition: int | None,
    ) -> Awaitable[Any]:
        return await app.producer.send(
            topic, key, value, partition, None, headers, transactional_id=transactional_id
        )

    return send


def transactional_senders(app: faust.App, source_topic: str) -> Callable[[int], Sender]:
    """Exactly-once (``processing_guarantee=exactly_once``, Apache Kafka only): the sender for
    outputs of records from ``source_topic``'s partition ``p``, inside that partition's Faust
    transaction (id ``{app id}-{group}-{p}``, as Faust's TransactionManager names it), so that
    a prediction or dead letter is committed, or aborted, together with the source offset and
    the changelog writes. Consumers that read with ``isolation_level=read_committed`` then see
    each output once."""

    def sender(source: int) -> Sender:
        group = app.assignor.group_for_topic(source_topic)  # known once the group is joined
        return producer_sender(app, f"{app.conf.id}-{group}-{source}")

    return sender
