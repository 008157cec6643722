"""Ranking metrics from top-k lists and behavior-type classification metrics (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

KS: tuple[int, ...] = (5, 10, 20)

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


def target_ranks(top_ids: I64, targets: I64) -> I64:
    """0-based rank of each target in its row of ``top_ids`` [B, k]; -1 if absent (or target 0)."""
    hit = (top_ids == targets[:, None]) & (targets[:, None] != 0)  # (B, k)
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1).astype(np.int64)


def ranking_metrics(ranks: I64, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """hit@K, ndcg@K (one relevant item: 1/log2(rank+2)) and mrr@K, averaged over rows."""
    out: dict[str, float] = {}
    n = max(len(ranks), 1)
    found = ranks >= 0
    for k in ks:
        inside = found & (ranks < k)
        r = ranks[inside].astype(np.float64)
        out[f"hit@{k}"] = float(inside.sum() / n)
        out[f"ndcg@{k}"] = float((1.0 / np.log2(r + 2.0)).sum() / n)
        out[f"mrr@{k}"] = float((1.0 / (r + 1.0)).sum() / n)
    return out


def type_metrics(predicted: I64, targets: I64) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1 over the labels present in targets or predictions
    (a label never predicted has precision 0, like scikit-learn with zero_division=0).
    Rows whose target is 0 (a type unknown to the model) are left out."""
    keep = targets != 0
    y, p = targets[keep], predicted[keep]
    if len(y) == 0:
        return {}
    labels = np.union1d(y, p)
    precision, recall, f1 = [], [], []
    for label in labels:
        tp = float(((p == label) & (y == label)).sum())
        n_pred, n_true = float((p == label).sum()), float((y == label).sum())
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_true if n_true else 0.0
        precision.append(prec)
        recall.append(rec)
        f1.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return {
        "type_accuracy": float((p == y).mean()),
        "type_macro_precision": float(np.mean(precision)),
        "type_macro_recall": float(np.mean(recall)),
        "type_macro_f1": float(np.mean(f1)),
    }


@dataclass
class MetricAccumulator:
    """Collects ranks and type predictions batch by batch."""

    ranks: list[I64] = field(default_factory=list)
    type_pred: list[I64] = field(default_factory=list)
    type_true: list[I64] = field(default_factory=list)

    def add(
        self, top_ids: I64, target_items: I64, type_probs: F32 | None, target_types: I64
    ) -> None:
        self.ranks.append(target_ranks(top_ids, target_items))
        if type_probs is not None:
            # never predict the padding type
            self.type_pred.append(type_probs[:, 1:].argmax(axis=1).astype(np.int64) + 1)
            self.type_true.append(target_types)

    def result(self, ks: tuple[int, ...] = KS) -> dict[str, float]:
        ranks = np.concatenate(self.ranks) if self.ranks else np.zeros(0, dtype=np.int64)
        out = ranking_metrics(ranks, ks)
        out["n"] = len(ranks)
        if self.type_pred:
            out.update(type_metrics(np.concatenate(self.type_pred), np.concatenate(self.type_true)))
        return out
