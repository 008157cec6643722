"""Repeated client errors collapse to one line per kind per interval (stream/log_throttle.py)."""

from __future__ import annotations

import logging

from nextbehavior.stream.log_throttle import RepeatThrottle


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_are_dropped_then_counted() -> None:
    now = [0.0]
    throttle = RepeatThrottle(interval_s=30, clock=lambda: now[0])
    kept = []
    for tick in range(400):  # 40 a second for 10 s, the outage rate measured
        now[0] = tick / 40
        rec = record("aiokafka", "Unable connect to node with id %s: %s", 111, "refused")
        if throttle.filter(rec):
            kept.append(rec)
    assert len(kept) == 1
    now[0] = 31.0
    rec = record("aiokafka", "Unable connect to node with id %s: %s", 111, "refused")
    assert throttle.filter(rec)
    assert (
        rec.getMessage()
        == "Unable connect to node with id 111: refused (399 more like this in the last 31s)"
    )


def test_only_client_loggers_and_only_identical_records() -> None:
    throttle = RepeatThrottle(interval_s=30, clock=lambda: 0.0)
    ours = [record("nextbehavior.stream.pipeline", "send failed") for _ in range(5)]
    assert all(throttle.filter(r) for r in ours)  # our own lines are never dropped
    assert throttle.filter(record("aiokafka.consumer.fetcher", "a"))
    assert not throttle.filter(record("aiokafka.consumer.fetcher", "a"))
    assert throttle.filter(record("aiokafka.consumer.fetcher", "b"))  # another message
    assert throttle.filter(record("aiokafka.consumer.fetcher", "a", level=logging.WARNING))
    assert throttle.filter(record("faust.transport", "x"))
    assert throttle.filter(record("faustx", "x")) and throttle.filter(record("faustx", "x"))
