"""One record at a time: decode, key check, state update, dead letters (stream/intake.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nextbehavior.stream.intake import DeadLetter, Intake, Record, Scorable, dead_letter_headers
from nextbehavior.stream.state import decode_history, encode_history
from nextbehavior.stream.table_writes import ActivityCounts, TableWriter

T0 = 1_700_000_000_000


class CountingDict(dict[bytes, bytes]):
    """A plain dict that counts writes (the Faust table is a MutableMapping too)."""

    writes = 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def event(eid: str, user: str = "u1", ts: int = T0, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "user_id": user,
        "item_id": "i1",
        "event_type": "view",
        "timestamp": ts,
        **extra,
    }


def record(value: Any, key: bytes | None = b"u1", offset: int = 7) -> Record:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return Record(key, raw, "events", 2, offset)


def make_intake(state: dict[bytes, bytes] | None = None, **kw: Any) -> Intake:
    return Intake(
        state if state is not None else CountingDict(),
        max_len=5,
        horizon_ms=None,
        max_bytes=1024,
        **kw,
    )


def test_valid_event_updates_state_and_is_scorable() -> None:
    intake = make_intake()
    first = intake.take(record(event("e1")))
    second = intake.take(record(event("e2", ts=T0 + 1)))
    assert isinstance(first, Scorable) and isinstance(second, Scorable)
    assert (first.history_length, second.history_length) == (1, 2)
    assert [s.event_id for s in second.context] == ["e1", "e2"]
    assert intake.state.read(b"u1") == second.context  # held in memory until the flush
    writes = intake.flush()
    assert [(w.key, w.partition) for w in writes] == [(b"u1", 2)]  # once, to the record's
    assert [s.event_id for s in decode_history(writes[0].value)] == ["e1", "e2"]


def test_duplicate_is_scorable_without_a_state_write() -> None:
    state = CountingDict()
    intake = make_intake(state)
    for n in range(3):
        intake.take(record(event(f"e{n}", ts=T0 + n)))
    before = state.writes
    again = intake.take(record(event("e1", ts=T0 + 1)))
    assert isinstance(again, Scorable) and again.duplicate
    assert again.history_length == 2
    assert state.writes == before


@pytest.mark.parametrize(
    ("value", "key", "error_type"),
    [
        (b"not json", b"u1", "not_json"),
        (b"\xff\xfe{}", b"u1", "not_utf8"),
        (b"[1, 2]", b"u1", "not_object"),
        (b"", b"u1", "empty"),
        (None, None, "empty"),  # keyed: a forget request (test_privacy.py)
        (b"x" * 2000, b"u1", "too_large"),
        ({k: v for k, v in event("e").items() if k != "item_id"}, b"u1", "missing_field"),
        (event("e", ts="yesterday"), b"u1", "wrong_type"),
        (event("e", ts=-5), b"u1", "invalid_value"),
        (event("e", color="red"), b"u1", "unknown_field"),
        (event("e"), None, "missing_key"),
        (event("e"), b"u2", "key_mismatch"),
    ],
)
def test_bad_records_become_dead_letters_untouched(
    value: Any, key: bytes | None, error_type: str
) -> None:
    state = CountingDict()
    rec = record(value, key)
    result = make_intake(state).take(rec)
    assert isinstance(result, DeadLetter)
    assert result.error_type == error_type
    assert result.record is rec  # original key and bytes, untouched
    assert result.reason
    assert state.writes == 0


def test_dead_letter_headers() -> None:
    rec = Record(b"k", b"v", "behavior-events", 3, 1234)
    assert dead_letter_headers(rec, "not_json", "value is not valid JSON: é") == [
        ("error", "value is not valid JSON: é".encode()),
        ("error_type", b"not_json"),
        ("source_topic", b"behavior-events"),
        ("source_partition", b"3"),
        ("source_offset", b"1234"),
    ]


def test_unreadable_state_is_replaced() -> None:
    state = CountingDict({b"u1": b"garbage"})
    intake = make_intake(state)
    result = intake.take(record(event("e1")))
    assert isinstance(result, Scorable) and result.history_length == 1
    intake.flush()
    assert decode_history(state[b"u1"])[0].event_id == "e1"


def test_activity_counts_new_events_only() -> None:
    seen: list[int] = []
    counts: dict[Any, int] = {}

    def hour(ts_s: float) -> tuple[float, float]:
        start = ts_s - ts_s % 3600
        return (start, start + 3600)

    activity = ActivityCounts(TableWriter(counts, "activity"), hour, on_count=seen.append)
    intake = make_intake(activity=activity)
    intake.take(record(event("e1")))
    intake.take(record(event("e1")))  # a repeat: not counted
    intake.take(record(b"bad"))
    intake.take(record(event("e2", ts=T0 + 1)))
    assert seen == [1, 2]
    writes = intake.flush()
    assert counts == {("u1", hour(T0 / 1000)): 2}
    assert [(w.topic, w.value, w.partition) for w in writes if w.topic == "activity"] == [
        ("activity", 2, 2)  # the plain writer keeps values as they are; Faust's: JSON
    ]


def test_max_len_may_change_between_records() -> None:
    state = CountingDict({b"u1": encode_history([])})
    intake = make_intake(state)
    for n in range(5):
        intake.take(record(event(f"e{n}", ts=T0 + n)))
    intake.max_len = 2
    result = intake.take(record(event("e9", ts=T0 + 9)))
    assert isinstance(result, Scorable) and result.history_length == 2
