"""Hypothesis strategies for events and for records that are not events: shared by the decoder
fuzz tests (tests/unit/test_event_fuzz.py) and the live-worker garbage test
(tests/integration/test_reliability.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from nextbehavior.stream.events import MAX_ID_CHARS, MAX_TIMESTAMP_MS, REQUIRED_STRINGS, Event

ids = st.text(min_size=1, max_size=40).filter(lambda s: bool(s.strip()))
timestamps = st.integers(min_value=0, max_value=MAX_TIMESTAMP_MS)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)

context_values = st.recursive(  # what survives a round trip: 64-bit integers, finite floats
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def valid_events(draw: st.DrawFn) -> Event:
    context = draw(st.none() | st.dictionaries(st.text(max_size=8), context_values, max_size=3))
    return Event(
        event_id=draw(ids),
        user_id=draw(ids),
        item_id=draw(ids),
        event_type=draw(ids),
        timestamp=draw(timestamps),
        session_id=draw(st.none() | ids),
        context=context,
    )


def dumps(value: Any) -> bytes:
    """JSON bytes (the standard library: integers of any size, unlike orjson.dumps)."""
    return json.dumps(value).encode()


def with_field(obj: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    return {**obj, name: value}


@st.composite
def broken_events(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid event's dict with one thing wrong, and the ``error_type`` that must follow."""
    obj = draw(valid_events()).to_dict()
    name = draw(st.sampled_from([*REQUIRED_STRINGS, "timestamp"]))
    kind = draw(st.sampled_from(["missing", "wrong_type", "blank", "huge", "unknown", "bad_ts"]))
    if kind == "missing":
        return {k: v for k, v in obj.items() if k != name}, "missing_field"
    if kind == "unknown":
        extra = draw(st.text(min_size=1, max_size=10).filter(lambda s: s not in obj))
        extra = extra if extra not in ("session_id", "context") else extra + "_x"
        return with_field(obj, extra, draw(json_values)), "unknown_field"
    if name == "timestamp":
        wrong = draw(
            st.text()
            | st.booleans()
            | st.none()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.lists(st.integers(), max_size=2)
        )
        if kind == "bad_ts" or kind == "huge":
            absurd = st.integers(max_value=-1) | st.integers(min_value=MAX_TIMESTAMP_MS + 1)
            return with_field(
                obj, name, draw(absurd.filter(lambda n: abs(n) < 2**63))
            ), "invalid_value"
        return with_field(obj, name, wrong), "wrong_type"
    if kind == "blank":
        return with_field(
            obj, name, draw(st.sampled_from(["", " ", "\t\n", "\u3000"]))
        ), "invalid_value"
    if kind == "huge":
        return with_field(
            obj, name, "x" * draw(st.integers(MAX_ID_CHARS + 1, 600))
        ), "invalid_value"
    wrong = draw(
        st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none() | st.lists(ids)
    )
    return with_field(obj, name, wrong), "wrong_type"
