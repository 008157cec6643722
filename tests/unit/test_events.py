"""Event/prediction contracts: every error type names the field; round trips are exact."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nextbehavior.stream.events import (
    MAX_ID_CHARS,
    MAX_TIMESTAMP_MS,
    Event,
    EventError,
    Prediction,
    Reason,
    ScoredItem,
    parse_event,
    parse_prediction,
)

GOOD: dict[str, Any] = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "event_type": "view",
    "timestamp": 1_700_000_000_000,
}


def _with(**changes: Any) -> bytes:
    obj = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not _DROP})


_DROP = object()


def _error(raw: bytes | str | None, **kwargs: Any) -> EventError:
    with pytest.raises(EventError) as info:
        parse_event(raw, **kwargs)
    return info.value


def test_valid_event_with_optionals() -> None:
    event = parse_event(_with(session_id="s1", context={"page": "home", "n": [1, 2]}))
    assert event == Event(
        "e1", "u1", "i1", "view", 1_700_000_000_000, "s1", {"page": "home", "n": [1, 2]}
    )
    assert parse_event(_with(session_id=None, context=None)).session_id is None
    assert parse_event(_with(event_type="a-type-the-model-never-saw")).event_type


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"{not json", "not_json"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
    ],
)
def test_record_level_errors(raw: bytes | None, error_type: str) -> None:
    err = _error(raw)
    assert err.error_type == error_type
    assert err.field is None
    assert err.reason


def test_too_large() -> None:
    err = _error(_with(context={"pad": "x" * 500}), max_bytes=300)
    assert err.error_type == "too_large"
    assert "300" in err.reason


def test_unknown_field_is_named() -> None:
    err = _error(_with(price=3))
    assert err.error_type == "unknown_field"
    assert "'price'" in err.reason and "context" in err.reason


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "event_type", "timestamp"])
def test_missing_field(name: str) -> None:
    err = _error(_with(**{name: _DROP}))
    assert (err.error_type, err.field) == ("missing_field", name)
    assert f"'{name}'" in err.reason


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "event_type", "session_id"])
@pytest.mark.parametrize("value", [1, 1.5, True, ["a"], {"a": 1}])
def test_strings_have_the_right_type(name: str, value: Any) -> None:
    err = _error(_with(**{name: value}))
    assert (err.error_type, err.field) == ("wrong_type", name)
    assert "must be a string" in err.reason


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "event_type"])
def test_required_strings_cannot_be_null(name: str) -> None:
    err = _error(_with(**{name: None}))
    assert (err.error_type, err.field) == ("wrong_type", name)


@pytest.mark.parametrize("name", ["event_id", "user_id", "item_id", "event_type", "session_id"])
@pytest.mark.parametrize("value", ["", "   ", "x" * (MAX_ID_CHARS + 1)])
def test_string_values(name: str, value: str) -> None:
    err = _error(_with(**{name: value}))
    assert (err.error_type, err.field) == ("invalid_value", name)


def test_longest_id_is_fine() -> None:
    assert parse_event(_with(item_id="x" * MAX_ID_CHARS)).item_id == "x" * MAX_ID_CHARS


@pytest.mark.parametrize("value", ["1700000000000", 1.7e12, True, None, [1]])
def test_timestamp_type(value: Any) -> None:
    err = _error(_with(timestamp=value))
    assert (err.error_type, err.field) == ("wrong_type", "timestamp")
    assert "epoch ms" in err.reason


@pytest.mark.parametrize("value", [-1, MAX_TIMESTAMP_MS + 1, 1_700_000_000_000_000])
def test_timestamp_range(value: int) -> None:
    err = _error(_with(timestamp=value))
    assert (err.error_type, err.field) == ("invalid_value", "timestamp")


def test_timestamp_bounds_are_inclusive() -> None:
    assert parse_event(_with(timestamp=0)).timestamp == 0
    assert parse_event(_with(timestamp=MAX_TIMESTAMP_MS)).timestamp == MAX_TIMESTAMP_MS


@pytest.mark.parametrize("value", ["text", [1], 3])
def test_context_must_be_an_object(value: Any) -> None:
    err = _error(_with(context=value))
    assert (err.error_type, err.field) == ("wrong_type", "context")


def test_str_input_is_accepted() -> None:
    assert parse_event(_with().decode()).user_id == "u1"


ids = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")


@given(
    event_id=ids,
    user_id=ids,
    item_id=ids,
    event_type=ids,
    timestamp=st.integers(0, MAX_TIMESTAMP_MS),
    session_id=st.none() | ids,
    context=st.none()
    | st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), max_size=3),
)
def test_event_round_trip(**fields: Any) -> None:
    event = Event(**fields)
    assert parse_event(event.to_json()) == event


def _prediction(because: list[Reason] | None) -> Prediction:
    return Prediction(
        user_id="u1",
        event_id="e1",
        event_timestamp=1,
        predicted_at=2,
        model_version="m-1",
        history_length=3,
        items=[ScoredItem("i2", 0.75), ScoredItem("i3", 0.25)],
        next_event_type={"view": 0.5, "click": 0.5},
        because=because,
    )


@pytest.mark.parametrize("because", [None, [], [Reason("i1", "view", 1, 0.9)]])
def test_prediction_round_trip(because: list[Reason] | None) -> None:
    pred = _prediction(because)
    obj = orjson.loads(pred.to_json())
    assert ("because" in obj) is (because is not None)
    assert parse_prediction(pred.to_json()) == pred


@pytest.mark.parametrize("drop", ["user_id", "items", "next_event_type", "model_version"])
def test_prediction_missing_field(drop: str) -> None:
    obj = orjson.loads(_prediction(None).to_json())
    del obj[drop]
    with pytest.raises(ValueError, match="not a prediction"):
        parse_prediction(orjson.dumps(obj))
