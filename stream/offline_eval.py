"""The offline counterpart of the online evaluation: the same (history, next event) pairs.

For a log of events, every event that has a successor for the same user is a prediction point:
the history is the user's events up to and including it (time order, ties in log order, the
newest ``max_len``), the truth is the user's next event. Histories are encoded with
:func:`nextbehavior.stream.history.encode`, scored through a bundle in batches, and the ranks are
turned into figures by ``nextbehavior.model.metrics`` (the training-side metric code, imported
lazily; it needs numpy only). A replay through a live worker must give the same figures
(``nextbehavior monitor``) within noise: this is the check that the streaming path (state,
ordering, batching, the join) does not distort what the model predicts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from nextbehavior.stream.events import Event
from nextbehavior.stream.history import encode
from nextbehavior.stream.predictor import Predictor


def next_event_pairs(
    events: Iterable[Event], max_len: int
) -> tuple[list[list[tuple[str, str]]], list[tuple[str, str]]]:
    """``(histories, truths)``: one pair per event that has a next event of the same user.

    ``events`` are in time order (as a replay sends them); an event id seen before for the
    user is a repeat and is skipped, like the worker does.
    """
    per_user: dict[str, list[tuple[str, str]]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.event_id in seen[e.user_id]:
            continue
        seen[e.user_id].add(e.event_id)
        per_user[e.user_id].append((e.item_id, e.event_type))
    histories: list[list[tuple[str, str]]] = []
    truths: list[tuple[str, str]] = []
    for seq in per_user.values():
        for t in range(1, len(seq)):
            histories.append(seq[max(0, t - max_len) : t])
            truths.append(seq[t])
    return histories, truths


def offline_metrics(
    predictor: Predictor, events: Iterable[Event], *, batch_size: int = 256
) -> dict[str, Any]:
    """hit@K, ndcg@K (K = 5, 10, 20) and type accuracy over every next-event pair of ``events``."""
    from nextbehavior.model.metrics import MetricAccumulator  # lazy: stream never needs model

    histories, truths = next_event_pairs(events, predictor.max_len)
    items, types = predictor.item_index, predictor.type_index
    acc = MetricAccumulator()
    for lo in range(0, len(histories), batch_size):
        hist, tru = histories[lo : lo + batch_size], truths[lo : lo + batch_size]
        item_ids, event_types = encode(hist, items, types, predictor.max_len)
        out = predictor.predict(item_ids, event_types)
        target_items = np.array([items.get(i, 0) for i, _ in tru], dtype=np.int64)
        target_types = np.array([types.get(k, 0) for _, k in tru], dtype=np.int64)
        acc.add(out.top_ids.astype(np.int64), target_items, out.type_probs, target_types)
    result = acc.result()
    keep = ("hit@5", "ndcg@5", "hit@10", "ndcg@10", "hit@20", "ndcg@20", "type_accuracy")
    return {"pairs": len(histories), **{k: result[k] for k in keep if k in result}}
