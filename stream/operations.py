"""The worker's operations side: ``/metrics``, ``/healthz``, ``/readyz`` and hot model reload.

:class:`Operations` is created with the Faust app (``worker.build_app``) and owns the metrics
(:mod:`~nextbehavior.stream.metrics`), the health signals (:mod:`~nextbehavior.stream.health`),
the online evaluator that gives ``nextbehavior_online_hit_at_10``, and, for a directory of
bundles, the :class:`~nextbehavior.stream.reload.BundleWatcher`. The pipeline calls
:meth:`Operations.batch_done` after each batch's outputs are on the broker.

A periodic task (after table recovery) beats the liveness clock every second and, every
``health_interval_s``, asks the broker for its metadata (``source="probe"`` in
:meth:`Health.report_broker`) and refreshes each owned input partition's high watermark (from
the consumer's last fetch, right on Tansu too) and committed offset, for the lag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiokafka.errors import IllegalStateError, KafkaError
from faust.exceptions import ConsumerNotStarted
from faust.web import Request, Response, View

from nextbehavior.stream.connection import aiokafka_options
from nextbehavior.stream.health import GroupState, Health
from nextbehavior.stream.intake import DeadLetter, Scorable
from nextbehavior.stream.metrics import CONTENT_TYPE, MeteredStats, WorkerMetrics
from nextbehavior.stream.online_eval import OnlineEvaluator
from nextbehavior.stream.predictions import Top
from nextbehavior.stream.predictor import Predictor
from nextbehavior.stream.reload import BundleDirectory, BundleWatcher, Loaded, Signature
from nextbehavior.stream.settings import Settings

if TYPE_CHECKING:
    from aiokafka.client import AIOKafkaClient

    from nextbehavior.stream.worker import WorkerApp

logger = logging.getLogger(__name__)

BEAT_S: Final = 1.0


class Operations:
    """Metrics, health and hot reload of one worker (see the module docstring)."""

    def __init__(self, settings: Settings, predictor: Predictor) -> None:
        self.settings = settings
        self.health = Health(stall_s=settings.liveness_stall_s)
        self.evaluator = OnlineEvaluator()
        self.stats = MeteredStats()
        self.metrics = WorkerMetrics(
            self.stats,
            evaluator=self.evaluator,
            state_users=self._state_users,
            lag=self._lag,
            pending=self._pending,
        )
        self.stats.metrics = self.metrics
        self.watcher: BundleWatcher[Predictor] | None = None
        self._worker: WorkerApp | None = None
        self._joined = False
        self._client: AIOKafkaClient | None = None
        self._serving(predictor)

    # --- wiring -----------------------------------------------------------------------------
    def install(self, worker: WorkerApp) -> None:
        """Register the web pages, the rebalance signal and the health task on the app."""
        self._worker = worker
        app = worker.app
        ops = self

        @app.page("/metrics")
        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                return self.bytes(ops.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

        @app.page("/healthz")
        class LivenessView(View):
            async def get(self, request: Request) -> Response:
                verdict = ops.health.liveness()
                return self.json(verdict.body(), status=verdict.status)

        @app.page("/readyz")
        class ReadinessView(View):
            async def get(self, request: Request) -> Response:
                verdict = ops.health.readiness(ops.group_state())
                return self.json(verdict.body(), status=verdict.status)

        app.on_partitions_assigned.connect(self._on_assigned)
        app.task(self._health_loop)
        del MetricsView, LivenessView, ReadinessView  # registered on the app

    def watch(
        self,
        directory: BundleDirectory,
        current: Loaded[Predictor],
        refused: set[tuple[Path, Signature]],
        load: Callable[[Path], Predictor],
    ) -> None:
        """Hot reload from ``directory`` every ``reload_interval_s`` (before the app starts)."""
        assert self._worker is not None, "install() first"
        for _ in refused:  # refused at start
            self.metrics.reloads.labels("refused").inc()
        watcher = BundleWatcher(directory, current, load, self._swap, self._refused, refused)
        self.watcher = watcher
        interval = self.settings.reload_interval_s

        async def watch_bundles() -> None:
            await watcher.run(interval)

        self._worker.app.task(watch_bundles)
        logger.info("watching %s for new model bundles every %gs", directory.root, interval)

    # --- the pipeline's observer ------------------------------------------------------------
    def batch_done(
        self,
        predictor: Predictor,
        batch: Sequence[tuple[Any, Any]],
        results: Sequence[bytes | DeadLetter],
        tops: Sequence[Top | None],
    ) -> None:
        """A batch's outputs are on the broker: latency, online scores, progress. Never raises.

        ``batch``: the ``(Faust event, work)`` pairs as taken; ``results``: one per
        :class:`Scorable` work, in order (prediction JSON, or a dead letter if inference failed);
        ``tops``: their top item ids and type distributions (None for a dead letter).
        """
        try:
            self._account(predictor, batch, tops)
        except Exception:  # bookkeeping must never stop the pipeline
            logger.exception("operations bookkeeping failed on a batch of %d", len(batch))

    def _account(
        self,
        predictor: Predictor,
        batch: Sequence[tuple[Any, Any]],
        tops: Sequence[Top | None],
    ) -> None:
        now_s = time.time()
        version = predictor.manifest.model_version
        debug = logger.isEnabledFor(logging.DEBUG)
        summaries = iter(tops)
        for token, work in batch:
            record = work.record  # every kind of work carries its input record
            self.health.offsets((record.topic, record.partition), position=record.offset + 1)
            if not isinstance(work, Scorable):
                continue
            top = next(summaries)
            if top is None:  # a dead letter: inference failed
                continue
            produced_s = _record_time_s(token)
            if produced_s is not None:
                self.metrics.event_to_prediction.observe(max(now_s - produced_s, 0.0))
            event = work.event
            if not work.duplicate:
                self.evaluator.add_event(event)
                self.evaluator.observe_prediction(event.user_id, event.event_id, *top)
            if debug:
                logger.debug(
                    "predicted",
                    extra={
                        "user_id": event.user_id,
                        "event_id": event.event_id,
                        "model_version": version,
                        "partition": record.partition,
                        "offset": record.offset,
                    },
                )

    # --- health -----------------------------------------------------------------------------
    def group_state(self) -> GroupState:
        app = self._app()
        recovery = getattr(app.tables, "recovery", None)
        done = recovery is None or recovery.completed.is_set()
        return GroupState(
            joined=self._joined,
            rebalancing=bool(app.rebalancing),
            recovering=bool(app.in_recovery) or not done,
            assigned=len(self._owned()),
        )

    async def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        self._joined = True
        self.health.assigned((tp.topic, tp.partition) for tp in self._owned())

    async def _health_loop(self) -> None:
        interval = self.settings.health_interval_s
        next_check = 0.0
        try:
            while True:
                self.health.beat()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + interval
                    self.refresh_offsets()
                    await self._probe_broker(timeout_s=max(1.0, min(interval, 10.0)))
                await asyncio.sleep(BEAT_S)
        finally:
            if self._client is not None:
                await asyncio.shield(self._client.close())

    async def _probe_broker(self, timeout_s: float) -> None:
        from aiokafka.client import AIOKafkaClient

        try:
            async with asyncio.timeout(timeout_s):
                if self._client is None:
                    client = AIOKafkaClient(**aiokafka_options(self.settings))
                    try:
                        await client.bootstrap()
                    except BaseException:
                        await client.close()
                        raise
                    self._client = client
                await self._client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError) as exc:
            self.health.report_broker(False, f"metadata request failed: {exc!r}", source="probe")
        else:
            self.health.report_broker(True, source="probe")

    def refresh_offsets(self) -> None:
        """Each owned input partition's high watermark and committed offset, into health."""
        consumer = self._app().consumer
        owned = self._owned()
        self.health.assigned((tp.topic, tp.partition) for tp in owned)
        # Faust's committed offsets (a private map, read defensively): None there means no
        # commit or 0, so the group starts from the beginning; before a partition's first record
        # is processed, its position counts from 0 then.
        committed = getattr(consumer, "_committed_offset", None)
        for tp in owned:
            try:
                highwater = consumer.highwater(tp)
            except (ConsumerNotStarted, IllegalStateError, KeyError):
                highwater = None
            position = None if committed is None else committed.get(tp) or 0
            self.health.offsets(
                (tp.topic, tp.partition),
                position=position if isinstance(position, int) else None,
                highwater=highwater if isinstance(highwater, int) else None,
            )

    # --- reload -----------------------------------------------------------------------------
    def _swap(self, loaded: Loaded[Predictor]) -> None:
        worker = self._worker
        assert worker is not None
        old = worker.predictor.manifest.model_version
        worker.use_predictor(loaded.predictor)
        self._serving(loaded.predictor)
        self.metrics.reloads.labels("ok").inc()
        new = loaded.predictor.manifest.model_version
        logger.info(
            "now serving model %s from %s (was %s)",
            new,
            loaded.candidate.path,
            old,
            extra={"model_version": new},
        )

    def _refused(self, path: Path, reason: str) -> None:
        self.metrics.reloads.labels("refused").inc()

    def _serving(self, predictor: Predictor) -> None:
        version = predictor.manifest.model_version
        self.metrics.serving(version, predictor.provider)
        self.health.model_loaded(version)

    # --- reading the app --------------------------------------------------------------------
    def _app(self) -> Any:
        assert self._worker is not None, "install() first"
        return self._worker.app

    def _owned(self) -> list[Any]:
        """The input topic's partitions assigned to this worker ([] before the consumer runs)."""
        try:
            assignment = self._app().consumer.assignment()
        except ConsumerNotStarted:
            return []
        topic = self.settings.input_topic
        return sorted((tp for tp in assignment if tp.topic == topic), key=lambda tp: tp.partition)

    def _state_users(self) -> int:
        if self._worker is None:
            return 0
        return len(self._worker.intake.state.table.store)

    def _lag(self) -> dict[tuple[str, int], int]:
        if self._worker is not None:
            self.refresh_offsets()
        return self.health.lag()

    def _pending(self) -> int:
        pipeline = self._worker.pipeline if self._worker is not None else None
        return pipeline.batcher.pending if pipeline is not None else 0


def _record_time_s(token: Any) -> float | None:
    """The input record's Kafka timestamp (seconds) from a Faust event, None if it has none."""
    timestamp = getattr(getattr(token, "message", None), "timestamp", None)
    return float(timestamp) if isinstance(timestamp, int | float) and timestamp > 0 else None
