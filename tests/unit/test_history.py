"""Sequence state: dedupe, time-ordered insert, windows, and THE encode function."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from nextbehavior.stream.history import Step, add_step, encode, encode_steps, window

ITEMS = {"[PAD]": 0, "a": 1, "b": 2, "c": 3}
TYPES = {"[PAD]": 0, "view": 1, "buy": 2}


def step(event_id: str, ts: int, item: str = "a", kind: str = "view") -> Step:
    return Step(event_id, item, kind, ts)


def test_add_appends_in_time_order() -> None:
    history: list[Step] = []
    for s in (step("e1", 10), step("e3", 30), step("e2", 20)):
        history, changed = add_step(history, s, max_len=10, horizon_ms=None)
        assert changed
    assert [s.event_id for s in history] == ["e1", "e2", "e3"]


def test_ties_keep_arrival_order() -> None:
    history: list[Step] = []
    for eid in ("x", "y", "z"):
        history, _ = add_step(history, step(eid, 5), max_len=10, horizon_ms=None)
    assert [s.event_id for s in history] == ["x", "y", "z"]


def test_repeat_event_id_is_dropped() -> None:
    history, _ = add_step([], step("e1", 10, "a"), max_len=10, horizon_ms=None)
    again, changed = add_step(history, step("e1", 99, "b"), max_len=10, horizon_ms=None)
    assert not changed
    assert again == history
    assert again is not history  # a new list: callers may mutate it


def test_max_len_keeps_newest() -> None:
    history: list[Step] = []
    for i in range(6):
        history, _ = add_step(history, step(f"e{i}", i), max_len=3, horizon_ms=None)
    assert [s.event_id for s in history] == ["e3", "e4", "e5"]


def test_late_event_older_than_window_falls_out() -> None:
    history = [step("e1", 10), step("e2", 20)]
    out, changed = add_step(history, step("old", 1), max_len=2, horizon_ms=None)
    assert changed
    assert [s.event_id for s in out] == ["e1", "e2"]


def test_horizon_drops_old_steps() -> None:
    history = [step("e1", 0), step("e2", 500), step("e3", 1000)]
    assert [s.event_id for s in window(history, max_len=10, horizon_ms=500)] == ["e2", "e3"]
    assert len(window(history, max_len=10, horizon_ms=None)) == 3
    assert len(window(history, max_len=10, horizon_ms=0)) == 3  # 0 = no horizon
    assert window(history, max_len=0, horizon_ms=None) == []


def test_encode_left_pads_newest_last() -> None:
    items, types = encode([[("a", "view"), ("b", "buy")], [("c", "view")]], ITEMS, TYPES, 4)
    assert items.dtype == np.int64 and types.dtype == np.int64
    assert items.tolist() == [[0, 0, 1, 2], [0, 0, 0, 3]]
    assert types.tolist() == [[0, 0, 1, 2], [0, 0, 0, 1]]


def test_encode_vocabulary_rules() -> None:
    items, types = encode(
        [[("a", "view"), ("zzz", "view"), ("b", "unknown-type")]], ITEMS, TYPES, 4
    )
    assert items.tolist() == [[0, 0, 1, 2]]  # unknown item skipped
    assert types.tolist() == [[0, 0, 1, 0]]  # unknown type -> 0


def test_encode_truncates_and_width() -> None:
    seq = [("a", "view"), ("b", "view"), ("c", "buy")]
    items, _ = encode([seq], ITEMS, TYPES, 2)
    assert items.tolist() == [[2, 3]]
    items, _ = encode([seq], ITEMS, TYPES, 2, width=5)
    assert items.tolist() == [[0, 0, 0, 2, 3]]  # max_len still caps what is kept
    items, _ = encode([seq], ITEMS, TYPES, 3, width=2)
    assert items.tolist() == [[2, 3]]


def test_encode_empty() -> None:
    items, types = encode([[]], ITEMS, TYPES, 3)
    assert items.tolist() == [[0, 0, 0]] and types.tolist() == [[0, 0, 0]]
    items, _ = encode([], ITEMS, TYPES, 3)
    assert items.shape == (0, 3)


def test_encode_steps_matches_encode() -> None:
    steps = [step("e1", 1, "a", "view"), step("e2", 2, "c", "buy")]
    got = encode_steps([steps], ITEMS, TYPES, 4)
    want = encode([[("a", "view"), ("c", "buy")]], ITEMS, TYPES, 4)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 1000)), max_size=30),
    st.integers(1, 8),
)
def test_add_step_invariants(events: list[tuple[int, int]], max_len: int) -> None:
    history: list[Step] = []
    for eid, ts in events:
        history, _ = add_step(history, step(str(eid), ts), max_len=max_len, horizon_ms=None)
        stamps = [s.timestamp for s in history]
        assert stamps == sorted(stamps)
        assert len(history) <= max_len
        assert len({s.event_id for s in history}) == len(history)


def _reference_add(
    history: list[Step], new: Step, max_len: int, horizon_ms: int | None
) -> tuple[list[Step], bool]:
    """The update rule written plainly (insert after equal timestamps, then both windows)."""
    if any(s.event_id == new.event_id for s in history):
        return list(history), False
    pos = sum(1 for s in history if s.timestamp <= new.timestamp)
    out = [*history[:pos], new, *history[pos:]][-max_len:]
    if horizon_ms and out:
        out = [s for s in out if s.timestamp >= out[-1].timestamp - horizon_ms]
    return out, True


@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 100)), max_size=40),
    st.integers(1, 8),
    st.sampled_from([None, 0, 5, 30]),
)
def test_add_step_matches_the_plain_rule(
    events: list[tuple[int, int]], max_len: int, horizon_ms: int | None
) -> None:
    """The fast paths (newest event appended, nothing past the horizon) change no answer."""
    fast: list[Step] = []
    plain: list[Step] = []
    for n, (eid, ts) in enumerate(events):
        new = step(str(eid), ts, item=f"i{n}")
        fast, changed = add_step(fast, new, max_len=max_len, horizon_ms=horizon_ms)
        plain, changed_plain = _reference_add(plain, new, max_len, horizon_ms)
        assert (fast, changed) == (plain, changed_plain)


def test_encode_steps_matches_encode_on_random_histories() -> None:
    """The worker's fast path gives :func:`encode`'s answer (unknown items and types too)."""
    import random

    from nextbehavior.stream.history import Step, encode, encode_steps

    rng = random.Random(7)
    item_index = {f"i{n}": n for n in range(1, 30)}
    type_index = {"view": 1, "click": 2}
    for _ in range(200):
        histories = [
            [
                Step(f"e{k}", f"i{rng.randrange(0, 40)}", rng.choice(["view", "click", "odd"]), k)
                for k in range(rng.randrange(0, 12))
            ]
            for _ in range(rng.randrange(1, 5))
        ]
        max_len = rng.randrange(1, 9)
        width = rng.choice([None, rng.randrange(0, 12)])
        pairs = [[(s.item_id, s.event_type) for s in h] for h in histories]
        want = encode(pairs, item_index, type_index, max_len, width=width)
        got = encode_steps(histories, item_index, type_index, max_len, width=width)
        assert (got[0] == want[0]).all() and (got[1] == want[1]).all()
        assert got[0].shape == want[0].shape
