"""From taken records to sent outputs: micro-batched inference, sends, then acks.

Broker-agnostic: the worker's Faust agent gives each record to :meth:`Pipeline.take` (inside
Faust's event context, so the state write is tied to the record's partition), with a *token*
(the Faust event) to acknowledge later. Batches are scored in one predictor call on an
executor thread; every output of a batch is sent, every send is awaited, and only then are the
batch's tokens acknowledged, in order. So a source offset is never committed before the
outputs of its record are on the broker (at-least-once); Faust's commit flushes the producer
(changelog writes included) before it commits offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

from aiokafka.errors import MessageSizeTooLargeError

from nextbehavior.stream.batcher import MicroBatcher
from nextbehavior.stream.intake import DeadLetter, Forgotten, Intake, Record, Scorable, Work
from nextbehavior.stream.predictions import prediction_records, reasons
from nextbehavior.stream.predictor import BatchOutput, Predictor
from nextbehavior.stream.stats import Stats

logger = logging.getLogger(__name__)

Token = TypeVar("Token")
Headers = list[tuple[str, bytes]]
Sender = Callable[[str, bytes | None, bytes | None, Headers | None], Awaitable[Awaitable[Any]]]
"""``await send(topic, key, value, headers)`` queues a record and returns its delivery future."""
Acker = Callable[[Any], Awaitable[Any]]
Outgoing = tuple[str, bytes | None, bytes | None, Headers | None, int]
"""``(topic, key, value, headers, source partition)``: an output and where its input came from."""

SEND_ATTEMPTS = 3
SEND_BACKOFF_S = 0.5


class BatchObserver(Protocol):
    """Told about each batch once its outputs are delivered (metrics, health; must not raise)."""

    def batch_done(
        self,
        predictor: Predictor,
        batch: Sequence[tuple[Any, Any]],
        results: Sequence[bytes | DeadLetter],
    ) -> None:
        """``batch`` as taken; ``results``: one per Scorable work, in order."""


class SendFailedError(RuntimeError):
    """Outputs could not be delivered after retries; the worker must stop (nothing is acked)."""


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
        explain: bool = False,
        stats: Stats | None = None,
        observer: BatchObserver | None = None,
        send_for: Callable[[int], Sender] | None = None,
    ) -> None:
        self.intake = intake
        self.send_for = send_for  # exactly-once: the sender of each source partition's transaction
        self.observer = observer
        self.send = send
        self.ack = ack
        self.output_topic = output_topic
        self.dlq_topic = dlq_topic
        self.explain = explain
        self.stats = stats if stats is not None else Stats()
        self.batcher: MicroBatcher[tuple[Token, Work]] = MicroBatcher(
            self._handle, max_size=batch_size, max_wait_s=batch_wait_s
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.predictor = predictor
        self.use_predictor(predictor)

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
        """Handle batches until :meth:`close`; returns when drained."""
        await self.batcher.run()

    def close(self) -> None:
        self.batcher.close()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, batch: list[tuple[Token, Work]]) -> None:
        predictor = self.predictor
        scorable = [w for _, w in batch if isinstance(w, Scorable)]
        results = await self._score(predictor, scorable) if scorable else []
        scored = iter(results)
        out: list[Outgoing] = []
        for _, work in batch:
            if isinstance(work, Forgotten):  # a user's state deleted: nothing to send
                self.stats.events["forgotten"] += 1
                continue
            result = next(scored) if isinstance(work, Scorable) else work
            if isinstance(result, DeadLetter):
                rec = result.record
                out.append((self.dlq_topic, rec.key, rec.value, result.headers(), rec.partition))
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
                out.append(
                    (self.output_topic, work.record.key, result, None, work.record.partition)
                )
                assert isinstance(work, Scorable)
                self.stats.events["duplicate" if work.duplicate else "predicted"] += 1
        await self._send_all(out)
        if self.observer is not None:
            self.observer.batch_done(predictor, batch, results)
        for token, _ in batch:
            await self.ack(token)

    async def _score(
        self, predictor: Predictor, items: Sequence[Scorable]
    ) -> list[bytes | DeadLetter]:
        """Prediction JSON (or a dead letter if inference fails) per item, in order."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            output = await loop.run_in_executor(
                self._executor, predictor.predict_histories, [w.context for w in items]
            )
        except Exception:  # ORT raises its own types; retry one by one below
            logger.exception(
                "inference failed on a batch of %d; retrying one by one",
                len(items),
                extra={"model_version": predictor.manifest.model_version},
            )
            return await self._score_singly(predictor, items)
        self.stats.observe_batch(len(items), time.perf_counter() - started)
        return self._predictions(predictor, items, output)

    async def _score_singly(
        self, predictor: Predictor, items: Sequence[Scorable]
    ) -> list[bytes | DeadLetter]:
        loop = asyncio.get_running_loop()
        result: list[bytes | DeadLetter] = []
        for work in items:
            try:
                output = await loop.run_in_executor(
                    self._executor, predictor.predict_histories, [work.context]
                )
            except Exception as exc:  # noqa: BLE001 - dead-letter it, keep the partition going
                result.append(DeadLetter(work.record, "inference_failed", repr(exc)))
            else:
                result.extend(self._predictions(predictor, [work], output))
        return result

    def _predictions(
        self, predictor: Predictor, items: Sequence[Scorable], output: BatchOutput
    ) -> list[bytes | DeadLetter]:
        manifest = predictor.manifest
        because = None
        if self.explain and output.weights is not None:
            because = [
                reasons(w.context, output.weights[row], predictor.item_index, predictor.max_len)
                for row, w in enumerate(items)
            ]
        records = prediction_records(
            [w.event for w in items],
            [w.history_length for w in items],
            top_ids=output.top_ids,
            top_scores=output.top_scores,
            type_probs=output.type_probs,
            items=manifest.items,
            event_types=manifest.event_types,
            model_version=manifest.model_version,
            predicted_at=int(time.time() * 1000),
            because=because,
        )
        return list[bytes | DeadLetter](records)

    async def _send_all(self, out: list[Outgoing]) -> None:
        """Send every record and wait for delivery; resend failures, then give up loudly."""
        todo = out
        for attempt in range(1, SEND_ATTEMPTS + 1):
            futures = [await self._enqueue(rec) for rec in todo]
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [rec for rec, res in zip(todo, results, strict=True) if _failed(res)]
            if not failed:
                return
            first = next(res for res in results if _failed(res))
            if attempt == SEND_ATTEMPTS:
                raise SendFailedError(f"{len(failed)} output(s) undeliverable: {first!r}")
            logger.warning("%d send(s) failed (%r); retry %d", len(failed), first, attempt)
            self.stats.send_retries += 1
            await asyncio.sleep(SEND_BACKOFF_S * attempt)
            todo = failed

    async def _enqueue(self, rec: Outgoing) -> Awaitable[Any]:
        """Queue one record. A dead letter too large for the dead-letter topic (its headers
        push it over the limit) goes without its value, with a ``value_dropped`` header,
        rather than crash-looping the worker on it."""
        topic, key, value, headers, partition = rec
        send = self.send if self.send_for is None else self.send_for(partition)
        try:
            return await send(topic, key, value, headers)
        except MessageSizeTooLargeError:
            if topic != self.dlq_topic or value is None:
                raise
            logger.error(
                "dead letter of %d bytes is too large; sending it without its value", len(value)
            )
            dropped = ("value_dropped", f"{len(value)} bytes: too large to forward".encode())
            return await send(topic, key, None, [*(headers or []), dropped])


def _failed(result: Any) -> bool:
    return isinstance(result, BaseException)


def _where(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


def _fields(record: Record) -> dict[str, int]:
    """Log fields of a record (JSON logs); no key: it may be a raw user id."""
    return {"partition": record.partition, "offset": record.offset}
