"""Latency over time from ``nextbehavior bench e2e --trace FILE``: per-second p50/p99 and a plot.

A steady rate should give flat lines; a line that climbs means something fills up during the
run (on the embedded broker: the record batches each fetch has to walk, ``bench/broker_fetch.py``).

    .venv/bin/python bench/latency_trace.py TRACE.csv [--out latency.png] [--bucket-s 1]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def per_bucket(path: Path, bucket_s: float) -> list[tuple[float, int, float, float]]:
    """(start s, events, p50 ms, p99 ms) per ``bucket_s`` of send time."""
    with path.open() as f:
        rows = [(float(r["sent_s"]), float(r["latency_ms"])) for r in csv.DictReader(f)]
    if not rows:
        raise SystemExit(f"{path} holds no events")
    sent = np.array([r[0] for r in rows])
    lat = np.array([r[1] for r in rows])
    slot = ((sent - sent.min()) // bucket_s).astype(int)
    out = []
    for b in np.unique(slot):
        v = lat[slot == b]
        out.append((b * bucket_s, len(v), float(np.median(v)), float(np.percentile(v, 99))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--out", type=Path, help="write a PNG plot here")
    parser.add_argument("--bucket-s", type=float, default=1.0)
    args = parser.parse_args()
    buckets = per_bucket(args.trace, args.bucket_s)
    print("  t (s)  events  p50 ms  p99 ms")
    for t, n, p50, p99 in buckets:
        print(f"{t:7.1f} {n:7d} {p50:7.1f} {p99:7.1f}")
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        t = [b[0] for b in buckets]
        ax.plot(t, [b[2] for b in buckets], label="p50")
        ax.plot(t, [b[3] for b in buckets], label="p99")
        ax.set_xlabel(f"send time (s), {args.bucket_s:g} s buckets")
        ax.set_ylabel("event -> prediction (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
        print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
