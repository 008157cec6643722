"""Liveness and readiness of one worker, from signals that the worker's parts report.

**Readiness** (``/readyz``, may this worker be counted on): a model bundle is loaded and warm,
the broker answers, the consumer group is joined (an assignment, possibly empty, was received
and no rebalance is under way) and table recovery has finished.

**Liveness** (``/healthz``, should it be restarted): the event loop turns (a beat at least every
``stall_s``), no assigned partition with input waiting has been stuck at the same position for
``stall_s``, and the broker has not been unreachable for longer than ``stall_s``.

A broken broker connection turns readiness false at once and liveness false after ``stall_s``.
Any part of the worker can report it (several independent reporters, by ``source`` name)::

    health.report_broker(False, "send failed: KafkaTimeoutError", source="pipeline")
    health.report_broker(True, source="pipeline")      # the same source, once it works again

The broker counts as reachable only while every source that reported says so. The worker's own
probe (a metadata request every few seconds) reports as ``source="probe"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

TP = tuple[str, int]
DEFAULT_STALL_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """One health answer: ``ok``, a short ``reason`` (empty when ok) and what was checked."""

    ok: bool
    reason: str
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """The HTTP status: 200 or 503."""
        return 200 if self.ok else 503

    def body(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, **self.checks}


@dataclass(frozen=True, slots=True)
class GroupState:
    """What the consumer says at the moment of asking."""

    joined: bool  # an assignment was received (it may be empty: more workers than partitions)
    rebalancing: bool
    recovering: bool  # table recovery not finished
    assigned: int  # input partitions owned


@dataclass(slots=True)
class _Progress:
    position: int | None = None  # next offset to process
    highwater: int | None = None
    fine_at: float = 0.0  # last time it advanced or was caught up


class Health:
    """The signals, and the two verdicts computed from them (``clock``: seconds, monotonic)."""

    def __init__(
        self, *, stall_s: float = DEFAULT_STALL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stall_s = stall_s
        self._clock = clock
        self.model_version: str | None = None
        self._broker_down: dict[str, tuple[str, float]] = {}  # source -> (reason, since)
        self._last_beat: float | None = None
        self._progress: dict[TP, _Progress] = {}
        self._unknown_outputs: set[str] = set()

    # --- signals ----------------------------------------------------------------------------
    def report_broker(self, ok: bool, reason: str = "", *, source: str = "default") -> None:
        """The broker answers (``ok``) or not, as seen by ``source``."""
        if ok:
            self._broker_down.pop(source, None)
        elif source not in self._broker_down:
            self._broker_down[source] = (reason or "unreachable", self._clock())
        else:
            self._broker_down[source] = (reason or "unreachable", self._broker_down[source][1])

    def model_loaded(self, model_version: str) -> None:
        """A bundle is loaded, checked and warmed up, and served from now on."""
        self.model_version = model_version

    def outputs_pending(self, topics: Iterable[str]) -> None:
        """The producer has no metadata for these topics yet (readiness waits for them)."""
        self._unknown_outputs.update(topics)

    def output_known(self, topic: str) -> None:
        """The producer knows ``topic``'s partitions: a send to it will not wait for them."""
        self._unknown_outputs.discard(topic)

    def beat(self) -> None:
        """The event loop turned (called by a periodic task)."""
        self._last_beat = self._clock()

    def assigned(self, partitions: Iterable[TP]) -> None:
        """The partitions owned now; progress of the others is forgotten."""
        owned = set(partitions)
        now = self._clock()
        self._progress = {tp: self._progress.get(tp) or _Progress(fine_at=now) for tp in owned}

    def offsets(self, tp: TP, *, position: int | None = None, highwater: int | None = None) -> None:
        """Update a partition's position (next offset to process) and/or high watermark.

        A position only moves forward; moving, or being caught up, counts as progress.
        """
        progress = self._progress.get(tp)
        if progress is None:
            progress = self._progress[tp] = _Progress(fine_at=self._clock())
        if position is not None and (progress.position is None or position > progress.position):
            progress.position = position
            progress.fine_at = self._clock()
        if highwater is not None:
            progress.highwater = highwater
        pos, high = progress.position, progress.highwater
        if pos is not None and high is not None and high <= pos:  # caught up
            progress.fine_at = self._clock()

    # --- reading ----------------------------------------------------------------------------
    def lag(self) -> dict[TP, int]:
        """Records waiting per partition (only where both offsets are known)."""
        return {
            tp: max(p.highwater - p.position, 0)
            for tp, p in self._progress.items()
            if p.highwater is not None and p.position is not None
        }

    def broker_problem(self) -> tuple[str, float] | None:
        """(reason, seconds unreachable) of the longest-standing report, None when fine."""
        if not self._broker_down:
            return None
        reason, since = min(self._broker_down.values(), key=lambda item: item[1])
        return reason, self._clock() - since

    def liveness(self) -> Verdict:
        now = self._clock()
        checks: dict[str, Any] = {}
        problems: list[str] = []
        if self._last_beat is not None:
            idle = now - self._last_beat
            checks["loop_beat_age_s"] = round(idle, 3)
            if idle > self.stall_s:
                problems.append(f"event loop stalled for {idle:.0f}s")
        broker = self.broker_problem()
        if broker is not None:
            checks["broker_down_s"] = round(broker[1], 3)
            if broker[1] > self.stall_s:
                problems.append(f"broker unreachable for {broker[1]:.0f}s: {broker[0]}")
        lag = self.lag()
        checks["lag"] = sum(lag.values())
        for tp, waiting in sorted(lag.items()):
            stuck = now - self._progress[tp].fine_at
            if waiting > 0 and stuck > self.stall_s:
                where = f"{tp[0]}[{tp[1]}]"
                problems.append(f"{where} stuck for {stuck:.0f}s with {waiting} records waiting")
        return Verdict(not problems, "; ".join(problems), checks)

    def readiness(self, group: GroupState) -> Verdict:
        checks: dict[str, Any] = {
            "model_version": self.model_version,
            "assigned": group.assigned,
            "rebalancing": group.rebalancing,
            "recovering": group.recovering,
        }
        problems: list[str] = []
        if self.model_version is None:
            problems.append("no model loaded")
        broker = self.broker_problem()
        checks["broker"] = "ok" if broker is None else "down"
        if broker is not None:
            problems.append(f"broker unreachable: {broker[0]}")
        if not group.joined:
            problems.append("consumer group not joined yet")
        elif group.rebalancing:
            problems.append("rebalancing")
        if group.recovering:
            problems.append("table recovery in progress")
        checks["outputs"] = "pending" if self._unknown_outputs else "ok"
        if self._unknown_outputs:
            problems.append(f"no metadata yet for {', '.join(sorted(self._unknown_outputs))}")
        return Verdict(not problems, "; ".join(problems), checks)
