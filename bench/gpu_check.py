"""GPU check of exported bundles: parity on CUDA and the inference benchmark, one JSON line out.

Needs only numpy and onnxruntime-gpu (no torch, no nextbehavior install), so a short GPU lease
can run it from carried wheels; ``bench/gpu.sh`` prepares the bundles and runs it.

Usage: python bench/gpu_check.py BUNDLE_ROOT [--batches 1,8,64,256,1024,4096] [--seconds 1]
BUNDLE_ROOT holds ``<name>-fp32`` and ``<name>-fp16`` bundle directories (e.g. ml100k-fp32).

Parity on CUDA: the fp32 bundle on CUDA (TF32 off) against the same bundle on ONNX Runtime's
CPU provider, which ``nextbehavior export --verify`` proves equal to PyTorch (export.parity).
Cases: an all-padding row, a single-event row, a full-length row, each alone (batch 1), and
with 61 random rows (batch 64). Same tolerance as export.parity, rank by rank:
|dp| <= 1e-4 * p + 1e-6 between the r-th scores of both sides, so an id may differ only where
it replaces a near-tie. fp16 reports its top-10 agreement with fp32 (both on CUDA).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

RTOL, ATOL = 1e-4, 1e-6
INPUTS = ("item_ids", "event_types")
OUTPUTS = ("top_item_ids", "top_item_scores", "event_type_probs")


def session(path: Path, provider: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    providers: list[Any] = ["CPUExecutionProvider"]
    if provider == "CUDAExecutionProvider" and provider in ort.get_available_providers():
        providers = [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def load(bundle: Path) -> tuple[dict[str, Any], Path]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = bundle / "model.onnx"
    if hashlib.sha256(model.read_bytes()).hexdigest() != manifest["onnx_sha256"]:
        raise SystemExit(f"{bundle}: model.onnx does not match its manifest checksum")
    return manifest, model


def cases(max_len: int, n_items: int, n_types: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)

    def rows(lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
        items = np.zeros((len(lengths), max_len), dtype=np.int64)
        types = np.zeros_like(items)
        for r, n in enumerate(lengths):
            if n:
                items[r, max_len - n :] = rng.integers(1, n_items, n)
                types[r, max_len - n :] = rng.integers(0, n_types, n)
        return items, types

    mixed = [0, 1, max_len, *rng.integers(0, max_len + 1, 61).tolist()]
    specs = [("all-padding", [0]), ("single", [1]), ("full", [max_len]), ("batch 64", mixed)]
    return [(name, *rows(lengths)) for name, lengths in specs]


def run(s: ort.InferenceSession, items: np.ndarray, types: np.ndarray) -> list[np.ndarray]:
    return s.run(list(OUTPUTS), {INPUTS[0]: items, INPUTS[1]: types})  # type: ignore[no-any-return]


def parity(
    cpu: ort.InferenceSession, gpu: ort.InferenceSession, m: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rows": 0,
        "rows_ids_identical": 0,
        "max_score_diff": 0.0,
        "failures": [],
    }
    for name, items, types in cases(m["max_len"], len(m["items"]), len(m["event_types"])):
        ref_ids, ref_scores, ref_types = run(cpu, items, types)
        ids, scores, type_probs = run(gpu, items, types)
        out["rows"] += len(ids)
        same = np.all(ids == ref_ids, axis=1)
        out["rows_ids_identical"] += int(same.sum())
        tol = RTOL * np.abs(ref_scores) + ATOL
        if not np.all(np.abs(scores - ref_scores) <= tol):  # rank-wise: also covers near-ties
            out["failures"].append(f"{name}: scores or ids differ beyond ties")
        if not np.all(np.abs(type_probs - ref_types) <= RTOL * np.abs(ref_types) + ATOL):
            out["failures"].append(f"{name}: type probabilities differ")
        out["max_score_diff"] = max(out["max_score_diff"], float(np.abs(scores - ref_scores).max()))
    out["ok"] = not out["failures"]
    return out


def agreement(
    a: ort.InferenceSession, b: ort.InferenceSession, m: dict[str, Any], k: int = 10
) -> float:
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, m["max_len"] + 1, 1024)
    items = np.zeros((1024, m["max_len"]), dtype=np.int64)
    for r, n in enumerate(lengths):
        items[r, m["max_len"] - n :] = rng.integers(1, len(m["items"]), n)
    types = (items > 0).astype(np.int64)
    ia, ib = run(a, items, types)[0][:, :k], run(b, items, types)[0][:, :k]
    return float(
        np.mean([len(set(x) & set(y)) / k for x, y in zip(ia.tolist(), ib.tolist(), strict=True)])
    )


def speed(
    s: ort.InferenceSession, m: dict[str, Any], batch: int, seconds: float
) -> dict[str, float]:
    rng = np.random.default_rng(2)
    items = rng.integers(1, len(m["items"]), (batch, m["max_len"]), dtype=np.int64)
    types = np.ones_like(items)
    for _ in range(3):
        run(s, items, types)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        run(s, items, types)
        times.append(time.perf_counter() - t0)
    p50 = float(np.median(times))
    return {
        "batch": batch,
        "p50_ms": p50 * 1e3,
        "p90_ms": float(np.percentile(times, 90)) * 1e3,
        "seq_per_s": batch / p50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--batches", default="1,8,64,256,1024,4096")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    result: dict[str, Any] = {"ort": ort.__version__, "available": ort.get_available_providers()}
    ok = True
    for fp32_dir in sorted(args.root.glob("*-fp32")):
        name = fp32_dir.name.removesuffix("-fp32")
        manifest, fp32 = load(fp32_dir)
        cpu, gpu = session(fp32, "CPUExecutionProvider"), session(fp32, "CUDAExecutionProvider")
        used = gpu.get_providers()[0]
        entry: dict[str, Any] = {"items": len(manifest["items"]) - 1, "provider": used}
        entry["parity_cuda_vs_cpu"] = parity(cpu, gpu, manifest)
        ok &= entry["parity_cuda_vs_cpu"]["ok"] and used == "CUDAExecutionProvider"
        sessions = {"fp32": gpu}
        fp16_dir = args.root / f"{name}-fp16"
        if fp16_dir.is_dir():
            sessions["fp16"] = session(load(fp16_dir)[1], "CUDAExecutionProvider")
            entry["fp16_top10_agreement_vs_fp32"] = agreement(gpu, sessions["fp16"], manifest)
        entry["speed"] = {
            label: [speed(s, manifest, b, args.seconds) for b in batches]
            for label, s in sessions.items()
        }
        print(f"# {name}: {json.dumps(entry)}", file=sys.stderr)
        result[name] = entry
    result["ok"] = ok
    print(json.dumps(result))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
