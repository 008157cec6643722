"""`nextbehavior schema`: the published JSON Schemas agree with the parsers in events.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from nextbehavior.stream.cli import app
from nextbehavior.stream.events import (
    MAX_ID_CHARS,
    MAX_TIMESTAMP_MS,
    EventError,
    Prediction,
    Reason,
    ScoredItem,
    event_from_dict,
)
from nextbehavior.stream.schema import event_schema, prediction_schema

EVENT = Draft202012Validator(event_schema())
PREDICTION = Draft202012Validator(prediction_schema())
GOOD: dict[str, Any] = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "event_type": "view",
    "timestamp": 1_700_000_000_000,
}


def test_schemas_are_valid_json_schema() -> None:
    Draft202012Validator.check_schema(event_schema())
    Draft202012Validator.check_schema(prediction_schema())


@pytest.mark.parametrize("name", ["event", "prediction"])
def test_schema_command_prints_it(name: str) -> None:
    result = CliRunner().invoke(app, ["schema", name])
    assert result.exit_code == 0, result.output
    schema = orjson.loads(result.stdout)
    assert schema == (event_schema() if name == "event" else prediction_schema())


def test_schema_command_rejects_other_names() -> None:
    result = CliRunner().invoke(app, ["schema", "order"])
    assert result.exit_code != 0


def _parser_accepts(obj: Any) -> bool:
    try:
        event_from_dict(obj)
    except EventError:
        return False
    return True


CASES: list[Any] = [
    GOOD,
    {**GOOD, "session_id": "s", "context": {"a": [1]}},
    {**GOOD, "session_id": None, "context": None},
    {**GOOD, "timestamp": 0},
    {**GOOD, "timestamp": MAX_TIMESTAMP_MS},
    {**GOOD, "item_id": "x" * MAX_ID_CHARS},
    {**GOOD, "item_id": "x" * (MAX_ID_CHARS + 1)},
    {**GOOD, "item_id": ""},
    {**GOOD, "item_id": " \t"},
    {**GOOD, "item_id": 5},
    {**GOOD, "user_id": None},
    {**GOOD, "session_id": ""},
    {**GOOD, "session_id": 3},
    {**GOOD, "timestamp": -1},
    {**GOOD, "timestamp": MAX_TIMESTAMP_MS + 1},
    {**GOOD, "timestamp": "1"},
    {**GOOD, "timestamp": True},
    {**GOOD, "timestamp": None},
    {**GOOD, "context": []},
    {**GOOD, "context": "x"},
    {**GOOD, "extra": 1},
    {k: v for k, v in GOOD.items() if k != "event_type"},
    [GOOD],
    "event",
]


@pytest.mark.parametrize("obj", CASES)
def test_event_schema_agrees_with_parser(obj: Any) -> None:
    assert EVENT.is_valid(obj) == _parser_accepts(obj)


def test_float_timestamps_are_where_they_differ() -> None:
    """JSON Schema counts 1.0 as an integer; the parser (orjson gives a float) refuses it."""
    obj = {**GOOD, "timestamp": 1.0}
    assert EVENT.is_valid(obj) and not _parser_accepts(obj)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, MAX_TIMESTAMP_MS + 5),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@settings(max_examples=300)
@given(changes=st.dictionaries(st.sampled_from([*GOOD, "session_id", "context", "x"]), values))
def test_event_schema_agrees_on_random_events(changes: dict[str, Any]) -> None:
    obj = {**GOOD, **changes}
    assert EVENT.is_valid(obj) == _parser_accepts(obj)


@pytest.mark.parametrize("because", [None, [Reason("i1", "view", 5, 0.5)]])
def test_predictions_validate(because: list[Reason] | None) -> None:
    pred = Prediction("u", "e", 1, 2, "m", 3, [ScoredItem("i", 0.9)], {"view": 1.0}, because)
    assert PREDICTION.is_valid(orjson.loads(pred.to_json()))
    obj = orjson.loads(pred.to_json())
    del obj["items"]
    assert not PREDICTION.is_valid(obj)
