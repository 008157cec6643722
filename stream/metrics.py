"""The worker's Prometheus metrics (text exposition at ``/metrics`` on its web port).

One :class:`WorkerMetrics` per app, with its own ``CollectorRegistry`` (nothing global, so two
apps in one process never mix). Histograms are observed as batches go by; counters that
:class:`~nextbehavior.stream.stats.Stats` already keeps (events by outcome, dead letters by
type), the state size, consumer lag and the online hit@10 are read at scrape time.

| metric | type | labels |
| --- | --- | --- |
| ``nextbehavior_events_total`` | counter | ``outcome``: predicted, duplicate, dead_lettered |
| ``nextbehavior_dead_letters_total`` | counter | ``error_type`` |
| ``nextbehavior_send_retries_total`` | counter | |
| ``nextbehavior_inference_seconds`` | histogram | (one observation per batch) |
| ``nextbehavior_batch_size`` | histogram | (events per inference batch) |
| ``nextbehavior_event_to_prediction_seconds`` | histogram | (record timestamp to output acked) |
| ``nextbehavior_model_info`` | gauge (1) | ``model_version``, ``provider`` |
| ``nextbehavior_model_reload_total`` | counter | ``outcome``: ok, refused |
| ``nextbehavior_state_users`` | gauge | (users in this worker's state table) |
| ``nextbehavior_consumer_lag`` | gauge | ``topic``, ``partition`` (high watermark - position) |
| ``nextbehavior_pending_events`` | gauge | (taken, not yet sent) |
| ``nextbehavior_online_hit_at_10`` | gauge | ``scope``: window (recent predictions), total |
| ``nextbehavior_online_scored_total`` | counter | (predictions scored against the next event) |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from nextbehavior.stream.online_eval import OnlineEvaluator
from nextbehavior.stream.stats import Stats

CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
OUTCOMES: Final = ("predicted", "duplicate", "dead_lettered")
INFERENCE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

LagReader = Callable[[], Mapping[tuple[str, int], int]]


class WorkerMetrics:
    """The registry and the metrics of one worker; see the module docstring for the list."""

    def __init__(
        self,
        stats: Stats,
        *,
        evaluator: OnlineEvaluator | None = None,
        state_users: Callable[[], int] | None = None,
        lag: LagReader | None = None,
        pending: Callable[[], int] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.inference_seconds = Histogram(
            "nextbehavior_inference_seconds",
            "Time of one inference call (one batch)",
            buckets=INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "nextbehavior_batch_size",
            "Events per inference batch",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.event_to_prediction = Histogram(
            "nextbehavior_event_to_prediction_seconds",
            "From the input record's timestamp to its prediction acknowledged by the broker",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "nextbehavior_model_info",
            "The model bundle being served (value 1)",
            ["model_version", "provider"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "nextbehavior_model_reload",
            "Model bundles loaded (ok) or refused after start",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("ok", "refused"):
            self.reloads.labels(outcome)
        self.registry.register(
            _ScrapeCollector(
                stats, evaluator, state_users, lag or (lambda: {}), pending or (lambda: 0)
            )
        )

    def serving(self, model_version: str, provider: str) -> None:
        """The model now served: ``nextbehavior_model_info`` has exactly one series."""
        self.model_info.clear()
        self.model_info.labels(model_version, provider).set(1)

    def observe_batch(self, size: int, inference_s: float) -> None:
        self.batch_size.observe(size)
        self.inference_seconds.observe(inference_s)

    def render(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


@dataclass
class MeteredStats(Stats):
    """:class:`Stats` that also feeds the batch histograms of ``metrics`` (set after init)."""

    metrics: WorkerMetrics | None = field(default=None, repr=False)

    def observe_batch(self, size: int, inference_s: float) -> None:
        super().observe_batch(size, inference_s)
        if self.metrics is not None:
            self.metrics.observe_batch(size, inference_s)


@dataclass(eq=False)  # registries key collectors by identity
class _ScrapeCollector(Collector):
    """Metrics computed when scraped, from state that others keep."""

    stats: Stats
    evaluator: OnlineEvaluator | None
    state_users: Callable[[], int] | None
    lag: LagReader
    pending: Callable[[], int]

    def collect(self) -> Iterable[Metric]:
        events = CounterMetricFamily(
            "nextbehavior_events", "Input records by outcome", labels=["outcome"]
        )
        for outcome in sorted({*OUTCOMES, *self.stats.events}):  # and any newer outcome
            events.add_metric([outcome], self.stats.events.get(outcome, 0))
        yield events
        errors = CounterMetricFamily(
            "nextbehavior_dead_letters",
            "Dead-lettered records by error type",
            labels=["error_type"],
        )
        for error_type, count in sorted(self.stats.errors.items()):
            errors.add_metric([error_type], count)
        yield errors
        yield CounterMetricFamily(
            "nextbehavior_send_retries", "Output sends retried", value=self.stats.send_retries
        )
        yield GaugeMetricFamily(
            "nextbehavior_pending_events", "Events taken but not yet sent", value=self.pending()
        )
        if self.state_users is not None:
            yield GaugeMetricFamily(
                "nextbehavior_state_users",
                "Users in this worker's sequence state (local table, standbys included)",
                value=self.state_users(),
            )
        lag = GaugeMetricFamily(
            "nextbehavior_consumer_lag",
            "Input records not yet processed: high watermark - position",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        if self.evaluator is not None:
            hit = GaugeMetricFamily(
                "nextbehavior_online_hit_at_10",
                "Share of predictions whose top 10 held the user's actual next item",
                labels=["scope"],
            )
            hit.add_metric(["window"], self.evaluator.windowed()["hit@10"])
            hit.add_metric(["total"], self.evaluator.total()["hit@10"])
            yield hit
            yield CounterMetricFamily(
                "nextbehavior_online_scored",
                "Predictions scored against the user's next event",
                value=self.evaluator.scored,
            )
