"""``worker --explain`` on the real embedded broker: every prediction carries ``because``, and it
is what ``nextbehavior explain`` computes offline from the same events."""

from __future__ import annotations

import time
from pathlib import Path

import jsonschema
import orjson
import pytest
from kafka_checks import new_topic, unique
from typer.testing import CliRunner
from worker_proc import WorkerProcess, produce, read_topic, run

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.cli import app
from nextbehavior.stream.events import Event, parse_prediction
from nextbehavior.stream.schema import prediction_schema

pytestmark = pytest.mark.timeout(240)

BASE = int(time.time() * 1000) - 60_000
ITEMS = ["i1", "i2", "unknown-item", "i3", "i4", "i5"]  # one item the model does not know


def test_worker_explains_every_prediction_like_the_offline_command(
    broker: EmbeddedBroker, tiny_bundle: Path, tmp_path: Path
) -> None:
    names = [run(new_topic(broker, p, 1)) for p in ("events", "preds", "dlq")]
    env = {
        "NBP_INPUT_TOPIC": names[0],
        "NBP_OUTPUT_TOPIC": names[1],
        "NBP_DLQ_TOPIC": names[2],
        "NBP_APP_ID": unique("explain"),
        "NBP_EXPLAIN": "true",
    }
    events = [
        Event(f"e{n}", "u1", item, "click" if n % 2 else "view", BASE + 1000 * n)
        for n, item in enumerate(ITEMS)
    ]
    worker = WorkerProcess(broker, tiny_bundle, env, tmp_path, "explain")
    try:
        run(produce(broker.bootstrap, names[0], [(b"u1", e.to_json()) for e in events]))
        got = run(read_topic(broker.bootstrap, names[1], 1, expect=len(events)))
    finally:
        worker.kill()
    assert len(got) == len(events), worker.tail()
    preds = [parse_prediction(r.value) for r in got]
    for n, (record, pred) in enumerate(zip(got, preds, strict=True)):
        jsonschema.validate(orjson.loads(record.value), prediction_schema())
        assert pred.because is not None
        seen = {e.item_id for e in events[: n + 1]} - {"unknown-item"}
        assert [r.item_id for r in pred.because] and {r.item_id for r in pred.because} <= seen
        assert len(pred.because) == min(3, len(seen))
        weights = [r.weight for r in pred.because]
        assert weights == sorted(weights, reverse=True) and 0 < sum(weights) <= 1 + 1e-6
    assert preds[-1].because is not None and preds[-1].because[0].item_id == "i5"

    log = tmp_path / "events.jsonl"
    log.write_bytes(b"".join(e.to_json() + b"\n" for e in events))
    args = ["explain", "--bundle", str(tiny_bundle), "--data", str(log), "--user", "u1", "--json"]
    offline = orjson.loads(CliRunner().invoke(app, args).stdout)["prediction"]
    assert [r["item_id"] for r in offline["because"]] == [r.item_id for r in preds[-1].because]
    for a, b in zip(offline["because"], preds[-1].because, strict=True):
        assert abs(a["weight"] - b.weight) < 1e-6 and a["timestamp"] == b.timestamp
    assert [i["item_id"] for i in offline["items"]] == [i.item_id for i in preds[-1].items]
