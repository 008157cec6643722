"""Replay planning: which events, in which order, with which ids, at which pace.

Pure functions, no Kafka: :mod:`nextbehavior.stream.publisher` sends what this module plans.

A replay publishes a historical log in time order (ties keep file order, so each user's events
keep their order), optionally cut to a time range and a number of events. The loader
(``nextbehavior.model.loaders``) gives rows without an id a deterministic one, so replaying the
same log twice sends the same ids and the worker drops the repeats. Pacing follows the original
timestamps divided by the speed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nextbehavior.stream.events import Event


def parse_speed(text: str | float | None) -> float | None:
    """``"max"`` (or None) -> None (as fast as the broker takes them); else a factor > 0."""
    if text is None:
        return None
    if isinstance(text, str) and text.strip().lower() in ("max", "inf", "infinity"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"speed must be a number > 0 or 'max', got {text!r}") from None
    if math.isinf(value) and value > 0:
        return None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"speed must be a number > 0 or 'max', got {text!r}")
    return value


def parse_time(text: str) -> int:
    """A time bound as epoch milliseconds: an integer (epoch ms) or ISO-8601 (UTC if naive)."""
    raw = text.strip()
    if raw.lstrip("-").isdigit():
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"time must be epoch milliseconds or ISO-8601 (e.g. 1998-01-01), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass
class Selection:
    """Which rows a replay sends (indices, in send order) and how many it left out."""

    indices: npt.NDArray[np.int64]  # (M,) row indices into the log, time order
    outside_range: int = 0  # rows before --since or at/after --until
    over_limit: int = 0  # rows in range beyond --limit


def select_rows(
    timestamps: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int | None = None,
) -> Selection:
    """Rows with ``since_ms <= timestamp < until_ms``, in ``order``, the first ``limit`` of them.

    ``timestamps`` (N,) are the log's event times in file order; ``order`` (N,) the row indices
    sorted by time with ties in file order (``EventTable.time_order()``), which keeps every
    user's events in their order.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    ts = timestamps[order]
    keep = np.ones(len(order), dtype=bool)
    if since_ms is not None:
        keep &= ts >= since_ms
    if until_ms is not None:
        keep &= ts < until_ms
    chosen = order[keep]
    outside = int(len(order) - len(chosen))
    if limit is not None and len(chosen) > limit:
        return Selection(chosen[:limit], outside, int(len(chosen) - limit))
    return Selection(chosen, outside)


@dataclass(frozen=True, slots=True)
class Pacer:
    """When each event is due, relative to the start of the replay.

    An event with timestamp ``t`` is due ``(t - first) / 1000 / speed`` seconds after the
    start, where ``first`` is the timestamp of the first event; ``speed=None`` means at once.
    """

    first_ts_ms: int
    speed: float | None

    def due_s(self, timestamp_ms: int) -> float:
        """Seconds after the start at which the event with ``timestamp_ms`` is due."""
        if self.speed is None:
            return 0.0
        return max(0, timestamp_ms - self.first_ts_ms) / 1000.0 / self.speed

    def wait_s(self, timestamp_ms: int, elapsed_s: float) -> float:
        """How long to sleep now (``elapsed_s`` after the start) before sending this event."""
        return max(0.0, self.due_s(timestamp_ms) - elapsed_s)

    def duration_s(self, last_ts_ms: int) -> float:
        """Planned duration of the whole replay (0 at max speed)."""
        return self.due_s(last_ts_ms)


@dataclass
class ReplaySummary:
    """What a replay did; ``to_dict`` is the machine-readable summary."""

    sent: int = 0
    failed: int = 0  # delivery failures reported by the broker
    rejected: Counter[str] = field(default_factory=Counter)  # rows the loader refused, by reason
    outside_range: int = 0
    over_limit: int = 0
    users: int = 0
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    wall_s: float = 0.0

    @property
    def rate(self) -> float:
        """Events per second of wall time."""
        return self.sent / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        def iso(ms: int | None) -> str | None:
            if ms is None:
                return None
            return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")

        return {
            "sent": self.sent,
            "failed": self.failed,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "outside_range": self.outside_range,
            "over_limit": self.over_limit,
            "users": self.users,
            "first_timestamp": iso(self.first_ts_ms),
            "last_timestamp": iso(self.last_ts_ms),
            "span_s": (self.last_ts_ms - self.first_ts_ms) / 1000.0
            if self.first_ts_ms is not None and self.last_ts_ms is not None
            else 0.0,
            "wall_s": round(self.wall_s, 3),
            "events_per_s": round(self.rate, 1),
        }


@dataclass
class ReplayPlan:
    """A loaded log, cut to what will be sent: ``events()`` yields them in send order."""

    table: Any  # nextbehavior.model.table.EventTable (model is imported lazily)
    selection: Selection
    summary: ReplaySummary

    def __len__(self) -> int:
        return len(self.selection.indices)

    @property
    def first_ts_ms(self) -> int:
        return self.summary.first_ts_ms or 0

    def events(self) -> Iterator[Event]:
        for i in self.selection.indices:
            yield self.table.event(int(i))


def plan_replay(
    path: str | Path,
    fmt: str = "auto",
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int | None = None,
    progress: bool | None = None,
) -> ReplayPlan:
    """Load ``path`` with the training loaders and select what a replay sends.

    Raises ``FileNotFoundError``/``ValueError`` (unreadable or empty log, unknown format) and
    ``ImportError`` when the loaders' dependencies are not installed.
    """
    from nextbehavior.model.loaders import load_events  # lazy: stream never needs model

    table = load_events(path, fmt, progress=progress)
    selection = select_rows(
        table.timestamp, table.time_order(), since_ms=since_ms, until_ms=until_ms, limit=limit
    )
    summary = ReplaySummary(
        rejected=Counter(table.report.rejected),
        outside_range=selection.outside_range,
        over_limit=selection.over_limit,
    )
    if len(selection.indices):
        ts = table.timestamp[selection.indices]
        summary.first_ts_ms, summary.last_ts_ms = int(ts[0]), int(ts[-1])
        summary.users = len(np.unique(table.user[selection.indices]))
    return ReplayPlan(table, selection, summary)
