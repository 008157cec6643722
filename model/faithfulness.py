"""Are history weights faithful? Remove events and watch the model's top-k move.

For every history and every real event in it we delete that event (as if it had never happened:
older events move one step closer, the row stays left-padded) and score again. The *effect* of
an event is the share of the top-k that changes. A faithful weighting puts the largest weight on
an event whose removal changes the answer a lot: we compare the effect of removing the
top-weighted event with the effect of removing a uniformly random event of the same history
(its exact expectation: the mean effect over the row's real events, so no sampling noise), and
the same two excluding the newest event (which usually drives a next-event model most).

Numpy only; the model is any ``scorer(item_ids, event_types) -> (top_ids (B, k), weights
(B, T) | None)``, e.g. a :class:`~nextbehavior.stream.predictor.Predictor`'s ``predict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
Scorer = Callable[[I64, I64], tuple[I64, F32 | None]]


def remove_event(items: I64, types: I64, col: int) -> tuple[I64, I64]:
    """Delete column ``col`` from every row: older events shift one column right (newer)."""
    keep_items = np.concatenate([items[:, :1] * 0, items[:, :col], items[:, col + 1 :]], axis=1)
    keep_types = np.concatenate([types[:, :1] * 0, types[:, :col], types[:, col + 1 :]], axis=1)
    return keep_items, keep_types


def topk_change(before: I64, after: I64) -> npt.NDArray[np.float64]:
    """Per row, the share of ``before``'s top-k ids missing from ``after``'s (0 = same set)."""
    kept = (before[:, :, None] == after[:, None, :]).any(axis=2)  # (B, k)
    return 1.0 - kept.mean(axis=1)  # type: ignore[no-any-return]


def removal_effects(scorer: Scorer, items: I64, types: I64, k: int = 10) -> npt.NDArray[np.float64]:
    """(B, T) top-k change from removing each event (NaN on padding)."""
    base, _ = scorer(items, types)
    effects = np.full(items.shape, np.nan)
    for col in range(items.shape[1]):
        rows = np.flatnonzero(items[:, col] != 0)
        if rows.size:
            removed = remove_event(items[rows], types[rows], col)
            after, _ = scorer(*removed)
            effects[rows, col] = topk_change(base[rows, :k], after[:, :k])
    return effects


@dataclass(frozen=True)
class Faithfulness:
    """Mean top-k change from removing one event, chosen four ways (higher = bigger effect)."""

    rows: int
    k: int
    top_weighted: float  # the event with the largest weight
    random: float  # a uniformly random event (exact expectation)
    top_weighted_older: float  # the largest weight among events other than the newest
    random_older: float  # a random event other than the newest
    best_possible: float  # the event whose removal changes most (leave-one-out oracle)
    newest_first: float  # share of rows whose top-weighted event is the newest

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def faithfulness(
    scorer: Scorer, items: I64, types: I64, weights: F32 | None = None, k: int = 10
) -> Faithfulness:
    """Score ``weights`` (default: the scorer's own) on rows with at least 2 events."""
    real = items != 0
    use = real.sum(axis=1) >= 2
    items, types, real = items[use], types[use], real[use]
    if weights is None:
        _, weights = scorer(items, types)
        if weights is None:
            raise ValueError("the scorer returns no history weights")
    else:
        weights = weights[use]
    effects = removal_effects(scorer, items, types, k)  # (B, T)
    w = np.where(real, weights, -np.inf)
    rows = np.arange(len(items))
    top = w.argmax(axis=1)
    older = real.copy()
    older[:, -1] = False
    top_older = np.where(older, weights, -np.inf).argmax(axis=1)
    return Faithfulness(
        rows=len(items),
        k=k,
        top_weighted=float(effects[rows, top].mean()),
        random=float(np.nanmean(np.where(real, effects, np.nan), axis=1).mean()),
        top_weighted_older=float(effects[rows, top_older].mean()),
        random_older=float(np.nanmean(np.where(older, effects, np.nan), axis=1).mean()),
        best_possible=float(np.nanmax(effects, axis=1).mean()),
        newest_first=float((top == items.shape[1] - 1).mean()),
    )


def cue_hit_rate(weights: F32, cue: I64, top: int = 1) -> float:
    """Share of rows whose ``top`` heaviest events include the planted cue column."""
    order = np.argsort(-weights, axis=1, kind="stable")[:, :top]
    return float((order == cue[:, None]).any(axis=1).mean())
