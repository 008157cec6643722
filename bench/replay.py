"""Replay benchmark and check: ``nextbehavior replay`` of an event log into the embedded broker.

Starts an embedded broker, replays the log (``--limit N`` events, then the whole log) with the
real command in a subprocess, reads the topic back and checks that everything arrived, keyed by
user, each user in one partition, in each user's time order. Prints one JSON line per run:
events/s as the replay measured it, the command's wall time, and the checks.

    .venv/bin/python bench/replay.py --data /work/shared/data/ml-100k.inter --limit 3000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import orjson

from nextbehavior.model.loaders import load_events
from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.reader import Record, read_topics
from nextbehavior.stream.settings import Settings, get_settings
from nextbehavior.stream.topics import app_topics, ensure_topics


async def _read(settings: Settings) -> list[Record]:
    out: list[Record] = []
    async for batch in read_topics(settings, [settings.input_topic], idle_s=10.0):
        out.extend(batch)
    return out


def run(broker: EmbeddedBroker, data: str, limit: int | None) -> dict[str, Any]:
    tag = f"{limit or 'all'}-{time.monotonic_ns()}"
    settings = get_settings(
        broker=broker.url, input_topic=f"ev-{tag}", output_topic=f"p-{tag}", dlq_topic=f"d-{tag}"
    )
    asyncio.run(ensure_topics(settings, app_topics(settings)))
    cmd = [sys.executable, "-m", "nextbehavior.stream", "replay", "--data", data, "--json",
           "--broker", broker.url, "--topic", settings.input_topic]  # fmt: skip
    if limit is not None:
        cmd += ["--limit", str(limit)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"replay failed: {done.stderr.strip()}")
    summary = orjson.loads(done.stdout.strip().splitlines()[-1])
    records = asyncio.run(_read(settings))
    table = load_events(data, progress=False)
    want: dict[str, list[str]] = defaultdict(list)
    for i in table.time_order()[:limit]:
        event = table.event(int(i))
        want[event.user_id].append(event.event_id)
    got: dict[str, list[str]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    keyed = True
    for record in records:
        value = orjson.loads(record.value or b"")
        got[value["user_id"]].append(value["event_id"])
        partitions[value["user_id"]].add(record.partition)
        keyed &= record.key == value["user_id"].encode()
    return {
        "limit": limit,
        "sent": summary["sent"],
        "events_per_s": summary["events_per_s"],
        "command_wall_s": round(wall, 2),
        "received": len(records),
        "complete": len(records) == sum(len(v) for v in want.values()),
        "keyed_by_user": keyed,
        "one_partition_per_user": all(len(p) == 1 for p in partitions.values()),
        "per_user_order": got == want,
        "users": len(got),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="replay benchmark and check")
    parser.add_argument("--data", default="/work/shared/data/ml-100k.inter")
    parser.add_argument("--limit", type=int, default=3000)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        for limit in (args.limit, None):
            print(orjson.dumps(run(broker, args.data, limit)).decode(), flush=True)


if __name__ == "__main__":
    main()
