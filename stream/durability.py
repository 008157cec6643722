"""State before offsets: a source offset is acknowledged only once its changelog writes are durable.

Why this exists (faust-streaming 0.15.3, read in ``faust/transport/consumer.py`` and
``faust/transport/producer.py``): a table write (``table[key] = value``) does not send its
changelog record; it puts it in the producer's *buffer* (``Topic.send_soon``), which a
background task hands to aiokafka later. At commit time ``Consumer._commit_offsets`` calls
``producer.flush()`` and then commits the acked offsets. That flush does not make the ordering
safe:

1. ``ProducerBuffer.flush()`` returns as soon as no buffered record was handed over within
   0.1 s (``flush_atmost`` swallows the timeout), even if records are still buffered;
2. aiokafka's ``flush()`` waits for batches to *finish*, not to *succeed*;
3. a changelog send that fails (after aiokafka's own retries) only logs a warning
   (``Topic._on_published``): the commit goes ahead.

So an offset could be committed while the state change its record caused is still in memory
only, and a crash would lose that change for good (the record is never replayed).

What we do instead: every table of the app is a :func:`tracked_table` subclass, whose
``send_changelog`` hands each changelog record's future to a :class:`ChangelogBarrier`,
tagged with the Faust event being processed (``faust.current_event()``: Faust allows table
writes only inside an event's context). The pipeline acknowledges each event through
:meth:`ChangelogBarrier.guard`, which first waits until *that event's* changelog writes are
confirmed by the broker (``producer_acks=-1``: all in-sync replicas). Faust commits only
acknowledged offsets, so an offset is committed only after its state change is durable,
whatever the buffer and flush do. A failed or timed-out changelog write is sticky: every later
acknowledgement raises :class:`ChangelogError`, nothing more is committed, and the worker stops
(non-zero) so that a restart recovers the table from the changelog and replays the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from nextbehavior.stream.pipeline import Headers, Sender

logger = logging.getLogger(__name__)


class ChangelogError(RuntimeError):
    """A changelog write failed or was not confirmed in time: the worker must stop."""


class ChangelogBarrier:
    """Changelog writes in flight, per source event, and the wait for them before an ack."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._by_event: dict[int, tuple[Any, set[asyncio.Future[Any]]]] = {}
        self._failure: BaseException | None = None
        self.confirmed = 0

    @property
    def pending(self) -> int:
        """Changelog writes not yet confirmed."""
        return sum(len(futs) for _, futs in self._by_event.values())

    def track(self, event: Any, future: asyncio.Future[Any]) -> None:
        """Remember ``future`` (a changelog write) as caused by ``event`` (None: no event)."""
        future.add_done_callback(self._on_done)
        if future.done():
            return
        _, futures = self._by_event.setdefault(id(event), (event, set()))
        futures.add(future)

    def _on_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            failure: BaseException | None = ChangelogError("a changelog write was cancelled")
        else:
            failure = future.exception()
        if failure is not None:
            if self._failure is None:
                logger.critical("changelog write failed; nothing more is committed: %r", failure)
                self._failure = failure
        else:
            self.confirmed += 1

    async def settle(self, event: Any) -> None:
        """Wait until every changelog write caused by ``event`` is confirmed.

        Raises :class:`ChangelogError` if any changelog write failed (this event's or an
        earlier one's) or this event's writes are not confirmed within ``timeout_s``.
        """
        self._raise_if_failed()
        entry = self._by_event.pop(id(event), None)
        if entry is None:
            return
        futures = entry[1]
        _, not_done = await asyncio.wait(futures, timeout=self.timeout_s)
        self._raise_if_failed()
        if not_done:
            if self._failure is None:
                self._failure = ChangelogError(
                    f"{len(not_done)} changelog write(s) not confirmed within {self.timeout_s:g}s"
                )
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise ChangelogError(
                f"a changelog write failed ({self._failure!r}); refusing to commit offsets "
                "past it: restart to recover state from the changelog"
            ) from self._failure

    def guard(self, ack: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """``ack`` that first waits for the event's changelog writes (see the module doc)."""

        async def durable_ack(event: Any) -> Any:
            await self.settle(event)
            return await ack(event)

        return durable_ack


def tracked_table(barrier: ChangelogBarrier) -> type[faust.Table[Any, Any]]:
    """A ``faust.Table`` class whose changelog writes ``barrier`` tracks (Faust's ``Table``
    setting, so windowed tables get it too)."""

    class TrackedTable(faust.Table[Any, Any]):
        def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
            future = super().send_changelog(*args, **kwargs)
            barrier.track(faust.current_event(), future)
            return future

    return TrackedTable


def transactional_senders(app: faust.App, source_topic: str) -> Callable[[int], Sender]:
    """Exactly-once (``processing_guarantee=exactly_once``, Apache Kafka only): the sender for
    outputs of records from ``source_topic``'s partition ``p``, inside that partition's Faust
    transaction (id ``{app id}-{group}-{p}``, as Faust's TransactionManager names it), so that
    a prediction or dead letter is committed, or aborted, together with the source offset and
    the changelog writes. Consumers that read with ``isolation_level=read_committed`` then see
    each output once."""

    def sender(partition: int) -> Sender:
        group = app.assignor.group_for_topic(source_topic)  # known once the group is joined
        transactional_id = f"{app.conf.id}-{group}-{partition}"

        async def send(
            topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
        ) -> Awaitable[Any]:
            return await app.producer.send(
                topic, key, value, None, None, headers, transactional_id=transactional_id
            )

        return send

    return sender
