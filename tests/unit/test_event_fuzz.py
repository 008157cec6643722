"""Generated garbage at the decoder (hypothesis): every bad record is a clear ``EventError`` with
a stable ``error_type``, never another exception; every valid event decodes to itself.

The strategies (tests/event_strategies.py) are shared with the live-worker test
(tests/integration/test_reliability.py), which sends the same garbage to a running worker.
Limits (stream/events.py): a record is at most ``max_bytes`` (NBP_MAX_EVENT_BYTES, 64 KiB by
default); ids are 1 to 256 characters, not blank; the timestamp is an integer in epoch ms
between 1970 and 2100; JSON nesting deeper than orjson's 1024 levels is not JSON to us;
NaN/Infinity literals and numbers that overflow a double are not JSON either.
"""

from __future__ import annotations

from typing import Any

import orjson
from event_strategies import broken_events, dumps, json_values, valid_events, with_field
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextbehavior.stream.events import (
    MAX_ID_CHARS,
    MAX_TIMESTAMP_MS,
    Event,
    EventError,
    parse_event,
)
from nextbehavior.stream.intake import Record, decode_record

MAX_BYTES = 4096
ERROR_TYPES = {
    "empty",
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "unknown_field",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "missing_key",
    "key_mismatch",
}
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def expect_error(raw: bytes | None, error_type: str | None = None) -> EventError:
    try:
        parse_event(raw, max_bytes=MAX_BYTES)
    except EventError as exc:
        assert exc.error_type in ERROR_TYPES
        assert exc.reason and "\n" not in exc.reason
        if error_type is not None:
            assert exc.error_type == error_type, (exc.error_type, exc.reason)
        return exc
    raise AssertionError(f"accepted: {raw!r}")


@FUZZ
@given(st.binary(max_size=600))
def test_any_bytes_decode_or_fail_clearly(raw: bytes) -> None:
    try:
        event = parse_event(raw, max_bytes=MAX_BYTES)
    except EventError as exc:
        assert exc.error_type in ERROR_TYPES and exc.reason
    else:
        assert isinstance(event, Event)


@FUZZ
@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_json_that_is_not_an_object(value: Any) -> None:
    expect_error(dumps(value), "not_object")


@FUZZ
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_random_objects_fail_clearly(obj: dict[str, Any]) -> None:
    expect_error(dumps(obj))


@FUZZ
@given(broken_events())
def test_each_kind_of_broken_event(case: tuple[dict[str, Any], str]) -> None:
    obj, error_type = case
    raw = dumps(obj)
    if len(raw) > MAX_BYTES:
        error_type = "too_large"
    expect_error(raw, error_type)


@FUZZ
@given(valid_events())
def test_valid_events_round_trip(event: Event) -> None:
    raw = event.to_json()
    if len(raw) <= MAX_BYTES:
        assert parse_event(raw, max_bytes=MAX_BYTES) == event


@FUZZ
@given(valid_events(), st.binary(min_size=1, max_size=3))
def test_invalid_utf8_anywhere(event: Event, junk: bytes) -> None:
    raw = event.to_json()
    cut = len(raw) // 2
    bad = raw[:cut] + b"\xff" + junk + raw[cut:]
    error = expect_error(bad)
    assert error.error_type in ("not_utf8", "not_json")


@FUZZ
@given(valid_events(), st.binary(max_size=8) | st.none())
def test_key_must_be_the_user_id(event: Event, key: bytes | None) -> None:
    record = Record(key, event.to_json(), "events", 0, 0)
    if key == event.user_id.encode():
        assert decode_record(record, max_bytes=1 << 20) == event
        return
    try:
        decode_record(record, max_bytes=1 << 20)
    except EventError as exc:
        assert exc.error_type == ("missing_key" if key is None else "key_mismatch")
    else:
        raise AssertionError("a record keyed otherwise was accepted")


def test_limits_and_odd_json() -> None:
    base = Event("e", "u", "i", "view", 1).to_dict()
    expect_error(None, "empty")
    expect_error(b"", "empty")
    expect_error(b" " * (MAX_BYTES + 1), "too_large")
    expect_error(b"x" * 10_000_000, "too_large")  # rejected by size before any parsing
    expect_error(b"NaN", "not_json")
    expect_error(b"\xef\xbb\xbf{}", "not_utf8")  # a byte order mark
    expect_error(b'{"event_id": "\\ud800"}', "not_json")  # a lone surrogate
    expect_error(orjson.dumps(base)[:-1] + b', "timestamp": 1e400}', "not_json")
    expect_error(orjson.dumps(base)[:-1] + b', "timestamp": Infinity}', "not_json")
    expect_error(orjson.dumps(with_field(base, "timestamp", 1.0)), "wrong_type")
    expect_error(orjson.dumps(base)[:-1] + b', "timestamp": 18446744073709551616}', "wrong_type")
    expect_error(orjson.dumps(with_field(base, "timestamp", -1)), "invalid_value")
    expect_error(orjson.dumps(with_field(base, "timestamp", MAX_TIMESTAMP_MS + 1)), "invalid_value")
    expect_error(orjson.dumps(with_field(base, "context", [1])), "wrong_type")
    expect_error(orjson.dumps(base) + b" trailing", "not_json")
    deep = b'{"a": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    raw = orjson.dumps(base)[:-1] + b', "context": ' + deep + b"}"
    expect_error(raw, "not_json")  # orjson refuses more than 1024 levels
    ok = orjson.dumps(base)[:-1] + b', "context": {"a": ' + b"[" * 500 + b"]" * 500 + b"}}"
    assert parse_event(ok, max_bytes=MAX_BYTES).event_id == "e"  # deep but legal: kept out of state
    assert parse_event(orjson.dumps(with_field(base, "user_id", "u" * MAX_ID_CHARS))).user_id
