"""Inference speed: ONNX Runtime (the served bundle, via Predictor) vs PyTorch eager, on CPU.

Usage: .venv/bin/python bench/inference.py [--checkpoint runs/ml100k] [--large-items 100000]
       [--batches 1,8,32,64,256] [--seconds 1.0] [--threads 1] [--int8] [--json out.json]

Models: the ML-100K model (the checkpoint if given and present, else random weights of the
default config over the 1683-entry ML-100K catalogue: timing does not depend on the weights),
and a 100k-item catalogue with random weights (served with the two-stage top-k; a plain-TopK
graph is timed too). Rows are full-length histories (max_len real events: the worst case).
Both engines get the same thread count (default 1: scale with processes, see ONNX.md).
torch eager = ``model(item_ids, event_types)`` (last position), padding masked, ``torch.topk``:
what evaluation's TorchRanker does. ORT = ``Predictor.predict`` on the exported bundle.
Per batch size: p50/p90 per-call wall latency over ~``--seconds`` of calls, sequences/s = B / p50,
and the median process CPU time per call. On shared cores (other jobs running) wall time mostly
measures the neighbours; CPU time is the engine's own cost, so "seq per CPU-s" is the
per-core throughput and "vs torch" compares CPU times.
Targets (issue 4): ORT >= 2x torch at batch 1; >= 5k sequences/s per core at batch 32 (ML-100K).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

from nextbehavior.export.writer import export_bundle
from nextbehavior.model.checkpoint import load_checkpoint, save_checkpoint
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.predictor import Predictor

ML100K_ITEMS = 1683  # 1682 movies + padding


def timed(
    fn: Callable[[], object], seconds: float, min_calls: int = 5
) -> tuple[list[float], list[float]]:
    """Per-call wall and process-CPU times (s) after 3 warm-up calls, for ~``seconds`` in all."""
    for _ in range(3):
        fn()
    wall: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    while len(wall) < min_calls or time.perf_counter() - start < seconds:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def random_checkpoint(out: Path, cfg: ModelConfig) -> Path:
    torch.manual_seed(0)
    model = BehaviorTransformer(cfg).eval()
    items = ["[PAD]", *(str(i) for i in range(1, cfg.n_items))]
    types = ["[PAD]", *(f"t{i}" for i in range(1, cfg.n_event_types))]
    return save_checkpoint(out, model, items, types, {}, {"source": "random weights"})


def bench_model(
    name: str,
    ckpt_dir: Path,
    work: Path,
    batches: list[int],
    seconds: float,
    threads: int,
    variants: list[tuple[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    ckpt = load_checkpoint(ckpt_dir)
    model, cfg = ckpt.model, ckpt.config
    rng = np.random.default_rng(0)
    predictors = {}
    for label, kwargs in variants:
        manifest = export_bundle(ckpt_dir, work / f"{name}-{label}", top_k=20, **kwargs)
        predictors[label] = Predictor(
            work / f"{name}-{label}", providers=["CPUExecutionProvider"], intra_op_threads=threads
        )
        chunk = manifest.extra.get("two_stage_topk_chunk")
        size = (work / f"{name}-{label}" / "model.onnx").stat().st_size / 1e6
        print(f"# {name} {label}: two-stage chunk={chunk}, model.onnx {size:.1f} MB")

    rows: list[dict[str, Any]] = []
    for b in batches:
        items = rng.integers(1, cfg.n_items, (b, cfg.max_len), dtype=np.int64)
        types = rng.integers(1, cfg.n_event_types, (b, cfg.max_len), dtype=np.int64)
        x, t = torch.from_numpy(items), torch.from_numpy(types)

        def eager(x: torch.Tensor = x, t: torch.Tensor = t) -> object:
            with torch.inference_mode():
                logits, type_logits, _ = model(x, t)
                logits[:, 0] = float("-inf")
                type_logits[:, 0] = float("-inf")
                return logits.topk(20, dim=1), type_logits.softmax(1)

        engines: list[tuple[str, Callable[[], object]]] = [("torch eager", eager)]
        for label, pred in predictors.items():
            engines.append((f"ORT {label}", lambda p=pred, i=items, ty=types: p.predict(i, ty)))
        base = None
        for engine, fn in engines:
            wall, cpu = timed(fn, seconds)
            p50, p90 = float(np.median(wall)), float(np.percentile(wall, 90))
            cpu50 = float(np.median(cpu))
            base = cpu50 if base is None else base
            rows.append(
                {
                    "model": name,
                    "engine": engine,
                    "batch": b,
                    "p50_ms": p50 * 1e3,
                    "p90_ms": p90 * 1e3,
                    "cpu_ms": cpu50 * 1e3,
                    "seq_per_s": b / p50,
                    "seq_per_cpu_s": b / cpu50,
                    "speedup_vs_torch": base / cpu50,
                    "calls": len(wall),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/ml100k"))
    parser.add_argument("--large-items", type=int, default=100_000, help="0 skips it")
    parser.add_argument("--batches", default="1,8,32,64,256")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--int8", action="store_true", help="also time the int8 bundle")
    parser.add_argument("--json", type=Path, help="write the rows here as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"{args.threads} thread(s) per engine; torch {torch.__version__}"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if (args.checkpoint / "model.safetensors").is_file():
            ml_ckpt, weights = args.checkpoint, f"trained ({args.checkpoint})"
        else:
            ml_ckpt = random_checkpoint(work / "ml100k-random", ModelConfig(ML100K_ITEMS, 2))
            weights = "random weights, default config"
        cfg = load_checkpoint(ml_ckpt).config
        print(f"# ML-100K model: {weights}; {cfg}")
        variants: list[tuple[str, dict[str, Any]]] = [("fp32", {})]
        if args.int8:
            variants.append(("int8", {"quantize": "int8"}))
        rows += bench_model("ml100k", ml_ckpt, work, batches, args.seconds, args.threads, variants)
        if args.large_items:
            large_cfg = ModelConfig(args.large_items + 1, 2)
            large = random_checkpoint(work / "large-random", large_cfg)
            print(f"# {args.large_items}-item model: random weights; {large_cfg}")
            variants = [("two-stage top-k", {}), ("plain top-k", {"chunk": None})]
            rows += bench_model(
                f"{args.large_items // 1000}k",
                large,
                work,
                batches,
                args.seconds,
                args.threads,
                variants,
            )
    print(
        "| model | engine | batch | p50 ms | p90 ms | CPU ms | seq/s | seq per CPU-s | vs torch |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['model']} | {r['engine']} | {r['batch']} | {r['p50_ms']:.3f} | "
            f"{r['p90_ms']:.3f} | {r['cpu_ms']:.3f} | {r['seq_per_s']:.0f} | "
            f"{r['seq_per_cpu_s']:.0f} | {r['speedup_vs_torch']:.2f}x |"
        )
    if args.json:
        args.json.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
