"""MovieLens-100K benchmark: ``nextbehavior train`` with its DEFAULTS, then ``evaluate``.

All 100,000 interactions, leave-one-out split, full-catalogue ranking (history not masked).
Runs the real commands in subprocesses, checks that ``evaluate --checkpoint`` reproduces the
training run's metrics, and prints a Markdown table next to RecBole 1.2.1 figures measured on
the same split, then one JSON line with every number.

    .venv/bin/python bench/train_ml100k.py [--data /work/shared/data/ml-100k.inter]
        [--out runs/ml100k] [-- extra train flags]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

RECBOLE = {  # test metrics measured with RecBole 1.2.1 on this split (issue 3)
    "RecBole most-popular": {"ndcg@10": 0.0224, "hit@10": 0.0498},
    "RecBole GRU4Rec (15 epochs, 21 min)": {"ndcg@10": 0.0634, "hit@10": 0.1304},
    "RecBole SASRec (validation, still rising)": {"ndcg@10": 0.065, "hit@10": None},
}


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("nextbehavior")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nextbehavior.stream"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/ml-100k.inter")
    parser.add_argument("--out", default="runs/ml100k")
    parser.add_argument("extra", nargs="*", help="extra `train` flags (after --)")
    args = parser.parse_args()

    train_cmd = [*cli(), "train", "--data", args.data, "--out", args.out, *args.extra]
    print("$", " ".join(train_cmd[1:] if len(train_cmd) > 1 else train_cmd), file=sys.stderr)
    started = time.perf_counter()
    subprocess.run(train_cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    metrics = orjson.loads((Path(args.out) / "metrics.json").read_bytes())
    eval_cmd = [*cli(), "evaluate", "--data", args.data, "--checkpoint", args.out]
    report = orjson.loads(subprocess.run(eval_cmd, check=True, capture_output=True).stdout)
    reproduced = report["test"] == metrics["test"] and report["valid"] == metrics["valid"]

    rows: list[tuple[str, dict[str, Any]]] = [("nextbehavior (this run)", metrics["test"])]
    rows += [(f"{name} (ours, same split)", b["test"]) for name, b in metrics["baselines"].items()]
    rows += list(RECBOLE.items())
    print("| model | test NDCG@10 | test HR@10 | test MRR@10 |")
    print("| --- | --- | --- | --- |")
    for name, m in rows:
        cells = [m.get(k) for k in ("ndcg@10", "hit@10", "mrr@10")]
        print(f"| {name} | " + " | ".join("-" if c is None else f"{c:.4f}" for c in cells) + " |")
    test, valid = metrics["test"], metrics["valid"]
    print(
        f"\nvalid NDCG@10 {valid['ndcg@10']:.4f}, HR@10 {valid['hit@10']:.4f}; "
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}; "
        f"{metrics['seconds_per_epoch']:.1f} s/epoch; training {metrics['seconds'] / 60:.1f} min; "
        f"command wall {wall / 60:.1f} min; evaluate reproduces metrics.json: {reproduced}"
    )
    summary = {
        "data": args.data,
        "command": " ".join(["nextbehavior", *train_cmd[-(len(train_cmd) - len(cli())) :]]),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "wall_seconds": round(wall, 1),
        "train_seconds": metrics["seconds"],
        "seconds_per_epoch": metrics["seconds_per_epoch"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "valid": valid,
        "test": test,
        "baselines": metrics["baselines"],
        "evaluate_reproduces": reproduced,
    }
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
