"""Replay planning: speed and time parsing, pacing math, ordering, deterministic ids."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pytest

from nextbehavior.stream.events import Event, parse_event
from nextbehavior.stream.publisher import publish
from nextbehavior.stream.replay import Pacer, ReplaySummary, parse_speed, parse_time, select_rows


def ev(user: str, item: str, ts: int, event_id: str = "", event_type: str = "view") -> Event:
    return Event(event_id, user, item, event_type, ts)


def test_parse_speed() -> None:
    assert parse_speed("max") is None
    assert parse_speed("MAX") is None
    assert parse_speed(None) is None
    assert parse_speed("inf") is None
    assert parse_speed("60") == 60.0
    assert parse_speed("0.5") == 0.5
    for bad in ("0", "-2", "nan", "fast"):
        with pytest.raises(ValueError, match="speed"):
            parse_speed(bad)


def test_parse_time() -> None:
    assert parse_time("1000") == 1000
    assert parse_time("1970-01-01T00:00:01Z") == 1000
    assert parse_time("1998-01-01") == 883_612_800_000
    assert parse_time("1998-01-01T01:00:00+01:00") == 883_612_800_000
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday")


def test_pacer_divides_original_gaps_by_speed() -> None:
    pacer = Pacer(first_ts_ms=10_000, speed=10.0)
    assert pacer.due_s(10_000) == 0.0
    assert pacer.due_s(30_000) == pytest.approx(2.0)  # 20 s of history at 10x -> 2 s
    assert pacer.wait_s(30_000, elapsed_s=0.5) == pytest.approx(1.5)
    assert pacer.wait_s(30_000, elapsed_s=3.0) == 0.0  # behind schedule: no wait, catch up
    assert pacer.duration_s(70_000) == pytest.approx(6.0)
    at_max = Pacer(first_ts_ms=0, speed=None)
    assert at_max.due_s(10**12) == 0.0 and at_max.wait_s(10**12, 0.0) == 0.0


def test_select_rows_orders_by_time_stably_and_filters() -> None:
    ts = np.array([30, 10, 10, 20, 5], dtype=np.int64)
    order = np.lexsort((np.arange(5), ts)).astype(np.int64)  # EventTable.time_order()
    assert select_rows(ts, order).indices.tolist() == [4, 1, 2, 3, 0]  # ties keep file order
    ranged = select_rows(ts, order, since_ms=10, until_ms=30)
    assert ranged.indices.tolist() == [1, 2, 3] and ranged.outside_range == 2
    limited = select_rows(ts, order, since_ms=10, limit=2)
    assert limited.indices.tolist() == [1, 2]
    assert (limited.outside_range, limited.over_limit) == (1, 2)
    assert select_rows(ts, order, limit=0).indices.tolist() == []
    with pytest.raises(ValueError, match="limit"):
        select_rows(ts, order, limit=-1)


def test_select_rows_keeps_each_users_order() -> None:
    users = [f"u{i % 7}" for i in range(300)]
    ts = np.array([1000 + (i * 37) % 50 for i in range(300)], dtype=np.int64)
    order = np.lexsort((np.arange(300), ts)).astype(np.int64)
    picked = select_rows(ts, order, limit=200).indices.tolist()
    assert ts[picked].tolist() == sorted(ts[picked].tolist())
    for user in set(users):
        mine = sorted((i for i in range(300) if users[i] == user), key=lambda i: (ts[i], i))
        sent = [i for i in picked if users[i] == user]
        assert sent == mine[: len(sent)]


def test_summary_dict() -> None:
    s = ReplaySummary(sent=10, users=2, first_ts_ms=0, last_ts_ms=5000, wall_s=2.0)
    s.rejected["bad_timestamp"] += 3
    d = s.to_dict()
    assert d["rejected"] == {"bad_timestamp": 3} and d["rejected_total"] == 3
    assert d["span_s"] == 5.0 and d["events_per_s"] == 5.0
    assert d["first_timestamp"] == "1970-01-01T00:00:00Z"


class FakeProducer:
    """Records sends; acks resolve at once (the Kafka path is covered by integration tests)."""

    def __init__(self, fail_every: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, float]] = []
        self.fail_every = fail_every
        self.now = 0.0

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        self.sent.append((topic, key, value, self.now))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_every and len(self.sent) % self.fail_every == 0:
            fut.set_exception(RuntimeError("broker said no"))
        else:
            fut.set_result(None)
        return fut

    async def flush(self) -> None:
        return None


async def test_publish_paces_by_timestamps_and_keys_by_user() -> None:
    producer = FakeProducer()

    async def fake_sleep(seconds: float) -> None:
        producer.now += seconds

    events = [ev("a", "1", 0, "e1"), ev("b", "2", 1000, "e2"), ev("a", "3", 4000, "e3")]
    progress: list[int] = []
    result = await publish(
        producer,
        "t",
        events,
        Pacer(0, speed=2.0),
        on_sent=progress.append,
        clock=lambda: producer.now,
        sleep=fake_sleep,
        raw=[(b"k", b"not json")],
    )
    assert (result.sent, result.failed) == (4, 0)
    assert sum(progress) == 4
    assert [s[3] for s in producer.sent] == [0.0, 0.5, 2.0, 2.0]  # gaps / speed
    assert [s[1] for s in producer.sent] == [b"a", b"b", b"a", b"k"]
    decoded = [parse_event(s[2]) for s in producer.sent[:3]]
    assert decoded == events
    assert orjson.loads(producer.sent[0][2] or b"")["event_id"] == "e1"


async def test_publish_counts_failed_deliveries() -> None:
    producer = FakeProducer(fail_every=2)
    events = [ev("a", str(i), i, event_id=str(i)) for i in range(5)]
    result = await publish(producer, "t", events, Pacer(0, None))
    assert (result.sent, result.failed) == (3, 2)
    assert result.first_error == "RuntimeError: broker said no"
