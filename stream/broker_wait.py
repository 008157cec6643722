"""At start, wait for the broker (and the input topic) with backoff, instead of failing at once.

Services start in any order (docker compose, Kubernetes, a laptop): a worker that comes up
before its broker retries, with exponential backoff and jitter (0.5 s doubling to 10 s), and
says so in the log on every attempt, until the broker answers and the input topic exists or
``Settings.broker_wait_s`` has passed (then it stops with a one-line reason; 0 = try once).
Each attempt is a real admin-client request with the worker's own connection settings (TLS,
SASL), so it proves what the worker itself will need.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

from nextbehavior.stream.settings import Settings
from nextbehavior.stream.topics import TopicError, list_topics

logger = logging.getLogger(__name__)

FIRST_DELAY_S: Final = 0.5
MAX_DELAY_S: Final = 10.0
ATTEMPT_TIMEOUT_S: Final = 10.0
"""Each attempt may take this long (or the time left, up to ``request_timeout_s``)."""

Lister = Callable[[Settings, float], Awaitable[dict[str, int]]]


class BrokerWaitError(RuntimeError):
    """The broker or the input topic did not come within the wait; one-line reason."""


async def _list(settings: Settings, timeout_s: float) -> dict[str, int]:
    return await list_topics(settings, timeout_s=timeout_s)


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Delay before retry ``attempt`` (1-based): doubling from 0.5 s to 10 s, +-20% jitter."""
    base = min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** (attempt - 1))
    jitter: float = (rng or random.Random()).random()
    return base * (0.8 + 0.4 * jitter)


async def wait_for_broker(
    settings: Settings,
    *,
    lister: Lister = _list,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Wait until the broker answers and the input topic exists; its partition count.

    Raises :class:`BrokerWaitError` after ``settings.broker_wait_s`` seconds of trying.
    """
    where = settings.bootstrap
    topic = settings.input_topic
    limit = settings.broker_wait_s
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        waited = clock() - start
        try:
            timeout = min(settings.request_timeout_s, max(ATTEMPT_TIMEOUT_S, limit - waited))
            topics = await lister(settings, timeout)
        except TopicError as exc:
            problem = f"broker {where} not reachable ({exc})"
        else:
            if topic in topics:
                if attempt > 1:
                    logger.info("broker %s is up, input topic %r found: starting", where, topic)
                return topics[topic]
            problem = (
                f"input topic {topic!r} does not exist on {where} yet "
                "(create it with: nextbehavior topics create)"
            )
        waited = clock() - start
        if waited >= limit:
            raise BrokerWaitError(
                f"{problem}; gave up after {waited:.0f}s (NBP_BROKER_WAIT_S={limit:g})"
            )
        delay = min(backoff(attempt), max(limit - waited, 0.0))
        logger.warning(
            "waiting for the broker: %s; retry %d in %.1fs (waited %.0fs of %gs)",
            problem,
            attempt,
            delay,
            waited,
            limit,
        )
        await sleep(delay)
