"""Worker start-to-ready time, and table recovery speed (changelog records/s) at a restart.

On the embedded broker: a worker starts on empty topics (start-to-ready, no state), gets a
backlog of synthetic events (``--users`` users, ``--events-per-user`` each on average, so most
states are full at max_len 50), predicts them all and stops (SIGTERM). A second worker then
starts on the same app id and recovers both tables (``sequences`` and the windowed ``activity``)
from their changelogs. Tansu never compacts a changelog, so a restart replays every update ever
made: two records per event. Printed: start-to-ready without and with state, the recovery time
(from the worker's own log lines "Restoring state from changelog topics" .. "Done reading from
changelog topics"), changelog records/s, and a check that the recovered state is right (one
more event per sampled user sees its full history).

    .venv/bin/python bench/recovery.py [--users 400] [--events-per-user 50] [--partitions 4]
        [--bundle DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from nextbehavior.stream.bench_e2e import default_bundle
from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.bundle import read_manifest
from nextbehavior.stream.compat import fetch_highwaters
from nextbehavior.stream.loadgen import OutputCollector, produce_backlog, synthetic_events
from nextbehavior.stream.machine import load_average, machine_info, versions
from nextbehavior.stream.settings import Settings, get_settings
from nextbehavior.stream.topics import TopicSpec, ensure_topics
from nextbehavior.stream.worker_process import WORKER_MODULE, ChildProcess

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_time(log: Path, marker: str) -> float | None:
    """Epoch seconds of the first log line containing ``marker``."""
    for line in log.read_text(errors="replace").splitlines():
        m = LOG_TIME.match(line)
        if m and marker in line:
            return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


async def changelog_records(settings: Settings, app_id: str, partitions: int) -> dict[str, int]:
    out = {}
    for table in ("sequences", "activity"):
        topic = f"{app_id}-{table}-changelog"
        ends = await fetch_highwaters(settings.bootstrap, [(topic, p) for p in range(partitions)])
        out[table] = sum(ends.values())
    return out


async def run(
    args: argparse.Namespace, settings: Settings, bundle: Path, work: Path
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    names = {k: f"bench-recovery-{k}-{tag}" for k in ("events", "predictions", "dlq")}
    await ensure_topics(settings, [TopicSpec(n, args.partitions) for n in names.values()])
    app_id = f"bench-recovery-{tag}"
    env = {
        "NBP_BROKER": settings.broker,
        "NBP_INPUT_TOPIC": names["events"],
        "NBP_OUTPUT_TOPIC": names["predictions"],
        "NBP_DLQ_TOPIC": names["dlq"],
        "NBP_APP_ID": app_id,
        "NBP_BUNDLE": str(bundle),
        "NBP_STATE_DIR": str(work / "state"),
        "NBP_LOG_LEVEL": "INFO",
    }
    manifest = read_manifest(bundle)
    n = args.users * args.events_per_user
    start_ms = int(time.time() * 1000) - n * 1000
    events = synthetic_events(
        n,
        users=args.users,
        items=manifest.items[1:],
        event_types=manifest.event_types[1:],
        start_ms=start_ms,
        step_ms=1000,
    )
    first = ChildProcess(f"first-{tag}", WORKER_MODULE, env, work)
    try:
        ready_empty = await asyncio.to_thread(first.wait_ready)
        print(f"# first worker ready after {ready_empty:.2f} s (no state); {n:,} events ...")
        collector = OutputCollector(settings, names["predictions"], args.partitions)
        await collector.start()
        await produce_backlog(settings, names["events"], events)
        if not await collector.wait_for([e.event_id for e in events], 120 + n / 50):
            raise SystemExit("not every event was predicted")
        await collector.stop()
    finally:
        code = first.stop()
    records = await changelog_records(settings, app_id, args.partitions)
    total = sum(records.values())
    print(f"# first worker exit {code}; changelog records {records}")

    load = load_average()
    second = ChildProcess(f"second-{tag}", WORKER_MODULE, env, work)
    try:
        ready = await asyncio.to_thread(second.wait_ready, 300.0)
        began = log_time(second.log, "Restoring state from changelog topics")
        ended = log_time(second.log, "Done reading from changelog topics")
        recovery_s = (ended - began) if began and ended else None
        # Correctness: one more event for some users; each sees its whole history.
        more = synthetic_events(
            200,
            users=args.users,
            items=manifest.items[1:],
            event_types=manifest.event_types[1:],
            start_ms=start_ms + n * 1000,
            seed=7,
        )
        collector = OutputCollector(settings, names["predictions"], args.partitions)
        await collector.start()
        await produce_backlog(settings, names["events"], more[:1])
        await collector.wait_for([more[0].event_id], 60)
        await collector.stop()
    finally:
        second.stop()
    held = [e for e in events if e.key == more[0].key]
    preds = [orjson.loads(r.value) for r in await _read_all(settings, names["predictions"])]
    after = next(p for p in preds if p["event_id"] == more[0].event_id)
    expected = min(len(held) + 1, manifest.max_len)
    return {
        "events": n,
        "users": args.users,
        "partitions": args.partitions,
        "start_to_ready_s_no_state": round(ready_empty, 2),
        "start_to_ready_s_with_state": round(ready, 2),
        "changelog_records": records,
        "recovery_s": round(recovery_s, 3) if recovery_s is not None else None,
        "recovery_records_per_s": round(total / recovery_s) if recovery_s else None,
        "recovered_history_ok": after["history_length"] == expected,
        "load_avg": load,
        "bundle": str(bundle),
        "machine": machine_info(),
        "versions": versions(),
    }


async def _read_all(settings: Settings, topic: str) -> list[Any]:
    from nextbehavior.stream.reader import read_topics

    out: list[Any] = []
    async for batch in read_topics(settings, [topic]):
        out.extend(batch)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--events-per-user", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bundle", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nextbehavior-recovery-") as tmp:
        work = Path(tmp)
        bundle, model = (args.bundle, "given") if args.bundle else default_bundle(work)
        print(f"# model: {model}")
        with EmbeddedBroker(log_path=work / "broker.log") as broker:
            result = asyncio.run(run(args, get_settings(broker=broker.url), bundle, work))
    print(
        f"start-to-ready: {result['start_to_ready_s_no_state']} s without state, "
        f"{result['start_to_ready_s_with_state']} s with "
        f"{sum(result['changelog_records'].values()):,} changelog records; recovery "
        f"{result['recovery_s']} s = {result['recovery_records_per_s']:,} records/s; "
        f"recovered history right: {result['recovered_history_ok']}; load {result['load_avg']}"
    )
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
