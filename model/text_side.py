"""The text side of a text-aware model, trained next to a finished ID model, and calibrated.

Warm items are served exactly as the ID-only model serves them; only items without training
events (held-out cold items, catalogue-only items, items added later) get a row from their
text (``model.text_items``). Three steps, none of which changes the ID model:

1. :func:`with_id_model`: the text-aware model starts as a copy of the trained ID model (its
   Transformer, heads and warm items' ID embeddings).
2. :func:`train_text_side`: the text projection (and the neighbour weights) learn on the ID
   model's frozen states at every training position. Pseudo-cold: at each step a random share
   of the candidate items is scored through its text row (plus a learned offset) among the
   others' ID rows, so text rows learn to compete with warm rows; an auxiliary loss ranks the
   targets among text rows alone (the order among cold items).
3. :func:`calibrate_cold_bias`: the offset of text-only rows is chosen on the validation
   targets to maximize NDCG@10 over all of them. A seeded share of warm items (``holdout``)
   takes part in no text training and plays the cold items there: their rows (input and
   output) are text rows during calibration. ``-inf`` (text rows never ranked: the ID-only
   model) is a candidate, so validation NDCG@10 never falls below the ID-only model's.
   Held-out cold items' events play no part in any step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from nextbehavior.model.sequences import Split, Windows, eval_batches
from nextbehavior.model.transformer import BehaviorTransformer

log = logging.getLogger(__name__)

BIAS_GRID = np.arange(-12.0, 12.01, 0.25)
"""Finite candidates for the cold-row logit offset, next to ``-inf`` (logits are O(10))."""
SCALES = (0.5, 1.0, 2.0)
"""Candidates for the cold rows' logit scale."""


@dataclass(frozen=True)
class SideConfig:
    epochs: int = 30
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 0.01
    pseudo_cold: float = 0.1  # share of candidate items scored by text at each step
    text_aux: float = 0.5  # weight of the text-rows-only ranking loss
    seed: int = 0


def with_id_model(
    id_model: BehaviorTransformer, id_items: list[str], text_model: BehaviorTransformer,
    items: list[str],
) -> None:  # fmt: skip
    """Copy ``id_model``'s weights into ``text_model`` (item rows matched by id; items the ID
    model lacks keep zero ID rows, they are served from text)."""
    state = {k: v for k, v in id_model.state_dict().items() if k != "item_emb.weight"}
    missing, unexpected = text_model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(("item_text.", "item_emb.")) for k in missing):
        raise ValueError(f"ID model and text model differ: {missing} {unexpected}")
    index = {name: i for i, name in enumerate(id_items)}
    src = torch.tensor([index.get(name, -1) for name in items])
    with torch.no_grad():
        emb = text_model.item_emb.weight
        emb.zero_()
        known = src >= 0
        emb[known] = id_model.item_emb.weight[src[known]].to(emb)


@torch.no_grad()
def scored_states(
    model: BehaviorTransformer, windows: Windows, batch_size: int = 256
) -> tuple[Tensor, Tensor]:
    """The model's (eval mode) final states at every scored training position and their
    targets -> ((N, d), (N,))."""
    model.eval()
    device = model.item_emb.weight.device
    states: list[Tensor] = []
    targets: list[Tensor] = []
    for lo in range(0, len(windows), batch_size):
        x = torch.from_numpy(windows.items[lo : lo + batch_size, :-1]).to(device)
        t = torch.from_numpy(windows.types[lo : lo + batch_size, :-1]).to(device)
        y = torch.from_numpy(windows.targets[lo : lo + batch_size]).to(device)
        scored = y != 0
        states.append(model.hidden(x, t)[scored])
        targets.append(y[scored])
    return torch.cat(states), torch.cat(targets)


