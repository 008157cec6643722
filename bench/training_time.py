"""Training time on ML-100K: seconds per epoch and to the best epoch, from a training run's
``metrics.json`` (``bench/train_ml100k.py`` writes it; this script trains nothing).

    .venv/bin/python bench/train_ml100k.py            # once: trains with the defaults
    .venv/bin/python bench/training_time.py [--checkpoint runs/ml100k]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import orjson


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/ml100k"))
    args = parser.parse_args()
    path = args.checkpoint / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"no {path}: run bench/train_ml100k.py first")
    metrics = orjson.loads(path.read_bytes())
    history = metrics["history"]
    best = int(metrics["best_epoch"])
    per_epoch = [float(h["seconds"]) for h in history]
    train_only = [float(h.get("train_seconds", h["seconds"])) for h in history]
    to_best = sum(float(h["seconds"]) for h in history if int(h["epoch"]) <= best)
    result = {
        "checkpoint": str(args.checkpoint),
        "epochs_run": int(metrics["epochs_run"]),
        "best_epoch": best,
        "seconds_per_epoch_median": round(statistics.median(per_epoch), 2),
        "train_seconds_per_epoch_median": round(statistics.median(train_only), 2),
        "seconds_to_best_epoch": round(to_best, 1),
        "seconds_total": float(metrics["seconds"]),
        "valid_ndcg@10": metrics["valid"]["ndcg@10"],
        "test_ndcg@10": metrics["test"]["ndcg@10"],
        "threads": metrics.get("train_config", {}).get("threads"),
    }
    print(
        f"ML-100K: {result['seconds_per_epoch_median']} s/epoch (median; "
        f"{result['train_seconds_per_epoch_median']} s of it training, the rest validation), "
        f"best epoch {best} of {result['epochs_run']} reached after "
        f"{result['seconds_to_best_epoch'] / 60:.1f} min, whole run "
        f"{result['seconds_total'] / 60:.1f} min; test NDCG@10 {result['test_ndcg@10']:.4f}"
    )
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
