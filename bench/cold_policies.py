"""How a text-aware model could serve its text-only (cold) items: the trade-off, measured.

Usage: .venv/bin/python bench/cold_policies.py [--checkpoint runs/cold_items]
       [--data /work/shared/data/ml-100k.inter] [--threads 1] [--json F]

Reads a checkpoint written by ``bench/cold_items.py`` (a text-aware model trained with
``--cold-items``) and scores the same leave-one-out targets under several serving policies for
text-only rows. Warm items are always ranked by the model's warm rows (the ID-only ranking):

- ``never``: text-only rows are never shown (what calibration chose on ML-100K);
- ``offset b``: text-only rows compete with warm rows, their logits shifted by ``b`` (scale 1);
- ``slot p``: a reserved cold slot, the best text-only item inserted at rank ``p`` of the warm
  top 10 (the warm items from rank ``p`` on move down one, the 10th drops out), always, or only
  when its logit minus the logit of the warm item it displaces is at least a threshold ``t``;
- ``last m``: the ``m`` best text-only items take ranks ``11 - m`` .. 10;
- ``mixture``: per user, a two-part probability: ``(1 - pi) * softmax over warm rows`` and
  ``pi * softmax over text-only rows``, ``pi`` the share of validation targets that are stand-ins
  (unlike an offset, each part is normalized per user: a flat warm ranking lets text rows in).

Each policy is scored on validation and on test. On validation, as calibration does
(``model.text_side``), a seeded 10% of warm items stand in for cold ones (text rows, dropped from
histories); the real cold items are left out of that pool, so that its size is the test pool's.
The gated slot's threshold is chosen on validation only: the most stand-in hits among
thresholds that keep validation warm NDCG@10 >= 98% of ``never`` ("never" is a candidate).
Test targets are split into cold (a held-out item) and warm as ``evaluate`` splits them.
Also printed: how often the target is first among text-only items alone (all a single slot can
convert into hits), and, for the stand-ins, the same with their trained ID rows instead; and two
rankings that use no model at all: the cosine of each item's text vector to that of the user's
newest readable (warm) history item, and popularity (every item's event count in the whole log,
the held-out items' own events included: an oracle no text model has).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
import torch

from nextbehavior.model.checkpoint import load_checkpoint
from nextbehavior.model.cold_split import target_is, without_targets
from nextbehavior.model.loaders import load_events
from nextbehavior.model.sequences import Split, build_sequences, eval_batches, make_split
from nextbehavior.model.text_side import holdout_items
from nextbehavior.model.train import TrainConfig
from nextbehavior.model.transformer import BehaviorTransformer

F = npt.NDArray[np.float64]
Ranks = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
MISS = 10**6
WARM_FLOOR = 0.98


@torch.no_grad()
def logits_of(
    model: BehaviorTransformer,
    split: Split,
    which: Literal["valid", "test"],
    items: list[str],
    types: list[str],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Item logits (N, V) (padding -inf) and targets (N,) of ``split``'s ``which`` targets."""
    ii = {n: i for i, n in enumerate(items)}
    ti = {n: i for i, n in enumerate(types)}
    out, ys = [], []
    for x, t, y, _ in eval_batches(split, which, ii, ti, model.cfg.max_len):
        logits, _, _ = model(torch.from_numpy(x), torch.from_numpy(t))
        logits[:, 0] = float("-inf")
        out.append(logits.float().numpy())
        ys.append(y)
    return np.concatenate(out), np.concatenate(ys)


def last_readable(
    split: Split, which: Literal["valid", "test"], items: list[str], readable: B, max_len: int
) -> Ranks:
    """(N,) each ``which`` target's newest history item that ``readable`` allows (0: none)."""
    ii = {n: i for i, n in enumerate(items)}
    out = []
    for x, _, _, _ in eval_batches(split, which, ii, {}, max_len):
        ok = readable[x] & (x > 0)
        newest = max_len - 1 - np.argmax(ok[:, ::-1], axis=1)
        out.append(np.where(ok.any(1), x[np.arange(len(x)), newest], 0))
    return np.concatenate(out)


