"""Replay planning: which events, in which order, with which ids, at which pace.

Pure functions, no Kafka: :mod:`nextbehavior.stream.replay_publish` sends what this module plans.

A replay publishes a historical log in time order (ties keep file order, so each user's events
keep their order). Events without an id get a deterministic, content-derived one
(:func:`deterministic_event_id`), so replaying the same log twice gives the same ids and the
worker drops the repeats. Pacing follows the original timestamps divided by the speed.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import count

from nextbehavior.stream.events import Event

ID_PREFIX = "rp-"
"""Prefix of the ids a replay makes up, so they are recognisable in the topics."""


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


def deterministic_event_id(
    user_id: str, item_id: str, event_type: str, timestamp: int, occurrence: int = 0
) -> str:
    """An id derived from the event's content; ``occurrence`` tells identical rows apart."""
    digest = hashlib.blake2b(
        "\x1f".join((user_id, item_id, event_type, str(timestamp))).encode("utf-8"),
        digest_size=10,
    ).hexdigest()
    return f"{ID_PREFIX}{digest}" if occurrence == 0 else f"{ID_PREFIX}{digest}-{occurrence}"


def with_ids(events: Iterable[Event]) -> Iterator[Event]:
    """Give every event without an id (empty ``event_id``) a deterministic one.

    ``events`` must be in time order. Identical rows (same user, item, type and timestamp) are
    numbered in their order of appearance; they share a timestamp, so the counter only has to
    remember the rows of the current timestamp, and a time filter or a limit never renumbers
    the rows it keeps.
    """
    seen: Counter[tuple[str, str, str]] = Counter()
    current_ts: int | None = None
    for event in events:
        if event.event_id:
            yield event
            continue
        if event.timestamp != current_ts:
            seen.clear()
            current_ts = event.timestamp
        key = (event.user_id, event.item_id, event.event_type)
        occurrence = seen[key]
        seen[key] += 1
        yield replace(
            event,
            event_id=deterministic_event_id(
                event.user_id, event.item_id, event.event_type, event.timestamp, occurrence
            ),
        )


@dataclass
class Selection:
    """The events a replay will send, in send order, and how many rows it left out."""

    events: list[Event]
    outside_range: int = 0  # rows before --since or at/after --until
    over_limit: int = 0  # rows in range beyond --limit


def select_events(
    events: Iterable[Event],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int | None = None,
) -> Selection:
    """Events with ``since_ms <= timestamp < until_ms``, time-ordered (stable), the first ``limit``.

    With a limit, memory stays bounded by the limit (a heap keeps the earliest rows), whatever
    the size of the log.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    outside = 0
    seq = count()

    def in_range() -> Iterator[tuple[int, int, Event]]:
        nonlocal outside
        for event in events:
            if (since_ms is not None and event.timestamp < since_ms) or (
                until_ms is not None and event.timestamp >= until_ms
            ):
                outside += 1
                continue
            yield (event.timestamp, next(seq), event)

    if limit is None:
        rows = sorted(in_range(), key=lambda r: (r[0], r[1]))
        return Selection([r[2] for r in rows], outside_range=outside)
    kept = heapq.nsmallest(limit, in_range(), key=lambda r: (r[0], r[1]))
    total = next(seq)  # rows in range seen (count() starts at 0)
    return Selection([r[2] for r in kept], outside, over_limit=total - len(kept))


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
