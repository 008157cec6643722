"""Turning one row of model output into the :class:`Prediction` of INTERFACE.md.

Pure functions over numpy rows. :func:`build_prediction` makes one :class:`Prediction`;
the worker turns a whole scored batch into prediction records at once with
:func:`prediction_records` (the same bytes, much less Python per event).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import orjson

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


def type_distributions(
    probs: npt.NDArray[np.float32], event_types: Sequence[str]
) -> list[dict[str, float]]:
    """:func:`type_distribution` of every row of ``probs`` (B, n_types), in one numpy pass."""
    real = np.asarray(probs[:, 1:], dtype=np.float64)
    real = np.where(np.isfinite(real) & (real > 0), real, 0.0)
    totals = real.sum(axis=1)
    names = event_types[1:]
    uniform = dict.fromkeys(names, 1.0 / len(names))
    rows = (real / np.where(totals > 0.0, totals, 1.0)[:, None]).tolist()
    return [
        dict(zip(names, row, strict=True)) if total > 0.0 else dict(uniform)
        for row, total in zip(rows, totals.tolist(), strict=True)
    ]


Top = tuple[list[str], dict[str, float]]
"""A prediction's top item ids (best first) and its next-event-type distribution."""


def prediction_records(
    events: Sequence[Event],
    history_lengths: Sequence[int],
    *,
    top_ids: npt.NDArray[np.int64],
    top_scores: npt.NDArray[np.float32],
    type_probs: npt.NDArray[np.float32],
    items: Sequence[str],
    event_types: Sequence[str],
    model_version: str,
    predicted_at: int,
    because: Sequence[list[Reason] | None] | None = None,
    tops: list[Top | None] | None = None,
) -> list[bytes]:
    """The JSON record of each row's prediction, for a whole scored batch.

    Byte for byte ``build_prediction(...).to_json()`` of each row (a unit test holds them
    equal), without the per-item objects: the worker's hot path, where building 20
    ``ScoredItem`` and a ``Prediction`` per event cost more than scoring it. With ``tops``,
    each row's :data:`Top` is appended to it.
    """
    n = len(items)
    scores = top_scores.tolist()
    dists = type_distributions(type_probs, event_types)
    out = []
    for row, ids in enumerate(top_ids.tolist()):
        event = events[row]
        ranked = [(items[i], s) for i, s in zip(ids, scores[row], strict=True) if PAD < i < n]
        obj: dict[str, object] = {
            "user_id": event.user_id,
            "event_id": event.event_id,
            "event_timestamp": event.timestamp,
            "predicted_at": predicted_at,
            "model_version": model_version,
            "history_length": history_lengths[row],
            "items": [{"item_id": item, "score": s} for item, s in ranked],
            "next_event_type": dists[row],
        }
        if tops is not None:
            tops.append(([item for item, _ in ranked], dists[row]))
        reasons_row = because[row] if because is not None else None
        if reasons_row is not None:
            obj["because"] = [
                {
                    "item_id": r.item_id,
                    "event_type": r.event_type,
                    "timestamp": r.timestamp,
                    "weight": r.weight,
                }
                for r in reasons_row
            ]
        out.append(orjson.dumps(obj))
    return out
