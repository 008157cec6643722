"""tail's row and cell formatting, and the monitor's summary (no broker)."""

from __future__ import annotations

import orjson
from rich.console import Console

from nextbehavior.stream.events import Event, Prediction, ScoredItem
from nextbehavior.stream.monitor import MonitorState, render
from nextbehavior.stream.reader import Record
from nextbehavior.stream.tail import (
    dead_letter_cells,
    dead_letter_row,
    prediction_cells,
    prediction_row,
)


def record(value: bytes | None, key: bytes | None = b"u1", headers: tuple = ()) -> Record:
    return Record("t", 2, 41, 0, key, value, headers)


PRED = Prediction(
    "u1",
    "e9",
    5,
    6,
    "v1",
    3,
    [ScoredItem("a", 0.5), ScoredItem("b", 0.25)],
    {"view": 0.2, "cart": 0.8},
)


def test_prediction_row_and_cells() -> None:
    row = prediction_row(record(PRED.to_json()))
    assert row == PRED.to_dict()
    assert prediction_cells(row) == ["u1", "e9", "3", "a(0.50) b(0.25)", "cart 80%"]
    bad = prediction_row(record(b"[1]"))
    assert bad["error"] == "not a JSON object" and bad["offset"] == 41
    assert prediction_cells(bad)[3] == "not a JSON object"


def test_dead_letter_row_keeps_bytes_and_headers() -> None:
    headers = (("error", b"field 'timestamp' is missing"), ("error_type", b"missing_field"))
    row = dead_letter_row(record(b'{"user_id": "u1"}', headers=headers))
    assert row["value"] == '{"user_id": "u1"}' and row["key"] == "u1"
    assert row["headers"]["error_type"] == "missing_field"
    assert dead_letter_cells(row)[:3] == ["2:41", "u1", "missing_field"]
    binary = dead_letter_row(record(b"\xff", key=None))
    assert binary["value_base64"] == "/w==" and "value" not in binary and binary["key"] is None
    assert orjson.dumps(binary)  # always JSON-serializable


def test_monitor_summary_and_render() -> None:
    state = MonitorState()
    state.evaluator.add_event(Event("e9", "u1", "x", "view", 1))
    state.evaluator.add_prediction(PRED)
    state.evaluator.add_event(Event("e10", "u1", "b", "cart", 2))
    state.events, state.predictions = 2, 1
    summary = state.summary()
    assert summary["online"]["scored"] == 1 and summary["online"]["total"]["hit@5"] == 1.0
    console = Console(width=100, record=True)
    console.print(render(state))
    text = console.export_text()
    assert "hit@10" in text and "1.0000" in text and "predictions 1" in text
