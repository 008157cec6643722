"""Pseudonymous user ids, forget requests (input tombstones) and the time horizon, at the intake
(stream/privacy.py, stream/intake.py); the live worker does the same in
tests/integration/test_reliability.py."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from nextbehavior.stream.history import Step
from nextbehavior.stream.intake import DeadLetter, Forgotten, Intake, Record, Scorable
from nextbehavior.stream.privacy import activity_eraser, forget_user, pseudonymizer
from nextbehavior.stream.state import decode_history, encode_history

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000
KEY = b"a secret of the operator"


def event(eid: str, user: str = "alice", ts: int = T0) -> bytes:
    body = {"event_id": eid, "user_id": user, "item_id": "i1", "event_type": "view"}
    return orjson.dumps({**body, "timestamp": ts})


def record(value: bytes | None, key: bytes | None = b"alice", offset: int = 0) -> Record:
    return Record(key, value, "events", 0, offset)


def intake(state: dict[bytes, bytes], **kw: Any) -> Intake:
    return Intake(state, max_len=10, horizon_ms=kw.pop("horizon_ms", None), max_bytes=4096, **kw)


def test_pseudonym_is_hmac_sha256_hex() -> None:
    pseudonym = pseudonymizer(KEY)
    expected = hmac.new(KEY, b"alice", hashlib.sha256).hexdigest()
    assert pseudonym("alice") == expected and len(expected) == 64
    assert pseudonym("alice") == pseudonym("alice")  # stable: state and order still work
    assert pseudonym("bob") != expected
    assert pseudonymizer(b"another key")("alice") != expected
    with pytest.raises(ValueError, match="empty"):
        pseudonymizer(b"")


def test_pseudonym_replaces_the_user_id_before_state_and_output() -> None:
    state: dict[bytes, bytes] = {}
    pseudonym = pseudonymizer(KEY)
    work = intake(state, pseudonym=pseudonym).take(record(event("e1")))
    alias = pseudonym("alice")
    assert isinstance(work, Scorable)
    assert work.event.user_id == alias  # the prediction's user_id field
    assert work.record.key == alias.encode()  # the prediction's record key
    assert list(state) == [alias.encode()]  # the state key (and its changelog)
    assert b"alice" not in state[alias.encode()]


def test_bad_records_keep_their_original_bytes_under_pseudonymization() -> None:
    rec = record(b"not json")
    work = intake({}, pseudonym=pseudonymizer(KEY)).take(rec)
    assert isinstance(work, DeadLetter) and work.record is rec  # the DLQ contract: untouched


def test_tombstone_forgets_the_user_and_nothing_else() -> None:
    state: dict[bytes, bytes] = {}
    forgotten: list[tuple[str, list[Step]]] = []
    take = intake(state, on_forget=lambda u, h: forgotten.append((u, h))).take
    for n in range(3):
        take(record(event(f"a{n}", ts=T0 + n)))
    take(record(event("b0", user="bob"), key=b"bob"))
    result = take(record(None))  # key alice, null value
    assert isinstance(result, Forgotten) and result.had_state
    assert list(state) == [b"bob"]
    assert [(u, [s.event_id for s in h]) for u, h in forgotten] == [("alice", ["a0", "a1", "a2"])]
    again = take(record(None))
    assert isinstance(again, Forgotten) and not again.had_state  # nothing left: still no DLQ
    after = take(record(event("a0", ts=T0)))  # the same id again: a new start, not a repeat
    assert isinstance(after, Scorable) and not after.duplicate and after.history_length == 1


def test_tombstone_without_a_key_is_a_dead_letter() -> None:
    result = intake({}).take(record(None, key=None))
    assert isinstance(result, DeadLetter) and result.error_type == "empty"


def test_tombstone_finds_the_pseudonymous_state() -> None:
    state: dict[bytes, bytes] = {}
    take = intake(state, pseudonym=pseudonymizer(KEY)).take
    take(record(event("a0")))
    assert len(state) == 1
    result = take(record(None))  # keyed by the real id, as `nextbehavior forget alice` sends it
    assert isinstance(result, Forgotten) and result.had_state and state == {}


def test_forget_user_returns_what_was_held() -> None:
    steps = [Step("e1", "i1", "view", T0)]
    state = {b"u": encode_history(steps), b"v": b"not a state record"}
    assert forget_user(state, b"u") == steps
    assert forget_user(state, b"v") == []  # unreadable, deleted all the same
    assert forget_user(state, b"w") is None
    assert state == {}


def test_horizon_drops_old_events_from_state() -> None:
    state: dict[bytes, bytes] = {}
    take = intake(state, horizon_ms=24 * HOUR_MS).take
    take(record(event("old", ts=T0)))
    take(record(event("mid", ts=T0 + 20 * HOUR_MS)))
    newest = take(record(event("new", ts=T0 + 30 * HOUR_MS)))  # "old" is now 30 h behind
    assert isinstance(newest, Scorable)
    assert [s.event_id for s in newest.context] == ["mid", "new"]
    assert [s.event_id for s in decode_history(state[b"alice"])] == ["mid", "new"]
    late = take(record(event("ancient", ts=T0 - HOUR_MS)))  # older than the horizon: not kept
    assert isinstance(late, Scorable) and late.history_length == 2
    assert [s.event_id for s in decode_history(state[b"alice"])] == ["mid", "new"]


@dataclass
class FakeWindow:
    size_s: float

    def current(self, timestamp: float) -> tuple[float, float]:
        start = timestamp - timestamp % self.size_s
        return (start, start + self.size_s)


@dataclass
class FakeWindowed:
    """The part of a Faust tumbling table that the eraser uses: ``.table`` with ``.window``."""

    window: FakeWindow
    data: dict[Any, int] = field(default_factory=dict)

    @property
    def table(self) -> FakeWindowed:
        return self

    def __contains__(self, key: Any) -> bool:
        return key in self.data

    def __delitem__(self, key: Any) -> None:
        del self.data[key]


def test_activity_eraser_deletes_the_users_hours() -> None:
    activity = FakeWindowed(FakeWindow(3600.0))

    def hour(ts: int) -> tuple[float, float]:
        return activity.window.current(ts / 1000)

    activity.data = {("u", hour(T0)): 2, ("u", hour(T0 + HOUR_MS)): 1, ("v", hour(T0)): 5}
    history = [Step(f"e{n}", "i1", "view", T0 + n * HOUR_MS) for n in range(3)]
    assert activity_eraser(activity)("u", history) == 2  # the third hour held no count
    assert activity.data == {("v", hour(T0)): 5}
