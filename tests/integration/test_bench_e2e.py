"""``nextbehavior bench e2e`` end to end at a tiny size: both process kinds run, the JSON line
carries every figure (the figures themselves are benchmarks, not asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.cli import app

pytestmark = pytest.mark.timeout(240)


def test_bench_e2e_reports_worker_passthrough_and_latency(
    broker: EmbeddedBroker, tiny_bundle: Path
) -> None:
    args = ["bench", "e2e", "--events", "300", "--latency-seconds", "1", "--json"]
    result = CliRunner().invoke(
        app,
        [*args, "--bundle", str(tiny_bundle), "--broker", broker.url],
        env={"NBP_PROVIDERS": "CPUExecutionProvider"},
    )
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert out["events_per_s"] > 0 and out["passthrough_events_per_s"] > 0
    assert out["ratio"] == pytest.approx(
        out["events_per_s"] / out["passthrough_events_per_s"], rel=1e-2
    )
    assert set(out["latency_ms"]) == {"p50", "p95", "p99"}
    assert out["latency_ms"]["p50"] <= out["latency_ms"]["p99"]
    assert out["machine"]["cores"] >= 1 and out["machine"]["cpu_model"]
    assert out["versions"]["faust-streaming"]
    assert out["worker_stats"][0]["events"]["predicted"] >= 300  # every backlog event predicted
    assert out["cpu_ms_per_event"]["worker"] > 0
    # the latency part ran in its own worker process, which predicted every paced event
    paced = max(10, math.ceil(out["latency_rate_per_s"] * 1))
    assert out["latency_worker_stats"][0]["events"]["predicted"] >= paced - 1
    assert "ratio worker/passthrough" in result.stdout
