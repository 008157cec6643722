"""Collapse repeated log lines: a broker outage must not become a log storm.

With the broker gone, aiokafka's clients retry every 100 ms and log each failure ("Unable
connect to node ...", "Unable to update metadata ..."): about 40 identical lines a second from
one worker (measured, tests/integration/test_reliability.py). :class:`RepeatThrottle` lets the
first of a kind through, drops identical ones (same logger, level, message and arguments) for
``interval_s``, and then lets the next one through with a note of how many it dropped. The
worker installs it on its log handlers for the ``aiokafka`` and ``faust`` loggers only; our
own log lines are never dropped.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

DEFAULT_INTERVAL_S: Final = 30.0
MAX_KINDS: Final = 1000


class RepeatThrottle(logging.Filter):
    """At most one record of each kind per ``interval_s``, for loggers under ``prefixes``."""

    def __init__(
        self,
        prefixes: Iterable[str] = ("aiokafka", "faust"),
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)
        self.interval_s = interval_s
        self._clock = clock
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()

    def _throttled(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._throttled(record.name):
            return True
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: let the handler report it
            return True
        kind = (record.name, record.levelno, text)
        now = self._clock()
        seen = self._seen.get(kind)
        if seen is not None and now - seen[0] < self.interval_s:
            self._seen[kind] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.msg = f"{text} ({seen[1]} more like this in the last {now - seen[0]:.0f}s)"
            record.args = None
        self._seen[kind] = (now, 0)
        self._seen.move_to_end(kind)
        while len(self._seen) > MAX_KINDS:
            self._seen.popitem(last=False)
        return True


def throttle_repeats(interval_s: float = DEFAULT_INTERVAL_S) -> RepeatThrottle:
    """Install a :class:`RepeatThrottle` on every handler of the root logger; returns it."""
    throttle = RepeatThrottle(interval_s=interval_s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(throttle)
    return throttle
