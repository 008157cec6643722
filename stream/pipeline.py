"""From taken records to sent outputs: micro-batched inference, sends, then acks.

Broker-agnostic: the worker's Faust agent gives each record to :meth:`Pipeline.take`, which
applies it to the users' state at once (in memory), with a *token* (the Faust event) to
acknowledge later. Per batch: the state changes of its records are flushed and their changelog
records sent (:mod:`nextbehavior.stream.table_writes`), the batch is scored in one predictor
call on an executor thread while they travel, its predictions and dead letters are sent, and
once *every* one of those records is confirmed by the broker the batch's tokens are
acknowledged, in order. So a source offset is never committed before its record's state change
and outputs are durable (at-least-once). The wait for a batch's confirmations overlaps the
scoring of the next batch; acknowledgements stay in batch order.

A changelog record that cannot be delivered (after the client's own retries) stops the
pipeline at once: resending it later could land it after a newer write of the same key.
Predictions and dead letters are resent a few times first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

from nextbehavior.stream.batcher import MicroBatcher
from nextbehavior.stream.intake import DeadLetter, Forgotten, Intake, Record, Scorable, Work
from nextbehavior.stream.outbox import (
    BatchSend,
    Headers,
    Outbox,
    Outgoing,
    Sender,
    SendFailedError,
    failed,
)
from nextbehavior.stream.predictor import Predictor
from nextbehavior.stream.scoring import Scored, Scorer, Top
from nextbehavior.stream.stats import Stats

logger = logging.getLogger(__name__)

__all__ = ["ChangelogError", "Headers", "Outgoing", "Pipeline", "SendFailedError", "Sender"]

Token = TypeVar("Token")
Acker = Callable[[Any], Awaitable[Any]]


MAX_BATCHES_IN_DELIVERY = 4
"""Batches scored and sent but not yet acknowledged; the next one waits for the oldest."""


class BatchObserver(Protocol):
    """Told about each batch once its outputs are delivered (metrics, health; must not raise)."""

    def batch_done(
        self,
        predictor: Predictor,
        batch: Sequence[tuple[Any, Any]],
        results: Sequence[bytes | DeadLetter],
        tops: Sequence[Top | None],
    ) -> None:
        """``batch`` as taken; ``results``: one per Scorable work, in order; ``tops``: the
        same predictions' top item ids and type distributions (None for a dead letter)."""


class ChangelogError(SendFailedError):
    """A state change could not be made durable; the worker must stop (nothing is acked), so a
    restart recovers the tables from the changelogs and replays the unacknowledged records."""


