"""The worker's state record and update rule (stream/state.py)."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from nextbehavior.stream.history import Step
from nextbehavior.stream.state import (
    STATE_VERSION,
    StateError,
    apply_event,
    decode_history,
    encode_history,
    event_key,
)

HOUR = 3_600_000


def steps(*spec: tuple[str, int]) -> list[Step]:
    return [Step(eid, f"item-{eid}", "view", ts) for eid, ts in spec]


def test_round_trip_keeps_every_field_and_order() -> None:
    history = [Step("e1", "i1", "view", 1), Step("e2", "i9", "purchase", 2_000_000_000_000)]
    raw = encode_history(history)
    assert decode_history(raw) == history
    assert orjson.loads(raw)[0] == STATE_VERSION


def test_no_state_is_the_empty_history() -> None:
    assert decode_history(None) == []
    assert decode_history(encode_history([])) == []


def test_record_is_compact() -> None:
    history = [Step(f"evt-{n:06d}", f"item-{n}", "click", 1_700_000_000_000 + n) for n in range(50)]
    # ~ the ids plus 13 timestamp digits and a few separators per step; no field names
    assert len(encode_history(history)) < 50 * 50


def test_long_ids_are_kept_as_short_keys_and_still_dedupe() -> None:
    long_ids = [f"{n:020x}" for n in range(3)] + ["6f1c1f0e-4a5b-4c1d-9e2f-0a1b2c3d4e5f"]
    history = [Step(eid, "i", "view", n) for n, eid in enumerate(long_ids)]
    held = decode_history(encode_history(history))
    assert [s.event_id for s in held] == [event_key(e) for e in long_ids]
    assert all(len(s.event_id) == 12 and s.event_id.startswith("#") for s in held)
    assert len(set(s.event_id for s in held)) == len(long_ids)
    assert event_key("short-id") == "short-id"  # readable where it costs nothing
    again = apply_event(held, Step(long_ids[1], "other", "cart", 99), max_len=9, horizon_ms=None)
    assert again.duplicate and not again.changed and len(again.context) == 2
    new = apply_event(held, Step("x" * 40, "i", "view", 9), max_len=9, horizon_ms=None)
    assert new.changed and new.history[-1].event_id == event_key("x" * 40)


def test_full_state_fits_in_2kb_whatever_the_ids() -> None:
    """The issue-7 target: at most 2 KB per user at max_len 50 (20-hex-digit ids as replay
    makes them, or UUIDs; ML-100K-like item ids, a few behavior types, seconds apart)."""
    for make_id in (lambda n: f"{n * 7919:020x}", lambda n: f"{n:08x}-4a5b-4c1d-9e2f-0a1b2c3d4e5f"):
        history = [
            Step(
                make_id(n),
                str(1 + n * 37 % 1682),
                ("view", "click", "cart")[n % 3],
                1_700_000_000_000 + 45_000 * n,
            )
            for n in range(50)
        ]
        raw = encode_history(history)
        assert len(raw) <= 2048, len(raw)
        assert [(s.item_id, s.event_type, s.timestamp) for s in decode_history(raw)] == [
            (s.item_id, s.event_type, s.timestamp) for s in history
        ]


def test_a_record_holds_no_spare_buffer() -> None:
    """The table keeps one record per user: it must cost its size, not orjson's ~16 KB
    output buffer."""
    history = [Step(f"{n:020x}", str(n), "view", 1_700_000_000_000 + n) for n in range(50)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        records = [encode_history(history) for _ in range(50)]
        per_record = (tracemalloc.get_traced_memory()[0] - before) / len(records)
    finally:
        tracemalloc.stop()
    assert per_record < len(records[0]) + 200, per_record


def test_format_1_records_are_still_read() -> None:
    long_id = "a" * 30
    raw = orjson.dumps([1, [["e1", "i1", "view", 5], [long_id, "i2", "buy", 7]]])
    assert decode_history(raw) == [
        Step("e1", "i1", "view", 5),
        Step(event_key(long_id), "i2", "buy", 7),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        b"[2, []]",
        b"[1]",
        b'[1, [["e", "i"]]]',
        b'[1, [["e", "i", "t", "x"]]]',
        b'[2, ["e"], ["i"], ["view"], [0], []]',  # columns of different lengths
        b'[2, ["e"], ["i"], ["view"], [3], [1]]',  # type index out of range
        b'[2, ["e"], ["i"], ["view"], [0], ["x"]]',  # timestamp not an integer
        b'[2, [1], ["i"], ["view"], [0], [1]]',  # id not a string
        b'[3, ["e"], ["i"], ["view"], [0], [1]]',  # a later format
    ],
)
def test_unreadable_records_raise(raw: bytes) -> None:
    with pytest.raises(StateError):
        decode_history(raw)


def test_new_event_is_appended_and_predicted_from_the_whole_state() -> None:
    history = steps(("a", 1), ("b", 2))
    new = Step("c", "item-c", "view", 3)
    update = apply_event(history, new, max_len=10, horizon_ms=None)
    assert update.changed and not update.duplicate
    assert [s.event_id for s in update.history] == ["a", "b", "c"]
    assert update.context == update.history


def test_late_event_lands_in_time_order() -> None:
    history = steps(("a", 10), ("b", 30))
    update = apply_event(history, Step("late", "x", "view", 20), max_len=10, horizon_ms=None)
    assert [s.event_id for s in update.history] == ["a", "late", "b"]
    assert update.context == update.history  # the prediction sees the whole new state


def test_repeated_event_id_changes_nothing_and_sees_its_prefix() -> None:
    history = steps(("a", 1), ("b", 2), ("c", 3))
    again = Step("b", "something-else", "cart", 99)
    update = apply_event(history, again, max_len=10, horizon_ms=None)
    assert update.duplicate and not update.changed
    assert update.history == history
    assert [s.event_id for s in update.context] == ["a", "b"]


def test_windows_keep_the_newest_max_len_within_the_horizon() -> None:
    history = steps(("a", 0), ("b", HOUR), ("c", 2 * HOUR))
    update = apply_event(history, Step("d", "x", "view", 3 * HOUR), max_len=3, horizon_ms=None)
    assert [s.event_id for s in update.history] == ["b", "c", "d"]
    update = apply_event(history, Step("d", "x", "view", 3 * HOUR), max_len=9, horizon_ms=HOUR)
    assert [s.event_id for s in update.history] == ["c", "d"]


def test_event_too_old_for_the_window_changes_nothing() -> None:
    history = steps(("a", 10 * HOUR), ("b", 11 * HOUR))
    update = apply_event(history, Step("old", "x", "view", 0), max_len=9, horizon_ms=HOUR)
    assert not update.changed and not update.duplicate
    assert update.history == history and update.context == history
