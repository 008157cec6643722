"""Waiting for the broker at start: backoff, clear log lines, a one-line reason at the deadline
(stream/broker_wait.py). The real thing, a worker started before its broker, is in
tests/integration/test_reliability.py."""

from __future__ import annotations

import logging
import random

import pytest

from nextbehavior.stream.broker_wait import BrokerWaitError, backoff, wait_for_broker
from nextbehavior.stream.settings import Settings
from nextbehavior.stream.topics import TopicError


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def settings(wait_s: float) -> Settings:
    return Settings(broker="kafka://127.0.0.1:9", input_topic="events", broker_wait_s=wait_s)


def test_backoff_doubles_to_a_cap_with_jitter() -> None:
    rng = random.Random(0)
    delays = [backoff(n, rng) for n in range(1, 9)]
    for n, delay in enumerate(delays, start=1):
        base = min(10.0, 0.5 * 2 ** (n - 1))
        assert 0.8 * base <= delay <= 1.2 * base


async def test_waits_for_the_broker_then_the_topic(caplog: pytest.LogCaptureFixture) -> None:
    answers: list[dict[str, int] | Exception] = [
        TopicError("cannot reach broker 127.0.0.1:9"),
        TopicError("cannot reach broker 127.0.0.1:9"),
        {"other": 1},
        {"events": 3, "other": 1},
    ]
    fake = FakeTime()

    async def lister(_: Settings, timeout_s: float) -> dict[str, int]:
        assert 10.0 <= timeout_s <= 30.0  # request_timeout_s at most
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    caplog.set_level(logging.INFO)
    got = await wait_for_broker(settings(300), lister=lister, clock=fake.clock, sleep=fake.sleep)
    assert got == 3 and not answers
    assert len(fake.sleeps) == 3 and fake.sleeps[0] < fake.sleeps[2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "not reachable (cannot reach broker 127.0.0.1:9)" in warnings[0]
    assert "retry 1 in" in warnings[0] and "of 300s" in warnings[0]
    assert "input topic 'events' does not exist" in warnings[2]
    assert "nextbehavior topics create" in warnings[2]
    assert "is up, input topic 'events' found" in caplog.text


async def test_gives_up_at_the_deadline_with_one_line() -> None:
    fake = FakeTime()

    async def lister(_: Settings, timeout_s: float) -> dict[str, int]:
        fake.now += 1.0  # each attempt takes a second
        raise TopicError("cannot reach broker 127.0.0.1:9")

    with pytest.raises(BrokerWaitError) as caught:
        await wait_for_broker(settings(20), lister=lister, clock=fake.clock, sleep=fake.sleep)
    message = str(caught.value)
    assert "\n" not in message
    assert "not reachable" in message and "NBP_BROKER_WAIT_S=20" in message
    assert 20 <= fake.now <= 22  # the last sleep is cut to the deadline


async def test_zero_wait_tries_once() -> None:
    fake = FakeTime()
    calls = 0

    async def lister(_: Settings, timeout_s: float) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {}

    with pytest.raises(BrokerWaitError, match="does not exist"):
        await wait_for_broker(settings(0), lister=lister, clock=fake.clock, sleep=fake.sleep)
    assert calls == 1 and fake.sleeps == []