def content_only(
    text: F, last: Ranks, counts: F
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Model-free scores (N, V): text cosine to the newest readable item; popularity."""
    unit = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    return unit[last] @ unit.T, np.broadcast_to(counts, (len(last), len(counts)))


class World:
    """One set of targets: warm rows rank ``warm`` items, text-only rows the ``pool`` items."""

    def __init__(self, logits: Any, y: Any, warm: B, pool: B, cold_target: B) -> None:
        n = len(y)
        self.logits, self.y, self.warm, self.pool, self.cold = logits, y, warm, pool, cold_target
        lw = np.where(warm[None], logits, -np.inf)
        self.warm_top = -np.sort(-lw, axis=1)[:, :10]  # (N, 10) warm logits, best first
        tgt = logits[np.arange(n), y]
        rank = (lw > tgt[:, None]).sum(1)
        self.warm_rank = np.where(warm[y] & (y > 0), rank, MISS)  # among warm items
        lc = np.where(pool[None], logits, -np.inf)
        self.cold_best = lc.max(1)
        rank = (lc > tgt[:, None]).sum(1)
        self.cold_rank = np.where(pool[y] & (y > 0), rank, MISS)  # among text-only items

    def slot(self, p: int, fire: B) -> tuple[Ranks, B]:
        """NDCG@10 gains (N,) and cold hits (N,) with the best text-only item at rank ``p``
        where ``fire``."""
        down = fire & (self.warm_rank >= p - 1) & (self.warm_rank < 10)
        r = np.where(down, self.warm_rank + 1, self.warm_rank)
        hit = fire & (self.cold_rank == 0)
        return np.where(hit, p - 1, r), hit

    def last(self, m: int) -> tuple[Ranks, B]:
        r = np.where(self.warm_rank < 10 - m, self.warm_rank, MISS)
        hit = self.cold_rank < m
        return np.where(hit, 10 - m + self.cold_rank, r), hit

    def offset(self, b: float) -> tuple[Ranks, B]:
        return self.offset_of(np.where(self.warm[None], self.logits, self.logits + b))

    def offset_of(self, scores: F) -> tuple[Ranks, B]:
        """Ranks and cold hits when warm and text-only rows compete by ``scores`` (N, V)."""
        s = np.where((self.warm | self.pool)[None], scores, -np.inf)
        n = len(self.y)
        rank = (s > s[np.arange(n), self.y][:, None]).sum(1)
        ok = (self.warm | self.pool)[self.y] & (self.y > 0)
        rank = np.where(ok, rank, MISS)
        return rank, self.pool[self.y] & (rank < 10)

    def mixture(self, pi: float) -> tuple[Ranks, B]:
        def log_softmax(mask: B) -> F:
            s = np.where(mask[None], self.logits, -np.inf)
            top = s.max(1, keepdims=True)
            return s - top - np.log(np.exp(s - top).sum(1, keepdims=True))  # type: ignore[no-any-return]

        warm, pool = log_softmax(self.warm) + np.log1p(-pi), log_softmax(self.pool) + np.log(pi)
        return self.offset_of(np.where(self.warm[None], warm, pool))

    def margin(self, p: int) -> F:
        return self.cold_best - self.warm_top[:, p - 1]  # type: ignore[no-any-return]

    def score(self, ranks: Ranks, hits: B) -> dict[str, float]:
        gain = np.where(ranks < 10, 1.0 / np.log2(np.minimum(ranks, 10) + 2.0), 0.0)
        return {
            "ndcg@10": float(gain.mean()),
            "warm_ndcg@10": float(gain[~self.cold].mean()),
            "cold_hit@10": float((hits & self.cold)[self.cold].mean()) if self.cold.any() else 0.0,
        }

    def among_cold(self) -> list[float]:
        r = self.cold_rank[self.cold & (self.cold_rank < MISS)]
        return [float((r < k).sum() / max(1, self.cold.sum())) for k in (1, 5, 10)]


def policies(w: World, gate: float, pi: float) -> dict[str, dict[str, float]]:
    never = np.zeros(len(w.y), dtype=np.bool_)
    always = ~never
    out = {"never": w.score(*w.slot(10, never))}
    for b in (0.0, -1.0, -2.0):
        out[f"offset {b:+g}"] = w.score(*w.offset(b))
    for p in (1, 5, 10):
        out[f"slot {p}, always"] = w.score(*w.slot(p, always))
    out[f"slot 10, margin >= {gate:.2f}"] = w.score(*w.slot(10, w.margin(10) >= gate))
    for m in (2, 3):
        out[f"last {m}, always"] = w.score(*w.last(m))
    out[f"mixture, pi {pi:.3f}"] = w.score(*w.mixture(pi))
    return out


def choose_gate(w: World) -> float:
    """The slot-10 margin threshold with the most stand-in hits, validation warm NDCG@10 >= 98%
    of never's (ties: higher NDCG@10); ``inf`` (never) is a candidate."""
    base = w.score(*w.slot(10, np.zeros(len(w.y), dtype=np.bool_)))["warm_ndcg@10"]
    margin = w.margin(10)
    best = (0.0, base, float("inf"))
    for t in np.unique(np.quantile(margin, np.linspace(0, 1, 201))):
        s = w.score(*w.slot(10, margin >= t))
        if s["warm_ndcg@10"] >= WARM_FLOOR * base and (s["cold_hit@10"], s["ndcg@10"]) > best[:2]:
            best = (s["cold_hit@10"], s["ndcg@10"], float(t))
    return best[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/cold_items"))
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/ml-100k.inter"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.checkpoint)
    model, table = ck.model.eval(), ck.model.item_text
    cold = (ck.data.get("cold_items") or {}).get("items") or []
    if table is None or not cold:
        raise SystemExit(f"{args.checkpoint}: not a text-aware model trained with --cold-items")
    events = load_events(args.data, progress=False)
    split = make_split(build_sequences(events), TrainConfig().split)
    select = without_targets(split, cold)
    warm = (table.warm > 0).numpy().copy()
    real = np.zeros_like(warm)
    real[[i for i, n in enumerate(ck.items) if n in set(cold)]] = True
    fraction = float(ck.data["cold_items"].get("fraction") or 0.1)
    stand_in = holdout_items(warm, fraction, int(ck.metrics.get("train_config", {}).get("seed", 0)))
    table.cold_scale.fill_(1.0)
    table.cold_bias.fill_(0.0)
    test_logits, test_y = logits_of(model, split, "test", ck.items, ck.event_types)
    id_logits, valid_y = logits_of(model, select, "valid", ck.items, ck.event_types)
    table.warm[torch.from_numpy(stand_in)] = 0.0
    valid_logits, _ = logits_of(model, select, "valid", ck.items, ck.event_types)
    not_pad = np.arange(len(warm)) > 0
    valid = World(valid_logits, valid_y, warm & ~stand_in, stand_in, stand_in[valid_y])
    test = World(test_logits, test_y, warm, ~warm & not_pad, target_is(split, "test", cold) == 1)
    ceiling = World(id_logits, valid_y, warm & ~stand_in, stand_in, stand_in[valid_y])
    gate = choose_gate(valid)
    pi = float(valid.cold.mean())  # the prior of a stand-in target, from validation
    rows = {"valid": policies(valid, gate, pi), "test": policies(test, gate, pi)}
    chance = 10 / (len(ck.items) - 1)
    print(f"{args.checkpoint}: {int(real.sum())} cold items, {int(test.cold.sum())} cold test "
          f"targets, {int(valid.cold.sum())} stand-in validation targets; chance hit@10 "
          f"{chance:.4f}")  # fmt: skip
    print("| policy | valid NDCG@10 | valid warm | valid stand-in hit@10 | test NDCG@10 | "
          "test warm NDCG@10 | test cold hit@10 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    v0, t0 = rows["valid"]["never"], rows["test"]["never"]
    for name in rows["test"]:
        v, t = rows["valid"][name], rows["test"][name]
        print(f"| {name} | {v['ndcg@10']:.4f} | {v['warm_ndcg@10'] / v0['warm_ndcg@10']:.1%} | "
              f"{v['cold_hit@10']:.3f} | {t['ndcg@10']:.4f} | {t['warm_ndcg@10']:.4f} "
              f"({t['warm_ndcg@10'] / t0['warm_ndcg@10']:.1%}) | {t['cold_hit@10']:.3f} "
              f"({t['cold_hit@10'] / chance:.1f}x) |")  # fmt: skip
    among = {"test, text rows": test.among_cold(), "valid stand-ins, text rows": valid.among_cold(),
             "valid stand-ins, their ID rows": ceiling.among_cold()}  # fmt: skip
    index = {n: i for i, n in enumerate(ck.items)}
    code_to_id = np.array([index.get(name, 0) for name in events.items], dtype=np.int64)
    counts = np.bincount(code_to_id[events.item], minlength=len(ck.items)).astype(np.float64)
    text = table.text.numpy().astype(np.float64)
    sides: list[tuple[str, World, Literal["valid", "test"], Split, B]] = [
        ("test", test, "test", split, warm),
        ("valid stand-ins", valid, "valid", select, valid.warm),
    ]
    for name, w, which, sp, readable in sides:
        last = last_readable(sp, which, ck.items, readable, model.cfg.max_len)
        cosine, popular = content_only(text, last, counts)
        for label, s in (
            ("text cosine to the newest warm history item", cosine),
            ("popularity (oracle)", popular),
        ):
            among[f"{name}, {label}"] = World(s, w.y, w.warm, w.pool, w.cold).among_cold()
    for name, (h1, h5, h10) in among.items():
        print(f"target among text-only items alone, {name}: hit@1 {h1:.3f}, @5 {h5:.3f}, "
              f"@10 {h10:.3f}")  # fmt: skip
    print("command: " + " ".join([".venv/bin/python", *sys.argv]))
    if args.json:
        summary = {"policies": rows, "gate": gate, "chance_hit@10": chance, "among_cold": among}
        args.json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
