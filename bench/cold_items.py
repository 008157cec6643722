"""Cold items: a text-aware model vs an ID-only model on the same split, ML-100K.

Usage: .venv/bin/python bench/cold_items.py [--data /work/shared/data/ml-100k.inter]
       [--items /work/shared/data/ml-100k.item] [--cold 0.1] [--seed 0] [--epochs 200]
       [--max-minutes 12] [--threads 2] [--id-dropout 0.1] [--text-neighbors 20]
       [--text-aux 0.5] [--side-epochs 20] [--cold-tolerance 0] [--text-in-warm]
       [--out runs/cold_items] [--json F]

A seeded 10% of the items is held out of training entirely (their events are removed from the
training sequences; validation targets among them are ignored for model selection). Both
models then rank the full catalogue for every user's last event (leave-one-out test):
``cold`` = test targets that are held-out items, ``warm`` = the others. The ID-only model never
saw a cold item, so it cannot rank one (its vocabulary lacks them); the text-aware model reads
each item's text (title, release year, genres) through the offline MiniLM sentence encoder:
by default it is the ID model plus a text side for items without training events (the warm
path is the ID-only model), with the cold rows' scale and bias calibrated on validation.
Targets (issue 10): cold hit@10 >= 10x chance (10 / items), warm NDCG@10 within 2% of the
ID-only model, overall NDCG@10 above it. Training stops early on validation NDCG@10 (patience)
or at ``--max-minutes`` per model.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from nextbehavior.model.loaders import load_events
from nextbehavior.model.text_train import TextOptions, train_with_text
from nextbehavior.model.train import TrainConfig
from nextbehavior.stream.settings import get_settings

SHARED = Path("/work/shared/data")


def _row(name: str, m: dict[str, Any]) -> str:
    cells = [name]
    for part in ("test", "test_warm", "test_cold"):
        r = m[part]
        users = r.get("users", r.get("n"))
        cells.append(f"{r['ndcg@10']:.4f} / {r['hit@10']:.4f} ({users})")
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED / "ml-100k.inter")
    ap.add_argument("--items", type=Path, default=SHARED / "ml-100k.item")
    ap.add_argument("--text-fields", default=None, help="e.g. movie_title,class (default: all)")
    ap.add_argument("--cold", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--max-minutes", type=float, default=12.0, help="per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--id-dropout", type=float, default=TextOptions.id_dropout)
    ap.add_argument("--text-neighbors", type=int, default=TextOptions.text_neighbors)
    ap.add_argument("--text-aux", type=float, default=TextOptions.text_aux)
    warm = ap.add_mutually_exclusive_group()
    warm.add_argument("--text-in-warm", action="store_true", help="joint training (IDs + text)")
    warm.add_argument("--no-text-in-warm", action="store_true", help="the default: ID only")
    ap.add_argument("--side-epochs", type=int, default=TextOptions.side_epochs)
    ap.add_argument(
        "--cold-tolerance",
        type=float,
        default=TextOptions.cold_tolerance,
        help="calibration: validation NDCG@10 share it may give up for cold rows",
    )
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("runs/cold_items"))
    ap.add_argument("--encoder", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    started = time.perf_counter()
    table = load_events(args.data, progress=False)
    fields = [f for f in args.text_fields.split(",") if f] if args.text_fields else None
    opts = TextOptions(
        items_path=args.items,
        encoder_dir=args.encoder or get_settings().text_encoder,
        text_fields=fields,
        cold_fraction=args.cold,
        cold_seed=args.seed,
        id_dropout=args.id_dropout,
        text_neighbors=args.text_neighbors,
        text_aux=args.text_aux,
        text_in_warm=args.text_in_warm,
        side_epochs=args.side_epochs,
        cold_tolerance=args.cold_tolerance,
    )
    tc = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        max_minutes=args.max_minutes,
        threads=args.threads,
        seed=args.seed,
        progress=False,
    )
    text = train_with_text(table, args.out, opts, {"max_len": args.max_len}, tc)
    ref = text["id_only"]
    chance = text["cold_items"]["chance_hit@10"]
    cold_x = text["test_cold"]["hit@10"] / chance
    warm_ratio = text["test_warm"]["ndcg@10"] / max(ref["test_warm"]["ndcg@10"], 1e-12)
    overall = text["test"]["ndcg@10"] - ref["test"]["ndcg@10"]
    print(f"\nML-100K, {text['cold_items']['n']} cold items of {text['n_items']} "
          f"({args.cold:.0%}, seed {args.seed}); NDCG@10 / hit@10 (users)")  # fmt: skip
    print("| model | all test | warm targets | cold targets |")
    print("| --- | --- | --- | --- |")
    print(_row(f"text-aware (best epoch {text['best_epoch']})", text))
    print(_row(f"ID-only (best epoch {ref['best_epoch']})", ref))
    print(f"chance hit@10 on cold targets: {chance:.4f}; text-aware cold hit@10 = {cold_x:.1f}x "
          f"chance (target >= 10x)")  # fmt: skip
    print(f"warm NDCG@10 text/ID = {warm_ratio:.3f} (target >= 0.98); overall NDCG@10 "
          f"text - ID = {overall:+.4f} (target > 0)")  # fmt: skip
    cal = text["text_side"]["calibration"]
    print(f"calibrated on validation ({cal['holdout_items']} stand-in items): cold-row scale "
          f"{cal['cold_scale']:g}, bias {cal['cold_bias']}; validation NDCG@10 "
          f"{cal['valid_ndcg@10']:.4f} (warm rows only "
          f"{cal['valid_ndcg@10_warm_rows_only']:.4f})")  # fmt: skip
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} CPUs visible, {args.threads} torch threads; "
          f"{time.perf_counter() - started:.0f} s in all")  # fmt: skip
    print("command: " + " ".join([".venv/bin/python", *sys.argv]))
    if args.json:
        summary = {"text": {k: text[k] for k in ("test", "test_warm", "test_cold", "n_items")},
                   "id_only": ref, "cold_items": text["cold_items"], "cold_x_chance": cold_x,
                   "calibration": {k: v for k, v in cal.items() if k != "grid"},
                   "warm_ndcg_ratio": warm_ratio, "overall_ndcg_diff": overall}  # fmt: skip
        args.json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