def train_text_side(
    model: BehaviorTransformer, states: Tensor, targets: Tensor, candidates: Tensor,
    sc: SideConfig,
) -> list[float]:  # fmt: skip
    """Train ``model.item_text``'s projection and neighbour weights on fixed ``states``
    (pseudo-cold, see the module doc); ``candidates`` (V,) bool: the items that may be
    scored (warm, not held out). Sets ``cold_bias`` to the learned offset. -> epoch losses."""
    table = model.item_text
    if table is None:
        raise ValueError("the model has no text item table")
    gen = torch.Generator(device=states.device).manual_seed(sc.seed)
    params = [p for n, p in table.named_parameters() if not n.startswith("warm_proj")]
    offset = torch.nn.Parameter(torch.zeros((), device=states.device))
    groups: list[dict[str, Any]] = [
        {"params": params, "weight_decay": sc.weight_decay},
        {"params": [offset], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=sc.lr)
    id_rows = model.item_emb.weight.detach()
    keep = candidates[targets]
    states, targets = states[keep], targets[keep]
    table.train()
    losses: list[float] = []
    for _ in range(sc.epochs):
        order = torch.randperm(len(targets), generator=gen, device=states.device)
        total = 0.0
        for lo in range(0, len(order), sc.batch_size):
            idx = order[lo : lo + sc.batch_size]
            h, y = states[idx], targets[idx]
            rows = table.text_rows(id_rows)  # (V, d)
            drawn = torch.rand(len(candidates), generator=gen, device=states.device)
            pseudo = (drawn < sc.pseudo_cold) & candidates  # (V,)
            mixed = torch.where(pseudo[:, None], rows, id_rows)  # (V, d)
            logits = (h @ mixed.T + offset * pseudo).masked_fill(~candidates, float("-inf"))
            loss = F.cross_entropy(logits, y)
            if sc.text_aux > 0:
                text_logits = (h @ rows.T).masked_fill(~candidates, float("-inf"))
                loss = loss + sc.text_aux * F.cross_entropy(text_logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / max(1, len(targets)))
    table.eval()
    with torch.no_grad():
        table.cold_bias.fill_(float(offset))
    return losses


def holdout_items(warm: npt.NDArray[np.bool_], fraction: float, seed: int) -> npt.NDArray[np.bool_]:
    """A seeded ``fraction`` of the warm items (V,) bool: calibration's stand-in cold items."""
    pool = np.flatnonzero(warm)
    n = min(len(pool) - 1, max(1, round(fraction * len(pool)))) if len(pool) > 1 else 0
    out = np.zeros_like(warm)
    out[np.random.default_rng(seed + 7).choice(pool, size=n, replace=False)] = True
    return out


@torch.no_grad()
def calibrate_cold_bias(
    model: BehaviorTransformer,
    split: Split,
    items: list[str],
    event_types: list[str],
    holdout: npt.NDArray[np.bool_],
    *,
    tolerance: float = 0.0,
    scales: tuple[float, ...] = SCALES,
    grid: npt.NDArray[np.float64] = BIAS_GRID,
) -> dict[str, Any]:
    """Choose ``model.item_text``'s ``cold_scale`` and ``cold_bias`` (set in place) to
    maximize NDCG@10 over ``split``'s validation targets, ``holdout`` items served by text
    meanwhile (module doc). ``tolerance`` > 0: the candidate with the best NDCG@10 on the
    stand-in targets among those within ``tolerance`` (relative) of the best overall.
    -> the choice, and each candidate's (overall, stand-in) NDCG@10."""
    table = model.item_text
    if table is None:
        raise ValueError("the model has no text item table")
    model.eval()
    device = model.item_emb.weight.device
    warm = table.warm.clone()
    table.warm[torch.from_numpy(holdout).to(device)] = 0.0
    table.cold_bias.zero_()
    results: dict[tuple[float, float], tuple[float, float]] = {}  # (all, stand-in targets)
    try:
        is_cold = (table.warm == 0).cpu()
        is_cold[0] = False
        for scale in scales:
            table.cold_scale.fill_(scale)
            scores, targets = _valid_logits(model, split, items, event_types)
            stand_in = is_cold[targets] & (targets > 0)
            for b in (float("-inf"), *(float(b) for b in grid)):
                gains = _ndcg10(scores, targets, is_cold, b)
                results[(scale, b)] = (_mean(gains), _mean(gains[stand_in]))
    finally:
        table.warm.copy_(warm)
    warm_only = results[(scales[0], float("-inf"))][0]
    top = max(r[0] for r in results.values())
    # the most stand-in NDCG among candidates within `tolerance` of the best; -inf wins ties
    ok = [k for k, r in results.items() if r[0] >= top * (1 - tolerance)]
    best = max(ok, key=lambda k: (results[k][1], results[k][0], k[1] == float("-inf")))
    if best[1] == float("-inf"):
        best = (1.0, best[1])
    table.cold_scale.fill_(best[0])
    table.cold_bias.fill_(best[1])
    value, stand_in_value = results[best] if best in results else results[(scales[0], best[1])]
    log.info(
        "cold rows: scale %.2f, bias %.2f: validation NDCG@10 %.4f (warm rows only: %.4f), "
        "%d stand-in items", best[0], best[1], value, warm_only, int(holdout.sum()),
    )  # fmt: skip
    return {
        "cold_scale": best[0],
        "cold_bias": best[1] if np.isfinite(best[1]) else "-inf",  # JSON has no -inf
        "tolerance": tolerance,
        "valid_ndcg@10": value,
        "valid_ndcg@10_warm_rows_only": warm_only,
        "valid_stand_in_ndcg@10": stand_in_value,
        "holdout_items": int(holdout.sum()),
        "valid_users": len(targets),
        "grid": {f"{s:g}/{b:g}": [round(v, 5) for v in r] for (s, b), r in results.items()},
    }


def _mean(x: Tensor) -> float:
    return float(x.mean()) if len(x) else 0.0


def _valid_logits(
    model: BehaviorTransformer, split: Split, items: list[str], event_types: list[str]
) -> tuple[Tensor, Tensor]:
    """Validation logits (N, V) (padding -inf) and targets (N,) (0 = unknown item)."""
    device = model.item_emb.weight.device
    item_index = {n: i for i, n in enumerate(items)}
    type_index = {n: i for i, n in enumerate(event_types)}
    base, tgt = [], []
    for x, t, y, _ in eval_batches(split, "valid", item_index, type_index, model.cfg.max_len):
        logits, _, _ = model(torch.from_numpy(x).to(device), torch.from_numpy(t).to(device))
        logits[:, 0] = float("-inf")
        base.append(logits.float().cpu())
        tgt.append(torch.from_numpy(y))
    return torch.cat(base), torch.cat(tgt)


def _ndcg10(scores: Tensor, targets: Tensor, is_cold: Tensor, bias: float) -> Tensor:
    """(N,) NDCG@10 gains of ``targets`` (0 = unknown: a miss) when cold columns get ``bias``."""
    s = scores.masked_fill(is_cold, bias) if bias == float("-inf") else scores + bias * is_cold
    target_score = s.gather(1, targets.clamp(min=0)[:, None])  # (N, 1)
    rank = (s > target_score).sum(1)  # 0 = first
    hit = (targets > 0) & (rank < 10) & torch.isfinite(target_score[:, 0])
    return torch.where(hit, 1.0 / torch.log2(rank.float() + 2.0), torch.zeros(()))
