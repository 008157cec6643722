"""Explanations: which past events drove a prediction, and for whom (``nextbehavior explain``).

Torch-free. The weights come from the bundle's ``history_weights`` output (see
``nextbehavior.model.attribution`` for the method); this module rebuilds a user's state from a
log with the worker's own update rule, scores it, and lines the weights up with the events.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from nextbehavior.stream.bundle import WEIGHTS_OUTPUT, BundleError, Manifest
from nextbehavior.stream.events import Event, Prediction
from nextbehavior.stream.history import Step, add_step
from nextbehavior.stream.predictions import aligned_weights, build_prediction, reasons
from nextbehavior.stream.predictor import Predictor

METHOD: Final = "norm-weighted attention rollout with the residual (newest position)"


def require_weights(manifest: Manifest, bundle: Path | str | None) -> None:
    """Raise :class:`BundleError` unless the bundle can explain (has ``history_weights``)."""
    if not manifest.has_weights:
        raise BundleError(
            f"explanations are on but bundle {bundle} has no {WEIGHTS_OUTPUT} output: "
            "re-export it with `nextbehavior export --explain`, or turn explanations off"
        )


def user_state(
    events: Iterable[Event], *, max_len: int, horizon_ms: int | None
) -> tuple[list[Step], Event | None]:
    """The state the worker would hold after ``events`` (one user's, in arrival order), and
    the last new event (the one whose prediction is explained); repeats of an id are dropped."""
    state: list[Step] = []
    last: Event | None = None
    for ev in events:
        step = Step(ev.event_id, ev.item_id, ev.event_type, ev.timestamp)
        state, changed = add_step(state, step, max_len=max_len, horizon_ms=horizon_ms)
        if changed:
            last = ev
    return state, last


@dataclass(frozen=True)
class Explanation:
    """A user's history (oldest first) with each event's weight, and the prediction."""

    history: list[Step]
    weights: list[float | None]  # None: the model does not know the item (not in its input)
    prediction: Prediction

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.prediction.user_id,
            "model_version": self.prediction.model_version,
            "method": METHOD,
            "history": [
                {
                    "event_id": s.event_id,
                    "item_id": s.item_id,
                    "event_type": s.event_type,
                    "timestamp": s.timestamp,
                    "weight": w,
                }
                for s, w in zip(self.history, self.weights, strict=True)
            ],
            "prediction": self.prediction.to_dict(),
        }


def explain(predictor: Predictor, state: list[Step], event: Event) -> Explanation:
    """Score ``state`` (the history after ``event``) and explain it, as the worker would."""
    require_weights(predictor.manifest, predictor.bundle_dir)
    out = predictor.predict_histories([state])
    assert out.weights is not None  # require_weights
    manifest = predictor.manifest
    prediction = build_prediction(
        event,
        history_length=len(state),
        top_ids=out.top_ids[0],
        top_scores=out.top_scores[0],
        type_probs=out.type_probs[0],
        items=manifest.items,
        event_types=manifest.event_types,
        model_version=manifest.model_version,
        predicted_at=int(time.time() * 1000),
        because=reasons(state, out.weights[0], predictor.item_index, predictor.max_len),
    )
    weights = aligned_weights(state, out.weights[0], predictor.item_index, predictor.max_len)
    return Explanation(state, weights, prediction)
