"""The worker's counters, kept in-process and shown at ``/stats`` (JSON) on its web port."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

ACTIVITY_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
"""Upper bounds of the "events per user in the event's hour" histogram (``+Inf`` above)."""


@dataclass
class Stats:
    """Counts since start. ``events`` by outcome: ``predicted`` (a new event, predicted),
    ``duplicate`` (an event id the state held: state unchanged, prediction re-emitted),
    ``dead_lettered``; ``errors`` by dead-letter ``error_type``."""

    started_at: float = field(default_factory=time.time)
    events: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    batch_events: int = 0
    max_batch: int = 0
    inference_s: float = 0.0
    send_retries: int = 0
    changelog_writes: int = 0
    activity_max: int = 0
    activity_hist: list[int] = field(default_factory=lambda: [0] * (len(ACTIVITY_BUCKETS) + 1))

    def observe_batch(self, size: int, inference_s: float) -> None:
        self.batches += 1
        self.batch_events += size
        self.max_batch = max(self.max_batch, size)
        self.inference_s += inference_s

    def observe_activity(self, count: int) -> None:
        """One event whose user now has ``count`` events in that event's hour."""
        self.activity_max = max(self.activity_max, count)
        self.activity_hist[bisect.bisect_left(ACTIVITY_BUCKETS, count)] += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view."""
        buckets = [str(b) for b in ACTIVITY_BUCKETS] + ["+Inf"]
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "events": dict(self.events),
            "errors": dict(self.errors),
            "batches": self.batches,
            "mean_batch": round(self.batch_events / self.batches, 3) if self.batches else 0.0,
            "max_batch": self.max_batch,
            "inference_s": round(self.inference_s, 6),
            "send_retries": self.send_retries,
            "changelog_writes": self.changelog_writes,
            "hourly_activity": {
                "max": self.activity_max,
                "histogram": dict(zip(buckets, self.activity_hist, strict=True)),
            },
        }
