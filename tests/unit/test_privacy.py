"""Pseudonymous user ids, forget requests (input tombstones) and the time horizon, at the intake
(stream/privacy.py, stream/intake.py); the live worker does the same in
tests/integration/test_reliability.py."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from nextbehavior.stream.history import Step
from nextbehavior.stream.intake import DeadLetter, Forgotten, Intake, Record, Scorable, Work
from nextbehavior.stream.privacy import pseudonymizer
from nextbehavior.stream.state import decode_history, encode_history
from nextbehavior.stream.table_writes import ActivityCounts, TableWriter, UserStates

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


def taker(state: dict[bytes, bytes], **kw: Any) -> Callable[[Record], Work]:
    """Take one record and flush its writes into ``state`` (the worker flushes per batch)."""
    into = intake(state, **kw)

    def take(rec: Record) -> Work:
        work = into.take(rec)
        into.flush()
        return work

    return take


def window(ts_s: float) -> tuple[float, float]:
    """A tumbling hour window, as Faust's ``window.current`` (event time in seconds)."""
    start = ts_s - ts_s % 3600.0
    return (start, start + 3600.0)


def hour(ts_ms: int) -> tuple[float, float]:
    return window(ts_ms / 1000)


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
    work = taker(state, pseudonym=pseudonym)(record(event("e1")))
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
    counts: dict[Any, int] = {}
    activity = ActivityCounts(TableWriter(counts, "activity"), window)
    take = taker(state, activity=activity)
    for n in range(3):
        take(record(event(f"a{n}", ts=T0 + n * HOUR_MS)))
    take(record(event("b0", user="bob"), key=b"bob"))
    assert counts[("alice", hour(T0))] == 1 and len(counts) == 4
    result = take(record(None))  # key alice, null value
    assert isinstance(result, Forgotten) and result.had_state
    assert list(state) == [b"bob"]
    assert counts == {("bob", hour(T0)): 1}  # alice's hours are gone too
    again = take(record(None))
    assert isinstance(again, Forgotten) and not again.had_state  # nothing left: still no DLQ
    after = take(record(event("a0", ts=T0)))  # the same id again: a new start, not a repeat
    assert isinstance(after, Scorable) and not after.duplicate and after.history_length == 1


def test_tombstone_without_a_key_is_a_dead_letter() -> None:
    result = intake({}).take(record(None, key=None))
    assert isinstance(result, DeadLetter) and result.error_type == "empty"


def test_tombstone_finds_the_pseudonymous_state() -> None:
    state: dict[bytes, bytes] = {}
    take = taker(state, pseudonym=pseudonymizer(KEY))
    take(record(event("a0")))
    assert len(state) == 1
    result = take(record(None))  # keyed by the real id, as `nextbehavior forget alice` sends it
    assert isinstance(result, Forgotten) and result.had_state and state == {}


def test_forget_returns_what_was_held_and_sends_tombstones() -> None:
    steps = [Step("e1", "i1", "view", T0)]
    store = {b"u": encode_history(steps), b"v": b"not a state record"}
    users = UserStates(TableWriter(store, "state"))
    assert users.forget(b"u", 3) == steps
    assert users.forget(b"v", 1) == []  # unreadable, deleted all the same
    assert users.forget(b"w", 0) is None
    writes = users.flush()
    assert store == {}
    assert sorted((w.key, w.value, w.partition) for w in writes) == [
        (b"u", None, 3),
        (b"v", None, 1),
    ]


def test_horizon_drops_old_events_from_state() -> None:
    state: dict[bytes, bytes] = {}
    take = taker(state, horizon_ms=24 * HOUR_MS)
    take(record(event("old", ts=T0)))
    take(record(event("mid", ts=T0 + 20 * HOUR_MS)))
    newest = take(record(event("new", ts=T0 + 30 * HOUR_MS)))  # "old" is now 30 h behind
    assert isinstance(newest, Scorable)
    assert [s.event_id for s in newest.context] == ["mid", "new"]
    assert [s.event_id for s in decode_history(state[b"alice"])] == ["mid", "new"]
    late = take(record(event("ancient", ts=T0 - HOUR_MS)))  # older than the horizon: not kept
    assert isinstance(late, Scorable) and late.history_length == 2
    assert [s.event_id for s in decode_history(state[b"alice"])] == ["mid", "new"]


def test_activity_erase_deletes_the_users_hours() -> None:
    counts: dict[Any, int] = {("u", hour(T0)): 2, ("u", hour(T0 + HOUR_MS)): 1, ("v", hour(T0)): 5}
    activity = ActivityCounts(TableWriter(counts, "activity"), window)
    history = [Step(f"e{n}", "i1", "view", T0 + n * HOUR_MS) for n in range(3)]
    assert activity.erase("u", history, 0) == 2  # the third hour held no count
    writes = activity.flush()
    assert counts == {("v", hour(T0)): 5}
    assert [w.value for w in writes] == [None, None]  # tombstones
