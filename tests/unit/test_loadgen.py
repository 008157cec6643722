"""Synthetic load and figures of ``bench e2e`` (stream/loadgen.py, stream/bench_e2e.py)."""

from __future__ import annotations

import orjson

from nextbehavior.stream.bench_e2e import percentiles
from nextbehavior.stream.events import parse_event
from nextbehavior.stream.loadgen import synthetic_events
from nextbehavior.stream.machine import machine_info, versions


def test_synthetic_events_are_valid_keyed_and_reproducible() -> None:
    items, types = ["1", "2", "3"], ["view", "buy"]
    events = synthetic_events(500, users=7, items=items, event_types=types, start_ms=1_000)
    assert events == synthetic_events(500, users=7, items=items, event_types=types, start_ms=1_000)
    parsed = [parse_event(e.value) for e in events]
    assert {p.user_id for p in parsed} == {f"user{n}" for n in range(7)}
    assert all(
        e.key == p.user_id.encode() and e.event_id == p.event_id
        for e, p in zip(events, parsed, strict=True)
    )
    assert len({p.event_id for p in parsed}) == 500 and all(len(p.event_id) == 20 for p in parsed)
    assert {p.item_id for p in parsed} <= set(items) and {p.event_type for p in parsed} == set(
        types
    )
    assert [p.timestamp for p in parsed] == [1_000 + 50 * n for n in range(500)]
    assert len(orjson.dumps(orjson.loads(events[0].value))) < 160  # small, like real events


def test_percentiles_are_milliseconds() -> None:
    got = percentiles([n / 1000 for n in range(1, 101)])  # 1..100 ms
    assert got == {"p50": 50.5, "p95": 95.05, "p99": 99.01}


def test_machine_and_versions_name_what_was_measured() -> None:
    info = machine_info()
    assert info["cores"] >= 1 and info["cpu_model"] and len(info["load_avg"]) in (0, 3)
    assert {"nextbehavior", "faust-streaming", "aiokafka", "orjson"} <= set(versions())
