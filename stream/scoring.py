"""Score a micro-batch: one predictor call off the event loop, prediction JSON per event.

If the batch's inference fails (ONNX Runtime raises its own types), each event is retried
alone, so only the event that breaks the model is dead-lettered (``inference_failed``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from nextbehavior.stream.intake import DeadLetter, Scorable
from nextbehavior.stream.predictions import Top, prediction_records, reasons
from nextbehavior.stream.predictor import BatchOutput, Predictor
from nextbehavior.stream.stats import Stats

logger = logging.getLogger(__name__)

__all__ = ["Scored", "Scorer", "Top"]


@dataclass(frozen=True, slots=True)
class Scored:
    """Per scorable event, in order: its prediction JSON (or dead letter), and that prediction's
    top item ids and type distribution (None for a dead letter), for bookkeeping without
    parsing the JSON again."""

    results: list[bytes | DeadLetter] = field(default_factory=list)
    tops: list[Top | None] = field(default_factory=list)


class Scorer:
    """Runs the predictor on ``executor`` (one thread: ONNX Runtime uses its own)."""

    def __init__(self, executor: Executor, *, explain: bool, stats: Stats) -> None:
        self.executor = executor
        self.explain = explain
        self.stats = stats

    async def score(self, predictor: Predictor, items: Sequence[Scorable]) -> Scored:
        """Prediction JSON (or a dead letter if inference fails) per item, in order."""
        if not items:
            return Scored()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            output = await loop.run_in_executor(
                self.executor, predictor.predict_histories, [w.context for w in items]
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

    async def _score_singly(self, predictor: Predictor, items: Sequence[Scorable]) -> Scored:
        loop = asyncio.get_running_loop()
        scored = Scored()
        for work in items:
            try:
                output = await loop.run_in_executor(
                    self.executor, predictor.predict_histories, [work.context]
                )
            except Exception as exc:  # noqa: BLE001 - dead-letter it, keep the partition going
                scored.results.append(DeadLetter(work.record, "inference_failed", repr(exc)))
                scored.tops.append(None)
            else:
                one = self._predictions(predictor, [work], output)
                scored.results.extend(one.results)
                scored.tops.extend(one.tops)
        return scored

    def _predictions(
        self, predictor: Predictor, items: Sequence[Scorable], output: BatchOutput
    ) -> Scored:
        manifest = predictor.manifest
        because = None
        if self.explain and output.weights is not None:
            because = [
                reasons(w.context, output.weights[row], predictor.item_index, predictor.max_len)
                for row, w in enumerate(items)
            ]
        tops: list[Top | None] = []
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
            tops=tops,
        )
        return Scored(list[bytes | DeadLetter](records), tops)
