"""Explanations: faithfulness of ``history_weights`` (ML-100K and synthetic) and their cost.

    .venv/bin/python bench/explain.py [--checkpoint runs/ml100k] [--rows 500] [--seconds 2]

Faithfulness (``nextbehavior.model.faithfulness``), on the served bundle (ONNX Runtime): for each
test history, remove one event and measure how much of the top-10 changes. Compared: the
top-weighted event vs a uniformly random event (exact expectation over the row's events), and
the same two among the events before the newest; ``best`` is the leave-one-out oracle. Also the
drop in the test target's log-probability (torch model). The same is computed for three
alternatives the method was chosen over (last-block attention averaged over heads; plain
rollout with the residual fixed at 0.5; |gradient x input| of the top item's log-probability),
from torch on the same rows.
Synthetic: planted-cue histories (``model.synthetic_cue``; the next item depends on one earlier
purchase), with 1 and 2 blocks: how often the cue is the top-weighted event (and in the top 3
that ``because`` lists), plus the removal test.
Cost: ``Predictor.predict`` sequences/s on ML-100K test histories with and without the
``history_weights`` output (two bundles from one checkpoint, timed alternately), and the cost
of building ``because`` per prediction. ML-100K checkpoint: ``--checkpoint`` if present, else
``nextbehavior train`` with its defaults (and ``--max-minutes``) into that directory.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

from nextbehavior.export.writer import export_bundle
from nextbehavior.model.checkpoint import load_checkpoint, save_checkpoint
from nextbehavior.model.faithfulness import cue_hit_rate, faithfulness, remove_event
from nextbehavior.model.loaders import load_events
from nextbehavior.model.sequences import build_sequences, eval_batches, leave_one_out
from nextbehavior.model.synthetic_cue import EVENT_TYPES, CueConfig, cue_rows, train_cue_model
from nextbehavior.model.transformer import BehaviorTransformer, attention_mask
from nextbehavior.stream.history import Step
from nextbehavior.stream.predictions import reasons
from nextbehavior.stream.predictor import Predictor

I64 = np.ndarray
ALTERNATIVES = ("last-block attention", "plain rollout (0.5 residual)", "gradient x input")


def embed(model: BehaviorTransformer, items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
    """The input of the first block (B, T, d), as ``BehaviorTransformer.hidden`` builds it."""
    t = items.shape[1]
    pos = torch.arange(t - 1, -1, -1).clamp(max=model.cfg.max_len - 1)
    x = model.item_emb(items) * math.sqrt(model.cfg.d_model)
    return (x + model.type_emb(types) + model.pos_emb(pos)[None]) * (items != 0)[..., None]


def grad_x_input(model: BehaviorTransformer, items: torch.Tensor, types: torch.Tensor) -> I64:
    """|gradient x input| of the top item's log-probability, per position (needs autograd)."""
    x0 = embed(model, items, types).detach().requires_grad_(True)
    x, mask = x0, attention_mask(items)
    for block in model.blocks:
        x = block(x, mask)
    logits = model.item_logits(model.ln_f(x)[:, -1])
    logits[:, 0] = float("-inf")
    logits.log_softmax(1).max(1).values.sum().backward()
    assert x0.grad is not None
    return (x0.grad * x0).sum(-1).abs().detach().numpy()