class Pipeline(Generic[Token]):
    """Batches ``(token, work)`` pairs, scores them, sends outputs, then acks the tokens."""

    def __init__(
        self,
        intake: Intake,
        predictor: Predictor,
        *,
        send: Sender,
        ack: Acker,
        output_topic: str,
        dlq_topic: str,
        batch_size: int,
        batch_wait_s: float,
        batch_idle_s: float | None = None,
        explain: bool = False,
        stats: Stats | None = None,
        observer: BatchObserver | None = None,
        send_for: Callable[[int], Sender] | None = None,
        send_many: BatchSend | None = None,
    ) -> None:
        self.intake = intake
        self.observer = observer
        self.ack = ack
        self.output_topic = output_topic
        self.dlq_topic = dlq_topic
        self.explain = explain
        self.stats = stats if stats is not None else Stats()
        self.outbox = Outbox(send, dlq_topic, self.stats, send_for=send_for, send_many=send_many)
        self.batcher: MicroBatcher[tuple[Token, Work]] = MicroBatcher(
            self._handle, max_size=batch_size, max_wait_s=batch_wait_s, idle_s=batch_idle_s
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.scorer = Scorer(self._executor, explain=explain, stats=self.stats)
        self.predictor = predictor
        self.use_predictor(predictor)
        self._delivering: deque[asyncio.Future[None]] = deque()  # batches not yet acked
        self._enqueued: asyncio.Future[None] | None = None  # the last batch's records queued
        self._failure: asyncio.Future[None] | None = None

    def use_predictor(self, predictor: Predictor) -> None:
        """Serve ``predictor`` from the next batch on (batches never mix models)."""
        self.predictor = predictor
        self.intake.max_len = predictor.max_len

    async def take(self, token: Token, record: Record) -> None:
        """Apply one record to state now; queue its output. Never raises for a bad record."""
        try:
            work = self.intake.take(record)
        except Exception as exc:  # a bug on one record must not stall a partition
            logger.exception(
                "worker failed on record %s[%d]@%d", *_where(record), extra=_fields(record)
            )
            work = DeadLetter(record, "internal_error", f"worker failed on this record: {exc!r}")
        await self.batcher.put((token, work))

    async def run(self) -> None:
        """Handle batches until :meth:`close`; returns when drained (every batch acked).

        Raises if a batch cannot be delivered (the worker must stop), even while idle."""
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        batches = asyncio.ensure_future(self.batcher.run())
        try:
            await asyncio.wait([batches, self._failure], return_when=asyncio.FIRST_COMPLETED)
            if self._failure.done():
                raise self._failure.exception() or SendFailedError("delivery failed")
            await batches
            await self._settled()
        finally:
            if not batches.done():
                batches.cancel()

    def close(self) -> None:
        self.batcher.close()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, batch: list[tuple[Token, Work]]) -> None:
        predictor = self.predictor
        changes = [
            Outgoing(w.topic, w.key, w.value, None, w.partition, w.partition)
            for w in self.intake.flush()
        ]
        scorable = [w for _, w in batch if isinstance(w, Scorable)]
        scored = await self.scorer.score(predictor, scorable)
        out = self._outputs(batch, scored.results)
        while len(self._delivering) >= MAX_BATCHES_IN_DELIVERY:  # backpressure
            await self._delivering[0]  # raises if it failed
            # The done task leaves the deque here, not only in its callback: if this coroutine
            # resumes before that callback runs (both queued in one loop turn), awaiting the
            # done task again would return at once, forever (seen: a worker spinning).
            self._forget_delivered()
        previous = self._delivering[-1] if self._delivering else None
        enqueued = asyncio.get_running_loop().create_future()
        enqueued.add_done_callback(_retrieve)
        task = asyncio.ensure_future(
            self._deliver_batch(
                previous, self._enqueued, enqueued, predictor, batch, scored, changes, out
            )
        )
        self._enqueued = enqueued
        self._delivering.append(task)
        task.add_done_callback(self._on_settled)

    def _forget_delivered(self) -> None:
        while self._delivering and self._delivering[0].done():
            self._delivering.popleft()

    def _on_settled(self, task: asyncio.Future[None]) -> None:
        self._forget_delivered()
        if task.cancelled() or task.exception() is None:
            return
        if self._failure is not None and not self._failure.done():
            self._failure.set_exception(task.exception())  # type: ignore[arg-type]

    async def _settled(self) -> None:
        """Wait until every batch handed over is delivered and acked (raise if one failed)."""
        while self._delivering:
            await self._delivering[-1]  # it waits for the ones before it
            self._forget_delivered()

    async def _deliver_batch(
        self,
        previous: asyncio.Future[None] | None,
        previous_enqueued: asyncio.Future[None] | None,
        enqueued: asyncio.Future[None],
        predictor: Predictor,
        batch: list[tuple[Token, Work]],
        scored: Scored,
        changes: list[Outgoing],
        out: list[Outgoing],
    ) -> None:
        """Queue the batch's records after the previous batch's (per-partition order, so a
        user's changelog records stay in order), wait for their delivery, then ack after the
        previous batch (acks in order). The next batch is scored meanwhile."""
        try:
            if previous_enqueued is not None:
                await previous_enqueued
            futures = await self.outbox.enqueue_all([*changes, *out])
        except BaseException as exc:
            enqueued.set_exception(exc)
            raise
        enqueued.set_result(None)
        confirmed = await asyncio.gather(*futures[: len(changes)], return_exceptions=True)
        errors = [res for res in confirmed if failed(res)]
        if errors:
            raise ChangelogError(
                f"{len(errors)} of {len(changes)} changelog write(s) failed ({errors[0]!r}); "
                "refusing to commit offsets past them: restart to recover state from the changelog"
            )
        self.stats.changelog_writes += len(changes)
        await self.outbox.deliver(out, futures[len(changes) :])
        if previous is not None:
            await previous
        if self.observer is not None:
            self.observer.batch_done(predictor, batch, scored.results, scored.tops)
        for token, _ in batch:
            await self.ack(token)

    def _outputs(
        self, batch: list[tuple[Token, Work]], results: list[bytes | DeadLetter]
    ) -> list[Outgoing]:
        scored = iter(results)
        out: list[Outgoing] = []
        for _, work in batch:
            if isinstance(work, Forgotten):  # a user's state deleted: nothing to send
                self.stats.events["forgotten"] += 1
                continue
            result = next(scored) if isinstance(work, Scorable) else work
            if isinstance(result, DeadLetter):
                rec = result.record
                out.append(
                    Outgoing(self.dlq_topic, rec.key, rec.value, result.headers(), rec.partition)
                )
                self.stats.events["dead_lettered"] += 1
                self.stats.errors[result.error_type] += 1
                logger.warning(
                    "dead-lettered %s[%d]@%d (%s): %s",
                    *_where(rec),
                    result.error_type,
                    result.reason,
                    extra=_fields(rec),
                )
            else:
                assert isinstance(work, Scorable)
                record = work.record
                out.append(Outgoing(self.output_topic, record.key, result, None, record.partition))
                self.stats.events["duplicate" if work.duplicate else "predicted"] += 1
        return out


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (the task that set it raises it)."""
    if not future.cancelled():
        future.exception()


def _where(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _fields(record: Record) -> dict[str, int]:
    """Log fields of a record (JSON logs); no key: it may be a raw user id."""
    return {"partition": record.partition, "offset": record.offset}
