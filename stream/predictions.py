"""Turning one row of model output into the :class:`Prediction` of INTERFACE.md.

Pure functions over numpy rows; the worker calls :func:`build_prediction` once per event of
a scored batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from nextbehavior.stream.events import Event, Prediction, Reason, ScoredItem
from nextbehavior.stream.history import PAD, Step

EXPLAIN_TOP = 3
"""How many history events ``because`` lists."""


def type_distribution(
    probs: npt.NDArray[np.float32], event_types: Sequence[str]
) -> dict[str, float]:
    """``{type: probability}`` over the real types (padding dropped), renormalized to sum to 1.

    A row with no mass on real types (a degenerate model) becomes uniform.
    """
    real = np.asarray(probs[1:], dtype=np.float64)
    real = np.where(np.isfinite(real) & (real > 0), real, 0.0)
    total = float(real.sum())
    names = event_types[1:]
    if total <= 0.0:
        return {name: 1.0 / len(names) for name in names}
    return dict(zip(names, (real / total).tolist(), strict=True))


def top_items(
    ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], items: Sequence[str]
) -> list[ScoredItem]:
    """Raw item ids with scores, best first (padding and out-of-range indices skipped)."""
    n = len(items)
    return [
        ScoredItem(items[i], s)
        for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
        if PAD < i < n
    ]


def model_steps(context: Sequence[Step], item_index: Mapping[str, int], keep: int) -> list[int]:
    """Indices into ``context`` of the steps the model sees: like
    :func:`nextbehavior.stream.history.encode`, the newest ``keep`` steps whose item the
    vocabulary knows, oldest first (so right-aligned with a row of ``history_weights``)."""
    used = [j for j, s in enumerate(context) if s.item_id in item_index]
    return used[-keep:] if keep > 0 else []


def aligned_weights(
    context: Sequence[Step],
    weights: npt.NDArray[np.float32],
    item_index: Mapping[str, int],
    max_len: int,
) -> list[float | None]:
    """One weight per step of ``context`` (None: the step is not in the model's input).

    ``weights`` is the row for this history, one weight per input position, right-aligned
    like the input (:func:`model_steps`).
    """
    used = model_steps(context, item_index, min(max_len, weights.shape[-1]))
    out: list[float | None] = [None] * len(context)
    row = weights[weights.shape[-1] - len(used) :].tolist() if used else []
    for j, w in zip(used, row, strict=True):
        out[j] = float(w)
    return out


def reasons(
    context: Sequence[Step],
    weights: npt.NDArray[np.float32],
    item_index: Mapping[str, int],
    max_len: int,
    top: int = EXPLAIN_TOP,
) -> list[Reason]:
    """The ``top`` history events with the largest weights, heaviest first (ties: newest
    first), aligned as in :func:`aligned_weights`."""
    used = model_steps(context, item_index, min(max_len, weights.shape[-1]))
    if not used:
        return []
    newest_first = weights[weights.shape[-1] - len(used) :][::-1]
    out = []
    for k in np.argsort(-newest_first, kind="stable")[:top].tolist():
        step = context[used[len(used) - 1 - k]]
        out.append(Reason(step.item_id, step.event_type, step.timestamp, float(newest_first[k])))
    return out


def build_prediction(
    event: Event,
    *,
    history_length: int,
    top_ids: npt.NDArray[np.int64],
    top_scores: npt.NDArray[np.float32],
    type_probs: npt.NDArray[np.float32],
    items: Sequence[str],
    event_types: Sequence[str],
    model_version: str,
    predicted_at: int,
    because: list[Reason] | None = None,
) -> Prediction:
    """The prediction for ``event`` from its row of model output."""
    return Prediction(
        user_id=event.user_id,
        event_id=event.event_id,
        event_timestamp=event.timestamp,
        predicted_at=predicted_at,
        model_version=model_version,
        history_length=history_length,
        items=top_items(top_ids, top_scores, items),
        next_event_type=type_distribution(type_probs, event_types),
        because=because,
    )