def attention_maps(model: BehaviorTransformer, items: torch.Tensor, types: torch.Tensor) -> list:
    """Each block's attention probabilities (B, h, T, T), eval mode."""
    t = items.shape[1]
    x = embed(model, items, types)
    mask = attention_mask(items)
    maps = []
    for block in model.blocks:
        d, nh = x.shape[2], block.attn.n_heads
        q, k, _ = block.attn.qkv(block.ln1(x)).split(d, dim=2)
        q, k = (z.reshape(len(x), t, nh, d // nh).transpose(1, 2) for z in (q, k))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // nh)
        maps.append(att.masked_fill(~mask, float("-inf")).softmax(-1))
        x = block(x, mask)
    return maps


def alternatives(model: BehaviorTransformer, items: I64, types: I64) -> dict[str, I64]:
    """Weights of the methods not chosen: last-block attention, plain (0.5) rollout, gradient x
    input (torch only: no ONNX inference graph has autograd)."""
    it, ty = torch.from_numpy(items), torch.from_numpy(types)
    grad = grad_x_input(model.eval(), it, ty)
    with torch.no_grad():
        maps = attention_maps(model, it, ty)
    eye = torch.eye(items.shape[1])[None]
    rollout = None
    for att in maps:  # (B, h, T, T)
        mix = 0.5 * att.mean(1) + 0.5 * eye
        rollout = mix if rollout is None else mix @ rollout
    assert rollout is not None
    return {
        "last-block attention": maps[-1][:, :, -1].mean(1).detach().numpy(),
        "plain rollout (0.5 residual)": rollout[:, -1].detach().numpy(),
        "gradient x input": grad,
    }


def scorer_of(predictor: Predictor) -> Any:
    def score(items: I64, types: I64) -> tuple[I64, I64 | None]:
        out = predictor.predict(items, types)
        return out.top_ids, out.weights

    return score


@torch.no_grad()
def target_drop(
    model: BehaviorTransformer, items: I64, types: I64, target: I64, weights: I64
) -> tuple[float, float]:
    """Mean drop in log p(target): removing the top-weighted event vs a random one."""

    def logp(i: I64, t: I64) -> I64:
        logits, _, _ = model(torch.from_numpy(i), torch.from_numpy(t))
        logits[:, 0] = float("-inf")
        return logits.log_softmax(1).gather(1, torch.from_numpy(target)[:, None])[:, 0].numpy()

    base = logp(items, types)
    drops = np.full(items.shape, np.nan)
    for col in range(items.shape[1]):
        drops[:, col] = base - logp(*remove_event(items, types, col))
    real = items != 0
    top = np.where(real, weights, -np.inf).argmax(1)
    rows = np.arange(len(items))
    return float(drops[rows, top].mean()), float(
        np.nanmean(np.where(real, drops, np.nan), 1).mean()
    )


def ml100k(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    ckpt_dir = Path(args.checkpoint)
    if not (ckpt_dir / "model.safetensors").exists():
        exe = Path(sys.executable).with_name("nextbehavior")
        cmd = [str(exe), "train", "--data", args.data, "--out", str(ckpt_dir)]
        cmd += ["--max-minutes", str(args.max_minutes), "--no-progress"]
        print("$", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ckpt = load_checkpoint(ckpt_dir)
    model = ckpt.model.eval()
    with_w, without = work / "explain", work / "plain"
    export_bundle(ckpt_dir, with_w, top_k=20, verify=True, explain=True)
    export_bundle(ckpt_dir, without, top_k=20)
    pred, plain = (Predictor(p, providers=["CPUExecutionProvider"]) for p in (with_w, without))
    table = load_events(args.data, progress=False)
    split = leave_one_out(build_sequences(table))
    batch = next(
        eval_batches(split, "test", pred.item_index, pred.type_index, pred.max_len, 1 << 20)
    )
    rng = np.random.default_rng(0)
    pick = rng.choice(len(batch[0]), size=min(args.rows, len(batch[0])), replace=False)
    items, types, target = batch[0][pick], batch[1][pick], batch[2][pick]
    keep = ((items != 0).sum(1) >= 2) & (target != 0)
    items, types, target = items[keep], types[keep], target[keep]
    score = scorer_of(pred)
    _, weights = score(items, types)
    out: dict[str, Any] = {"rows": len(items), "checkpoint": str(ckpt_dir)}
    out["served"] = faithfulness(score, items, types).to_dict()
    out["served"]["target_logp_drop"] = target_drop(model, items, types, target, weights)
    for name, w in alternatives(model, items, types).items():
        out[name] = faithfulness(score, items, types, weights=w).to_dict()
        out[name]["target_logp_drop"] = target_drop(model, items, types, target, w)
    out["cost"] = cost(pred, plain, items, types, args.seconds)
    return out


def cost(pred: Predictor, plain: Predictor, items: I64, types: I64, seconds: float) -> dict:
    """Sequences/s with and without the weights output (alternating), and `because` per row."""
    result: dict[str, Any] = {}
    for b in (1, 64):
        rows = np.resize(np.arange(len(items)), max(b, 256))
        times: dict[str, list[float]] = {"with": [], "without": []}
        cpu: dict[str, list[float]] = {"with": [], "without": []}
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < 2 * seconds or i < 20:
            sel = rows[(i * b) % len(rows) :][:b]
            if len(sel) < b:
                sel = rows[:b]
            for name, p in (("with", pred), ("without", plain)):
                t0, c0 = time.perf_counter(), time.process_time()
                p.predict(items[sel], types[sel])
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            i += 1
        wall = {k: b / float(np.median(v)) for k, v in times.items()}
        per_cpu = {k: b / max(float(np.median(v)), 1e-9) for k, v in cpu.items()}
        result[f"batch_{b}"] = {
            "seq_per_s_with": round(wall["with"]),
            "seq_per_s_without": round(wall["without"]),
            "slowdown": round(wall["without"] / wall["with"], 3),
            "seq_per_cpu_s_with": round(per_cpu["with"]),
            "seq_per_cpu_s_without": round(per_cpu["without"]),
        }
    out = pred.predict(items[:64], types[:64])
    assert out.weights is not None
    names = pred.manifest.items
    contexts = [
        [Step(f"e{j}", names[int(x)], "interaction", j) for j, x in enumerate(row) if x]
        for row in items[:64]
    ]
    t0 = time.perf_counter()
    for _ in range(20):
        for r, ctx in enumerate(contexts):
            reasons(ctx, out.weights[r], pred.item_index, pred.max_len)
    result["because_us_per_prediction"] = round((time.perf_counter() - t0) / 1280 * 1e6, 1)
    return result


def cue(n_layers: int, work: Path, rows: int) -> dict[str, Any]:
    cfg = CueConfig()
    started = time.perf_counter()
    model = train_cue_model(cfg, steps=300, seed=0, n_layers=n_layers)
    trained = time.perf_counter() - started
    ckpt = save_checkpoint(
        work / f"cue{n_layers}", model, cfg.items(), EVENT_TYPES, {}, {"source": "planted cue"}
    )
    bundle = work / f"cue{n_layers}-bundle"
    export_bundle(ckpt, bundle, top_k=10, explain=True)
    pred = Predictor(bundle, providers=["CPUExecutionProvider"])
    data = cue_rows(rows, cfg, np.random.default_rng(1))
    score = scorer_of(pred)
    ids, weights = score(data.items, data.types)
    out: dict[str, Any] = {
        "blocks": n_layers,
        "train_seconds": round(trained, 1),
        "model_top1_accuracy": float((ids[:, 0] == data.target).mean()),
        "cue_top1": cue_hit_rate(weights, data.cue),
        "cue_top3": cue_hit_rate(weights, data.cue, top=3),
        "served": faithfulness(score, data.items, data.types).to_dict(),
    }
    for name, w in alternatives(model, data.items, data.types).items():
        out[name] = {"cue_top1": cue_hit_rate(w, data.cue)}
    return out


def line(name: str, f: dict[str, Any]) -> str:
    drop = f.get("target_logp_drop")
    tail = f"; target log-p drop {drop[0]:.3f} vs {drop[1]:.3f}" if drop else ""
    return (
        f"  {name:30s} top-10 change, top-weighted {f['top_weighted']:.3f} vs random "
        f"{f['random']:.3f} (best {f['best_possible']:.3f}); before the newest "
        f"{f['top_weighted_older']:.3f} vs {f['random_older']:.3f}; newest first "
        f"{f['newest_first']:.0%}{tail}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/ml-100k.inter")
    parser.add_argument("--checkpoint", default="runs/ml100k")
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    summary: dict[str, Any] = {
        "command": "python bench/explain.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs "
        f"(load {os.getloadavg()[0]:.1f}), torch {torch.__version__}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        summary["synthetic_cue"] = [cue(n, work, args.rows) for n in (1, 2)]
        summary["ml100k"] = ml100k(args, work)
    for c in summary["synthetic_cue"]:
        print(
            f"planted cue, {c['blocks']} block(s): model top-1 {c['model_top1_accuracy']:.3f}; "
            f"cue is the top-weighted event {c['cue_top1']:.1%} (in the top 3: "
            f"{c['cue_top3']:.1%}); last-block attention "
            f"{c['last-block attention']['cue_top1']:.1%}, plain rollout "
            f"{c['plain rollout (0.5 residual)']['cue_top1']:.1%}, gradient x input "
            f"{c['gradient x input']['cue_top1']:.1%}"
        )
        print(line("served (norm-weighted rollout)", c["served"]))
    m = summary["ml100k"]
    print(f"ML-100K, {m['rows']} test histories ({m['checkpoint']}):")
    for name in ("served", *ALTERNATIVES):
        print(line("served (norm-weighted rollout)" if name == "served" else name, m[name]))
    for b, c in m["cost"].items():
        if b.startswith("batch"):
            print(
                f"  cost {b}: {c['seq_per_s_with']} seq/s with weights, {c['seq_per_s_without']} "
                f"without (x{c['slowdown']} slower); per CPU-s {c['seq_per_cpu_s_with']} vs "
                f"{c['seq_per_cpu_s_without']}"
            )
    print(f"  because: {m['cost']['because_us_per_prediction']} us per prediction")
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
