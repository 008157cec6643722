"""Cold-item holdout: a seeded share of items kept out of training entirely, and metrics split
by whether the test target is a cold or a warm item. Torch-free.

Cold items stay in the catalogue (the text-aware model can rank them from their text) and in
users' histories at evaluation time; only the training events and the validation targets
(model selection) never contain them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from nextbehavior.model.evaluate import Ranker, evaluate_ranker
from nextbehavior.model.metrics import KS, ranking_metrics, target_ranks
from nextbehavior.model.sequences import Sequences, Split, eval_batches
from nextbehavior.model.table import I64

ID_ONLY_DIR = "id_only"
"""Sub-checkpoint of the ID-only reference model trained on the same cold-item split."""


def choose_cold_items(items: Sequence[str], fraction: float, seed: int) -> list[str]:
    """A seeded random ``fraction`` of ``items`` (order-independent: drawn from the sorted ids)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"cold-item fraction must be in [0, 1), got {fraction}")
    pool = sorted(set(items))
    n = round(fraction * len(pool))
    if n == 0:
        return []
    picked = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return sorted(pool[int(i)] for i in picked)


def _item_mask(split: Split, items: Collection[str]) -> npt.NDArray[np.bool_]:
    """(N,) bool over ``split.seqs.order``: the event is one of ``items``."""
    table = split.seqs.table
    wanted = set(items)
    codes = np.array([c for c, name in enumerate(table.items) if name in wanted], dtype=np.int64)
    return np.isin(table.item[split.seqs.order], codes)


def training_without(split: Split, items: Collection[str]) -> Split:
    """The training part of ``split`` with every event of ``items`` removed (no targets): what
    :func:`~nextbehavior.model.sequences.training_windows` should window."""
    seqs = split.seqs
    keep = ~_item_mask(split, items)
    csum = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    starts = seqs.offsets[:-1]
    counts = csum[seqs.offsets[1:]] - csum[starts]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    train_end = csum[starts + split.train_end] - csum[starts]
    none = np.full(seqs.n_users, -1, dtype=np.int64)
    return Split(
        Sequences(seqs.table, seqs.order[keep], offsets), split.kind, train_end, none, none
    )


def target_is(split: Split, which: Literal["valid", "test"], items: Collection[str]) -> I64:
    """Users' ``which`` target flags, in :meth:`Split.targets` order: 1 where it is in ``items``."""
    wanted = set(items)
    users, positions = split.targets(which)
    seqs = split.seqs
    return np.array(
        [seqs.event(int(u), int(p))[0] in wanted for u, p in zip(users, positions, strict=True)],
        dtype=np.int64,
    )


def without_targets(split: Split, items: Collection[str]) -> Split:
    """``split`` with validation targets among ``items`` dropped (model selection never sees
    them); the test targets are kept."""
    users, _ = split.targets("valid")
    valid = split.valid.copy()
    valid[users[target_is(split, "valid", items) == 1]] = -1
    return Split(split.seqs, split.kind, split.train_end, valid, split.test)


def add_cold_warm(
    report: dict[str, Any],
    ranker: Ranker,
    split: Split,
    data: dict[str, Any],
    *,
    reference: Ranker | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``evaluate`` for a model trained with ``--cold-items``: add ``test_cold``/``test_warm``
    (``data["cold_items"]["items"]`` names the held-out items), ``cold_items`` with the chance
    level, and ``id_only``: the ID-only reference model (a ranker, evaluated here on ``split``,
    or the figures recorded at training time). A model without cold items: ``report`` as is."""
    cold = (data.get("cold_items") or {}).get("items") or []
    if not cold:
        return report
    report.update(cold_warm_report(ranker, split, cold))
    n_items = len(ranker.item_index) - 1
    report["cold_items"] = {"n": len(cold), "chance_hit@10": 10 / n_items}
    if isinstance(reference, dict):
        report["id_only"] = reference
    elif reference is not None:
        report["id_only"] = {
            "test": evaluate_ranker(reference, split, "test"),
            **cold_warm_report(reference, split, cold),
            "n_items": len(reference.item_index) - 1,
        }
    return report


def cold_warm_report(
    ranker: Ranker,
    split: Split,
    cold: Collection[str],
    which: Literal["valid", "test"] = "test",
    *,
    ks: tuple[int, ...] = KS,
    batch_size: int = 512,
) -> dict[str, dict[str, Any]]:
    """``{which}_cold`` / ``{which}_warm``: ranking metrics over the targets that are (not)
    cold items, each with ``users``. A target the ranker's vocabulary lacks is a miss."""
    ranks: list[I64] = []
    for item_ids, event_types, t_items, _ in eval_batches(
        split, which, dict(ranker.item_index), dict(ranker.type_index), ranker.max_len, batch_size
    ):
        top_ids, _ = ranker.rank(item_ids, event_types)
        ranks.append(target_ranks(top_ids, t_items))
    all_ranks = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    is_cold = target_is(split, which, cold) == 1
    out: dict[str, dict[str, Any]] = {}
    for name, mask in (("cold", is_cold), ("warm", ~is_cold)):
        metrics: dict[str, Any] = ranking_metrics(all_ranks[mask], ks)
        metrics["users"] = int(mask.sum())
        out[f"{which}_{name}"] = metrics
    return out
