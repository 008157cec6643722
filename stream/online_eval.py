"""Online evaluation: score each live prediction against the user's next actual event.

A prediction is made after event ``e`` of user ``u``; its truth is ``u``'s next event after
``e`` on the input topic (next in time: a late event, older than the user's newest, is nobody's
"next"). The two arrive on different topics in either order, so the evaluator keeps, per user,
only the newest event, plus two small bounded maps: predictions waiting for their next event,
and next events waiting for their (late) prediction. Scores are hit@K and ndcg@K (the truth's
rank among the predicted items; ``1/log2(rank + 2)``, rank from 0) and whether the most probable
next behavior type was the actual one, over a sliding window of recent predictions and in total.

:class:`OnlineEvaluator` is fed by ``nextbehavior monitor`` (from the topics) and can be fed by
the worker itself (``add_event`` as events are processed, ``add_prediction`` as it predicts).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from nextbehavior.stream.events import Event, Prediction

KS: tuple[int, ...] = (5, 10, 20)


@dataclass(frozen=True, slots=True)
class Score:
    """One scored prediction: ``rank`` of the true next item (None if not predicted)."""

    rank: int | None
    type_correct: bool | None  # None when the prediction carried no type probabilities

    def hit(self, k: int) -> float:
        return 1.0 if self.rank is not None and self.rank < k else 0.0

    def ndcg(self, k: int) -> float:
        return 1.0 / math.log2(self.rank + 2) if self.rank is not None and self.rank < k else 0.0


def top_type(next_event_type: Mapping[str, float]) -> str | None:
    """The most probable type (first one on ties), None if there are none."""
    best: str | None = None
    best_p = -math.inf
    for name, p in next_event_type.items():
        if p > best_p:
            best, best_p = name, p
    return best


def score(
    items: Sequence[str], predicted_type: str | None, next_item: str, next_type: str
) -> Score:
    """Score a ranked item list and a predicted type against the actual next event."""
    try:
        rank: int | None = list(items).index(next_item)
    except ValueError:
        rank = None
    return Score(rank, None if predicted_type is None else predicted_type == next_type)


def summarize(scores: Sequence[Score] | deque[Score], ks: Sequence[int] = KS) -> dict[str, float]:
    """Mean hit@K, ndcg@K and type accuracy of ``scores`` (empty -> zeros)."""
    n = len(scores)
    out: dict[str, float] = {}
    for k in ks:
        out[f"hit@{k}"] = sum(s.hit(k) for s in scores) / n if n else 0.0
        out[f"ndcg@{k}"] = sum(s.ndcg(k) for s in scores) / n if n else 0.0
    typed = [s.type_correct for s in scores if s.type_correct is not None]
    out["type_accuracy"] = sum(typed) / len(typed) if typed else 0.0
    return out


@dataclass
class _Totals:
    n: int = 0
    typed: int = 0
    type_correct: int = 0
    hits: dict[int, float] = field(default_factory=dict)
    ndcgs: dict[int, float] = field(default_factory=dict)

    def add(self, s: Score, ks: Sequence[int]) -> None:
        self.n += 1
        for k in ks:
            self.hits[k] = self.hits.get(k, 0.0) + s.hit(k)
            self.ndcgs[k] = self.ndcgs.get(k, 0.0) + s.ndcg(k)
        if s.type_correct is not None:
            self.typed += 1
            self.type_correct += s.type_correct

    def means(self, ks: Sequence[int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in ks:
            out[f"hit@{k}"] = self.hits.get(k, 0.0) / self.n if self.n else 0.0
            out[f"ndcg@{k}"] = self.ndcgs.get(k, 0.0) / self.n if self.n else 0.0
        out["type_accuracy"] = self.type_correct / self.typed if self.typed else 0.0
        return out


_Key = tuple[str, str]  # (user_id, event_id)
_V = TypeVar("_V")


class OnlineEvaluator:
    """Join predictions with each user's next event and keep running scores. Not thread-safe.

    ``window``: how many recent scored predictions the sliding figures cover. ``max_waiting``:
    bound on each of the two waiting maps (the oldest entries are dropped first and counted
    as ``expired``).
    """

    def __init__(self, ks: Sequence[int] = KS, *, window: int = 1000, max_waiting: int = 100_000):
        if window < 1 or max_waiting < 1:
            raise ValueError("window and max_waiting must be >= 1")
        self.ks = tuple(ks)
        self._topk = max(self.ks)
        self._window: deque[Score] = deque(maxlen=window)
        self._totals = _Totals()
        self._max_waiting = max_waiting
        # per user: newest event id, its timestamp, ids seen at that timestamp (duplicates)
        self._newest: dict[str, tuple[str, int, set[str]]] = {}
        self._waiting_predictions: OrderedDict[_Key, tuple[tuple[str, ...], str | None]] = (
            OrderedDict()
        )
        self._waiting_truths: OrderedDict[_Key, tuple[str, str]] = OrderedDict()
        self._scored_keys: OrderedDict[_Key, None] = OrderedDict()
        self.events = 0
        self.predictions = 0
        self.late_events = 0
        self.duplicate_events = 0
        self.duplicate_predictions = 0
        self.expired = 0

    # --- feeding ----------------------------------------------------------------------------
    def add_event(self, event: Event) -> Score | None:
        return self.observe_event(
            event.user_id, event.event_id, event.item_id, event.event_type, event.timestamp
        )

    def add_prediction(self, prediction: Prediction) -> Score | None:
        return self.observe_prediction(
            prediction.user_id,
            prediction.event_id,
            [i.item_id for i in prediction.items],
            prediction.next_event_type,
        )

    def observe_event(
        self, user_id: str, event_id: str, item_id: str, event_type: str, timestamp: int
    ) -> Score | None:
        """An event from the input topic; returns the score of the prediction it resolves."""
        self.events += 1
        newest = self._newest.get(user_id)
        if newest is not None:
            last_id, last_ts, ids_at_ts = newest
            if timestamp < last_ts:
                self.late_events += 1
                return None
            if event_id == last_id or (timestamp == last_ts and event_id in ids_at_ts):
                self.duplicate_events += 1
                return None
        if newest is not None and newest[1] == timestamp:
            ids = newest[2]
            ids.add(event_id)
        else:
            ids = {event_id}
        self._newest[user_id] = (event_id, timestamp, ids)
        if newest is None:
            return None
        key = (user_id, newest[0])
        waiting = self._waiting_predictions.pop(key, None)
        if waiting is None:
            self._remember(self._waiting_truths, key, (item_id, event_type))
            return None
        return self._record(key, score(waiting[0], waiting[1], item_id, event_type))

    def observe_prediction(
        self,
        user_id: str,
        event_id: str,
        items: Sequence[str],
        next_event_type: Mapping[str, float],
    ) -> Score | None:
        """A prediction; returns its score if its next event is already known."""
        self.predictions += 1
        key = (user_id, event_id)
        if key in self._scored_keys or key in self._waiting_predictions:
            self.duplicate_predictions += 1
            return None
        ranked, predicted_type = tuple(items[: self._topk]), top_type(next_event_type)
        truth = self._waiting_truths.pop(key, None)
        if truth is None:
            self._remember(self._waiting_predictions, key, (ranked, predicted_type))
            return None
        return self._record(key, score(ranked, predicted_type, truth[0], truth[1]))

    # --- reading ----------------------------------------------------------------------------
    @property
    def scored(self) -> int:
        return self._totals.n

    @property
    def window_size(self) -> int:
        """How many scored predictions the sliding figures cover right now."""
        return len(self._window)

    def total(self) -> dict[str, float]:
        """Mean metrics over every scored prediction."""
        return self._totals.means(self.ks)

    def windowed(self) -> dict[str, float]:
        """Mean metrics over the most recent ``window`` scored predictions."""
        return summarize(self._window, self.ks)

    def summary(self) -> dict[str, object]:
        """Everything, as a JSON-ready dict."""
        return {
            "scored": self.scored,
            "events": self.events,
            "predictions": self.predictions,
            "waiting_for_next_event": len(self._waiting_predictions),
            "late_events": self.late_events,
            "duplicate_events": self.duplicate_events,
            "duplicate_predictions": self.duplicate_predictions,
            "expired": self.expired,
            "total": {k: round(v, 6) for k, v in self.total().items()},
            "window": {k: round(v, 6) for k, v in self.windowed().items()},
            "window_size": len(self._window),
        }

    # --- internals --------------------------------------------------------------------------
    def _record(self, key: _Key, s: Score) -> Score:
        self._window.append(s)
        self._totals.add(s, self.ks)
        self._scored_keys[key] = None
        if len(self._scored_keys) > self._max_waiting:
            self._scored_keys.popitem(last=False)
        return s

    def _remember(self, table: OrderedDict[_Key, _V], key: _Key, value: _V) -> None:
        table[key] = value
        if len(table) > self._max_waiting:
            table.popitem(last=False)
            self.expired += 1
