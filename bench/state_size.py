"""Memory per user of the worker's sequence state, and what its codec costs per event.

For full histories (max_len steps, default 50) with several event-id formats (short ids,
the 20-hex-digit ids that ``replay`` makes, UUIDs), ML-100K-like item ids and a few behavior
types, seconds to days apart: the encoded record (what the changelog carries and the table
store holds), the in-memory cost per user of the ``sequences`` table (key + value + dict slot,
measured with tracemalloc over ``--users`` users), the same for format 1 (the previous
encoding), and the decode/encode time per event. Target (issue 7): <= 2 KB per user.

    .venv/bin/python bench/state_size.py [--max-len 50] [--users 20000]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from nextbehavior.stream.history import Step
from nextbehavior.stream.machine import load_average, machine_info
from nextbehavior.stream.state import decode_history, encode_history

ID_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "short (u123-45)": lambda rng: f"u{rng.randrange(1000)}-{rng.randrange(100)}",
    "20 hex (replay)": lambda rng: f"{rng.getrandbits(80):020x}",
    "uuid4": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
}


def history(rng: random.Random, make_id: Callable[[random.Random], str], n: int) -> list[Step]:
    ts = 1_700_000_000_000
    out = []
    for _ in range(n):
        ts += rng.choice((2_000, 45_000, 600_000, 86_400_000))
        kind = rng.choice(("view", "view", "view", "click", "cart", "purchase"))
        out.append(Step(make_id(rng), str(rng.randrange(1, 1683)), kind, ts))
    return out


def format1(steps: list[Step]) -> bytes:
    """The previous record: ``[1, [[event_id, item_id, event_type, timestamp], ...]]``."""
    return orjson.dumps([1, [[s.event_id, s.item_id, s.event_type, s.timestamp] for s in steps]])


def per_user_memory(users: list[list[Step]], encode: Callable[[list[Step]], bytes]) -> float:
    """Bytes per user of a ``{user key: record}`` dict (what the memory store holds), records
    made inside the traced span (so each is its own object)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = {f"user{n}".encode(): encode(h) for n, h in enumerate(users)}
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del store
    return (after - before) / len(users)


def timed_us(fn: Callable[[], object], n: int = 3000) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(0)
    rows: list[dict[str, Any]] = []
    for name, make_id in ID_FORMATS.items():
        users = [history(rng, make_id, args.max_len) for _ in range(min(args.users, 2000))]
        users = (users * (args.users // len(users) + 1))[: args.users]
        v2 = [encode_history(h) for h in users]
        v1 = [format1(h) for h in users]
        sample, raw = users[0], v2[0]
        held = decode_history(raw)
        rows.append(
            {
                "ids": name,
                "record_bytes": round(sum(map(len, v2)) / len(v2), 1),
                "memory_bytes_per_user": round(per_user_memory(users, encode_history), 1),
                "format1_record_bytes": round(sum(map(len, v1)) / len(v1), 1),
                "format1_memory_bytes_per_user": round(per_user_memory(users, format1), 1),
                "decode_us": round(timed_us(partial(decode_history, raw)), 1),
                "encode_us": round(timed_us(partial(encode_history, held)), 1),
                "steps": len(sample),
            }
        )
    print(f"# max_len {args.max_len}, {args.users:,} users; machine {machine_info()}")
    print(
        "| event ids | record bytes | memory B/user | format 1 record | format 1 memory |"
        " decode us | encode us |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['ids']} | {r['record_bytes']:.0f} | {r['memory_bytes_per_user']:.0f} | "
            f"{r['format1_record_bytes']:.0f} | {r['format1_memory_bytes_per_user']:.0f} | "
            f"{r['decode_us']} | {r['encode_us']} |"
        )
    worst = max(r["memory_bytes_per_user"] for r in rows)
    print(
        f"target <= 2048 B/user at max_len {args.max_len}: worst {worst:.0f} B "
        f"({'met' if worst <= 2048 else 'NOT met'}); load {load_average()}"
    )
    print(orjson.dumps({"max_len": args.max_len, "users": args.users, "rows": rows}).decode())


if __name__ == "__main__":
    main()
