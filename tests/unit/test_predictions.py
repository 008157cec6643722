"""Model output rows -> the Prediction of INTERFACE.md (stream/predictions.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from nextbehavior.stream.events import Event, Reason, parse_prediction
from nextbehavior.stream.history import Step
from nextbehavior.stream.predictions import (
    build_prediction,
    prediction_records,
    reasons,
    top_items,
    type_distribution,
)

ITEMS = ["[PAD]", "a", "b", "c", "d"]
TYPES = ["[PAD]", "view", "click", "cart"]


def test_type_distribution_drops_padding_and_sums_to_one() -> None:
    probs = np.array([0.2, 0.4, 0.3, 0.1], dtype=np.float32)
    dist = type_distribution(probs, TYPES)
    assert list(dist) == ["view", "click", "cart"]
    assert math.isclose(sum(dist.values()), 1.0, abs_tol=1e-12)
    assert math.isclose(dist["view"], 0.5, rel_tol=1e-6)


def test_type_distribution_of_a_degenerate_row_is_uniform() -> None:
    dist = type_distribution(np.array([1.0, 0.0, np.nan, -1.0], dtype=np.float32), TYPES)
    assert dist == {"view": 1 / 3, "click": 1 / 3, "cart": 1 / 3}


def test_top_items_maps_indices_and_skips_padding_and_out_of_range() -> None:
    ids = np.array([3, 0, 1, 99], dtype=np.int64)
    scores = np.array([0.5, 0.3, 0.1, 0.05], dtype=np.float32)
    got = top_items(ids, scores, ITEMS)
    assert [(i.item_id, round(i.score, 3)) for i in got] == [("c", 0.5), ("a", 0.1)]
    assert all(type(i.score) is float for i in got)


def test_reasons_align_weights_to_known_history_steps() -> None:
    index = {v: i for i, v in enumerate(ITEMS) if i}
    context = [
        Step("e1", "a", "view", 1),
        Step("e2", "unknown", "view", 2),  # skipped by encode: no weight position
        Step("e3", "b", "click", 3),
        Step("e4", "c", "cart", 4),
    ]
    weights = np.array([0.0, 0.0, 0.1, 0.7, 0.2], dtype=np.float32)  # right-aligned, width 5
    got = reasons(context, weights, index, max_len=5, top=2)
    assert [(r.item_id, r.timestamp) for r in got] == [("b", 3), ("c", 4)]
    assert math.isclose(got[0].weight, 0.7, rel_tol=1e-6)


def test_build_prediction_fills_the_contract() -> None:
    event = Event("e7", "u1", "a", "view", 1_700_000_000_000)
    pred = build_prediction(
        event,
        history_length=4,
        top_ids=np.array([2, 1], dtype=np.int64),
        top_scores=np.array([0.6, 0.2], dtype=np.float32),
        type_probs=np.array([0.0, 0.5, 0.25, 0.25], dtype=np.float32),
        items=ITEMS,
        event_types=TYPES,
        model_version="v1",
        predicted_at=1_700_000_000_123,
    )
    again = parse_prediction(pred.to_json())
    assert again == pred
    assert (pred.user_id, pred.event_id, pred.event_timestamp) == ("u1", "e7", event.timestamp)
    assert pred.history_length == 4 and pred.model_version == "v1"
    assert [i.item_id for i in pred.items] == ["b", "a"]
    assert pred.because is None


def test_batch_records_are_byte_for_byte_build_prediction() -> None:
    """The worker's batch path equals one build_prediction(...).to_json() per row: padding and
    out-of-range ids, degenerate type rows, NaN, with and without `because`."""
    rng = np.random.default_rng(0)
    types = ["[PAD]", "view", "click", "cart", "buy", "fav", "share", "rate", "skip", "x"]
    for n_types in (2, 4, 10):
        b, k = 7, 5
        ids = rng.integers(0, len(ITEMS) + 2, (b, k)).astype(np.int64)
        scores = np.sort(rng.random((b, k)).astype(np.float32), axis=1)[:, ::-1]
        probs = rng.random((b, n_types)).astype(np.float32)
        probs[1, 1:] = 0.0  # degenerate rows become uniform
        probs[2, 1] = np.nan
        events = [Event(f"e{r}", f"u{r}", "a", "view", 1_700_000_000_000 + r) for r in range(b)]
        because = [None if r % 2 else [Reason("a", "view", r, 0.25 * r)] for r in range(b)]
        for with_because in (False, True):
            tops: list[Any] = []
            got = prediction_records(
                events,
                list(range(b)),
                top_ids=ids,
                top_scores=scores,
                type_probs=probs,
                items=ITEMS,
                event_types=types[:n_types],
                model_version="v1",
                predicted_at=42,
                because=because if with_because else None,
                tops=tops,
            )
            want = [
                build_prediction(
                    events[r],
                    history_length=r,
                    top_ids=ids[r],
                    top_scores=scores[r],
                    type_probs=probs[r],
                    items=ITEMS,
                    event_types=types[:n_types],
                    model_version="v1",
                    predicted_at=42,
                    because=because[r] if with_because else None,
                ).to_json()
                for r in range(b)
            ]
            assert got == want
            # The tops handed to bookkeeping are what the JSON says.
            bodies = [orjson.loads(raw) for raw in got]
            assert tops == [
                ([i["item_id"] for i in body["items"]], body["next_event_type"]) for body in bodies
            ]
