"""The worker's state record and update rule (stream/state.py)."""

from __future__ import annotations

import orjson
import pytest

from nextbehavior.stream.history import Step
from nextbehavior.stream.state import (
    STATE_VERSION,
    StateError,
    apply_event,
    decode_history,
    encode_history,
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


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{}", b"[2, []]", b"[1]", b'[1, [["e", "i"]]]', b'[1, [["e", "i", "t", "x"]]]'],
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
