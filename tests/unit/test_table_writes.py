"""Table writes gathered per batch (stream/table_writes.py): last write wins, the store and the
changelog agree, records are Faust's own bytes, windowed expiry is kept, the cache is bounded."""

from __future__ import annotations

from typing import Any

import faust

from nextbehavior.stream.history import Step
from nextbehavior.stream.state import decode_history, encode_history
from nextbehavior.stream.table_writes import ActivityCounts, TableWriter, UserStates

T0 = 1_700_000_000_000


def steps(*ids: str) -> list[Step]:
    return [Step(e, "i1", "view", T0 + n) for n, e in enumerate(ids)]


def test_last_write_of_a_key_wins_and_reaches_store_and_changelog() -> None:
    store: dict[Any, Any] = {"gone": 1}
    table = TableWriter(store, "t-changelog")
    table.set("a", 1, 0)
    table.set("a", 2, 3)
    table.set("b", 5, 1)
    table.delete("gone", 2)
    assert table.get("a") == 2 and table.get("gone") is None and table.pending == 3
    assert store == {"gone": 1}  # nothing applied before the flush
    writes = table.flush()
    assert [(w.key, w.value, w.partition) for w in writes] == [
        ("a", 2, 3),
        ("b", 5, 1),
        ("gone", None, 2),
    ]
    assert store == {"a": 2, "b": 5} and table.pending == 0
    assert table.flush() == []


def test_faust_tables_get_faust_bytes_and_window_expiry() -> None:
    app = faust.App("table-writes-test", broker="kafka://127.0.0.1:1", store="memory://")
    raw = app.Table("seq", default=None, partitions=4, key_type=bytes, value_type=bytes)
    windowed = app.Table("act", default=int, partitions=4).tumbling(3600.0, expires=7200.0)
    users = UserStates(TableWriter.of(raw))
    users.write(b"u1", steps("e1"), 2)
    [state] = users.flush()
    assert (state.topic, state.key, state.partition) == (
        "table-writes-test-seq-changelog",
        b"u1",
        2,
    )
    assert decode_history(state.value) == steps("e1") and raw.data[b"u1"] == state.value

    counts = ActivityCounts.of(windowed)
    assert counts.count("u1", T0, 2) == 1
    assert counts.count("u1", T0 + 1000, 2) == 2
    [write] = counts.flush()
    window = windowed.table.window.current(T0 / 1000)
    key = ("u1", window)
    assert windowed.table.data[key] == 2
    expected_key = windowed.table.changelog_topic.prepare_key(key, "json")[0]
    assert (write.key, write.value) == (expected_key, b"2")
    assert write.topic == "table-writes-test-act-changelog"
    # Faust's expiry bookkeeping saw the key (it would drop it once the window expires).
    assert key in windowed.table._partition_timestamp_keys[(2, window[1])]


def test_user_states_cache_reads_once_and_stays_bounded() -> None:
    store = {b"u1": encode_history(steps("a")), b"u2": b"garbage"}
    reads: list[bytes] = []

    class Counting(dict[bytes, bytes]):
        def get(self, key: bytes, default: Any = None) -> Any:
            reads.append(key)
            return super().get(key, default)

    users = UserStates(TableWriter(Counting(store), "s"), cached_users=2)
    assert [s.event_id for s in users.read(b"u1")] == ["a"]
    users.read(b"u1")
    assert reads == [b"u1"]  # decoded once
    assert users.read(b"u2") == []  # unreadable: a fresh start
    users.write(b"u3", steps("x"), 0)
    users.flush()  # trims the cache to 2 users, least recently used first
    users.read(b"u1")
    assert reads.count(b"u1") == 2


def test_invalidate_keeps_unflushed_writes_only() -> None:
    store = {b"u1": encode_history(steps("a"))}
    users = UserStates(TableWriter(store, "s"))
    users.read(b"u1")
    users.write(b"u2", steps("b"), 1)
    store[b"u1"] = encode_history(steps("a", "c"))  # recovered from the changelog meanwhile
    users.invalidate()
    assert [s.event_id for s in users.read(b"u1")] == ["a", "c"]
    assert [s.event_id for s in users.read(b"u2")] == ["b"]
    assert [w.key for w in users.flush()] == [b"u2"]


def test_forget_then_write_in_one_batch_keeps_the_new_state() -> None:
    store = {b"u1": encode_history(steps("a"))}
    users = UserStates(TableWriter(store, "s"))
    assert [s.event_id for s in users.forget(b"u1", 0) or []] == ["a"]
    assert users.read(b"u1") == []
    users.write(b"u1", steps("n"), 0)
    writes = users.flush()
    assert len(writes) == 1 and decode_history(writes[0].value) == steps("n")
    assert decode_history(store[b"u1"]) == steps("n")
