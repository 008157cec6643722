"""Evaluation of any ranker on a split: full-catalogue ranking metrics, type metrics, baselines.

A ranker turns encoded rows into each row's top-k vocabulary ids (best first, never the
padding id) and next-type probabilities. The torch model (:class:`~.ranker.TorchRanker`) and an
exported bundle (:class:`BundleRanker`, via the ONNX predictor) are both rankers, so
``evaluate --checkpoint`` and ``evaluate --bundle`` share every line below. Torch-free.

History is not masked (like RecBole): an item already in the history may be ranked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from nextbehavior.model.baselines import MarkovRanker, PopularityRanker
from nextbehavior.model.metrics import F32, I64, KS, MetricAccumulator
from nextbehavior.model.sequences import Split, eval_batches

log = logging.getLogger(__name__)


class Ranker(Protocol):
    """What evaluation needs from a model."""

    @property
    def item_index(self) -> Mapping[str, int]: ...
    @property
    def type_index(self) -> Mapping[str, int]: ...
    @property
    def max_len(self) -> int: ...

    def rank(self, item_ids: I64, event_types: I64) -> tuple[I64, F32 | None]:
        """(B, T) encoded rows -> (top ids (B, k), type probabilities (B, n_types) or None)."""
        ...


def evaluate_ranker(
    ranker: Ranker,
    split: Split,
    which: Literal["valid", "test"],
    *,
    batch_size: int = 512,
    ks: tuple[int, ...] = KS,
) -> dict[str, float]:
    """Metrics of ``ranker`` on the ``which`` targets of ``split``."""
    acc = MetricAccumulator()
    for item_ids, event_types, t_items, t_types in eval_batches(
        split, which, dict(ranker.item_index), dict(ranker.type_index), ranker.max_len, batch_size
    ):
        top_ids, type_probs = ranker.rank(item_ids, event_types)
        acc.add(top_ids, t_items, type_probs, t_types)
    return acc.result(ks)


def evaluate_report(
    ranker: Ranker,
    split: Split,
    *,
    baselines: bool = True,
    batch_size: int = 512,
    k: int = max(KS),
) -> dict[str, Any]:
    """The ``evaluate`` JSON: valid and test metrics, sizes, and the two baselines."""
    n_items = len(ranker.item_index) - 1
    report: dict[str, Any] = {
        "valid": evaluate_ranker(ranker, split, "valid", batch_size=batch_size),
        "test": evaluate_ranker(ranker, split, "test", batch_size=batch_size),
        "n_items": n_items,
        "n_users": split.seqs.n_users,
        "data": split.describe(),
    }
    if baselines:
        report["baselines"] = baseline_report(split, ranker.item_index, ranker.type_index, k=k)
    return report


def baseline_report(
    split: Split, item_index: Mapping[str, int], type_index: Mapping[str, int], k: int = max(KS)
) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, cls in (("most_popular", PopularityRanker), ("markov", MarkovRanker)):
        ranker = cls(split, item_index, type_index, k)
        out[name] = {
            which: evaluate_ranker(ranker, split, which, batch_size=2048)
            for which in ("valid", "test")
        }
    return out


class BundleRanker:
    """Adapter: an exported bundle, scored by the torch-free ONNX :class:`Predictor`."""

    def __init__(self, bundle_dir: str | Path, providers: tuple[str, ...] | None = None) -> None:
        from nextbehavior.stream.predictor import Predictor  # the serving path, exactly

        kwargs: dict[str, Any] = {} if providers is None else {"providers": providers}
        self.predictor = Predictor(bundle_dir, **kwargs)
        manifest = self.predictor.manifest
        self.item_index: Mapping[str, int] = self.predictor.item_index
        self.type_index: Mapping[str, int] = self.predictor.type_index
        self.max_len: int = manifest.max_len
        if manifest.top_k < max(KS):
            log.warning("bundle top_k=%d < %d: metrics at larger K miss", manifest.top_k, max(KS))

    def rank(self, item_ids: I64, event_types: I64) -> tuple[I64, F32 | None]:
        out = self.predictor.predict(item_ids, event_types)
        return np.asarray(out.top_ids, dtype=np.int64), np.asarray(out.type_probs, np.float32)
