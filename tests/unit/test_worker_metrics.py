"""Prometheus rendering of the worker's metrics (stream/metrics.py), parsed back as Prometheus
would read it."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nextbehavior.stream.metrics import CONTENT_TYPE, MeteredStats, WorkerMetrics
from nextbehavior.stream.online_eval import OnlineEvaluator
from nextbehavior.stream.stats import Stats


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_content_type_is_the_text_format() -> None:
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_counters_from_stats_always_have_every_outcome() -> None:
    stats = Stats()
    got = samples(WorkerMetrics(stats))
    for outcome in ("predicted", "duplicate", "dead_lettered"):
        assert got[("nextbehavior_events_total", (("outcome", outcome),))] == 0
    stats.events.update({"predicted": 7, "dead_lettered": 2})
    stats.errors.update({"not_json": 2})
    stats.send_retries = 1
    got = samples(WorkerMetrics(stats))
    assert got[("nextbehavior_events_total", (("outcome", "predicted"),))] == 7
    assert got[("nextbehavior_events_total", (("outcome", "dead_lettered"),))] == 2
    assert got[("nextbehavior_dead_letters_total", (("error_type", "not_json"),))] == 2
    assert got[("nextbehavior_send_retries_total", ())] == 1


def test_batch_histograms_through_metered_stats() -> None:
    stats = MeteredStats()
    metrics = WorkerMetrics(stats)
    stats.metrics = metrics
    stats.observe_batch(3, 0.002)
    stats.observe_batch(64, 0.02)
    got = samples(metrics)
    assert stats.batches == 2 and stats.batch_events == 67  # still a Stats
    assert got[("nextbehavior_batch_size_count", ())] == 2
    assert got[("nextbehavior_batch_size_sum", ())] == 67
    assert got[("nextbehavior_batch_size_bucket", (("le", "4.0"),))] == 1
    assert got[("nextbehavior_batch_size_bucket", (("le", "64.0"),))] == 2
    assert got[("nextbehavior_inference_seconds_count", ())] == 2
    assert abs(got[("nextbehavior_inference_seconds_sum", ())] - 0.022) < 1e-9


def test_model_info_has_one_series_and_reloads_start_at_zero() -> None:
    metrics = WorkerMetrics(Stats())
    metrics.serving("v1", "CPUExecutionProvider")
    metrics.serving("v2", "CPUExecutionProvider")
    got = samples(metrics)
    info = {k: v for k, v in got.items() if k[0] == "nextbehavior_model_info"}
    assert info == {
        (
            "nextbehavior_model_info",
            (("model_version", "v2"), ("provider", "CPUExecutionProvider")),
        ): 1.0
    }
    assert got[("nextbehavior_model_reload_total", (("outcome", "ok"),))] == 0
    assert got[("nextbehavior_model_reload_total", (("outcome", "refused"),))] == 0


def test_scrape_time_gauges() -> None:
    evaluator = OnlineEvaluator()
    lag: dict[tuple[str, int], int] = {("events", 1): 4, ("events", 0): 0}
    metrics = WorkerMetrics(
        Stats(), evaluator=evaluator, state_users=lambda: 12, lag=lambda: lag, pending=lambda: 3
    )
    # u1: predicted i2 after its first event, and i2 came next -> a hit; u2: a miss.
    for user, item, truth in (("u1", "i2", "i2"), ("u2", "i9", "i3")):
        evaluator.observe_event(user, f"{user}-0", "i1", "view", 1)
        evaluator.observe_prediction(user, f"{user}-0", [item], {"view": 1.0})
        evaluator.observe_event(user, f"{user}-1", truth, "view", 2)
    got: dict[Any, float] = samples(metrics)
    assert got[("nextbehavior_state_users", ())] == 12
    assert got[("nextbehavior_pending_events", ())] == 3
    assert got[("nextbehavior_consumer_lag", (("partition", "1"), ("topic", "events")))] == 4
    assert got[("nextbehavior_consumer_lag", (("partition", "0"), ("topic", "events")))] == 0
    assert got[("nextbehavior_online_hit_at_10", (("scope", "window"),))] == 0.5
    assert got[("nextbehavior_online_hit_at_10", (("scope", "total"),))] == 0.5
    assert got[("nextbehavior_online_scored_total", ())] == 2


def test_registries_are_per_app() -> None:
    a, b = WorkerMetrics(Stats()), WorkerMetrics(Stats())  # no "duplicated timeseries" error
    a.serving("va", "cpu")
    assert ("nextbehavior_model_info", (("model_version", "va"), ("provider", "cpu"))) not in (
        samples(b)
    )
