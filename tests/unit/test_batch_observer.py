"""The pipeline -> Operations path without a broker: a real bundle, in-memory sends, tokens that
look like Faust events. Checks what /metrics and /healthz are fed from delivered batches."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from nextbehavior.stream.intake import Intake, Record
from nextbehavior.stream.operations import Operations
from nextbehavior.stream.pipeline import Headers, Pipeline
from nextbehavior.stream.predictor import Predictor
from nextbehavior.stream.settings import get_settings


@pytest.fixture(scope="module")
def predictor(tiny_bundle: Path) -> Predictor:
    return Predictor(tiny_bundle, ["CPUExecutionProvider"])


def record(user: str, k: int, offset: int, partition: int) -> Record:
    value = {
        "event_id": f"{user}-{k}",
        "user_id": user,
        "item_id": f"i{k + 1}",
        "event_type": "view",
        "timestamp": 1_700_000_000_000 + k,
    }
    return Record(user.encode(), orjson.dumps(value), "events", partition, offset)


def token(produced_s: float) -> Any:
    """Stands for a Faust event: only ``message.timestamp`` (seconds) is read."""
    return SimpleNamespace(message=SimpleNamespace(timestamp=produced_s))


async def run(ops: Operations, predictor: Predictor, records: list[tuple[Any, Record]]) -> int:
    sent: list[bytes | None] = []

    async def send(
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        partition: int | None,
    ) -> asyncio.Future[None]:
        if topic in ("out", "dlq"):  # not the state's changelog records
            sent.append(value)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def ack(token: Any) -> None:
        return None

    intake = Intake({}, max_len=predictor.max_len, horizon_ms=None, max_bytes=4096)
    pipeline: Pipeline[Any] = Pipeline(
        intake,
        predictor,
        send=send,
        ack=ack,
        output_topic="out",
        dlq_topic="dlq",
        batch_size=4,
        batch_wait_s=0.01,
        stats=ops.stats,
        observer=ops,
    )
    runner = asyncio.create_task(pipeline.run())
    for tok, rec in records:
        await pipeline.take(tok, rec)
    pipeline.close()
    await asyncio.wait_for(runner, timeout=20)
    pipeline.shutdown()
    return len(sent)


async def test_delivered_batches_feed_metrics_online_eval_and_progress(
    predictor: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    ops = Operations(get_settings(), predictor)
    now = time.time()
    records: list[tuple[Any, Record]] = []
    for k in range(6):  # u1 on partition 0, u2 on partition 1: i1, i2, ... (the model knows)
        records.append((token(now - 0.2), record("u1", k, offset=k, partition=0)))
        records.append((token(now - 0.2), record("u2", k, offset=10 + k, partition=1)))
    records.append((token(now), Record(b"u1", b"junk", "events", 0, 6)))
    records.append((token(0.0), record("u2", 5, offset=16, partition=1)))  # a repeat, no time
    with caplog.at_level(logging.DEBUG, logger="nextbehavior.stream.operations"):
        assert await run(ops, predictor, records) == 14

    assert ops.evaluator.scored == 10  # each user's 5 later events resolve a prediction
    assert ops.evaluator.total()["hit@10"] > 0.8
    latency = {s.name: s.value for s in ops.metrics.event_to_prediction.collect()[0].samples}
    assert latency["nextbehavior_event_to_prediction_seconds_count"] == 12  # not the timeless
    assert 0.2 <= latency["nextbehavior_event_to_prediction_seconds_sum"] / 12 < 5
    ops.health.offsets(("events", 0), highwater=7)
    ops.health.offsets(("events", 1), highwater=17)
    assert ops.health.lag() == {("events", 0): 0, ("events", 1): 0}  # the dead letter counts too
    assert ops.stats.events == {"predicted": 12, "duplicate": 1, "dead_lettered": 1}

    logged = [r for r in caplog.records if r.getMessage() == "predicted"]
    assert len(logged) == 13
    first = logged[0]
    assert (first.user_id, first.event_id) == ("u1", "u1-0")  # type: ignore[attr-defined]
    assert first.model_version == predictor.manifest.model_version  # type: ignore[attr-defined]
    assert (first.partition, first.offset) == (0, 0)  # type: ignore[attr-defined]


def test_bookkeeping_errors_never_reach_the_pipeline(
    predictor: Predictor, caplog: pytest.LogCaptureFixture
) -> None:
    ops = Operations(get_settings(), predictor)
    with caplog.at_level(logging.ERROR, logger="nextbehavior.stream.operations"):
        ops.batch_done(predictor, [(token(1.0), object())], [], [])  # work without a record
    assert "bookkeeping failed" in caplog.text


def test_readiness_reports_the_served_model(predictor: Predictor) -> None:
    ops = Operations(get_settings(liveness_stall_s=5), predictor)
    assert ops.health.model_version == predictor.manifest.model_version
    assert ops.health.stall_s == 5
    text = ops.metrics.render().decode()
    assert f'model_version="{predictor.manifest.model_version}"' in text
