"""No input record is lost when a worker finishes table recovery (stream/recovery.py).

Faust clears the agents' queues *after* resuming the input partitions and seeking them, so
records that arrive in that window are dropped for good: the cause of the restarted worker
that never predicted the events produced right after its start. ``faust_resume_app.py`` forces
the window open (a pause after the seek, an agent busy on its first record). WITH
``SafeTableManager`` every record is taken exactly once, in order (nothing of the input reaches
the agent before the seek); WITHOUT it (plain Faust) records are lost, so this test fails if
Faust ever fixes the order (then stream/recovery.py can go).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import kafka_checks
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust_apps import start_app

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.topics import TopicSpec, ensure_topics
from nextbehavior.stream.worker_process import stop_process

pytestmark = pytest.mark.timeout(120)

APP = Path(__file__).with_name("faust_resume_app.py")
RECORDS = [f"r{i}" for i in range(5)]


async def _prepare(broker: EmbeddedBroker, app_id: str, source: str) -> None:
    """As before a restart: topics (created up front: BROKER.md), a table entry in the
    changelog (so that recovery reads), one record already processed (committed offset 1),
    and the new records after it; then the worker starts."""
    changelog = f"{app_id}-seen-changelog"
    specs = [TopicSpec(source, 1), TopicSpec(changelog, 1, {"cleanup.policy": "compact"})]
    await ensure_topics(broker.bootstrap, specs)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send(changelog, b"1", key=b'"old"', partition=0)  # json, as the table
        for value in ["old", *RECORDS]:
            await producer.send(source, value.encode(), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()
    group = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=app_id, enable_auto_commit=False
    )
    await group.start()
    try:
        tp = TopicPartition(source, 0)
        group.assign([tp])
        await group.commit({tp: 1})  # "old" is done
    finally:
        await group.stop()


def _run(broker: EmbeddedBroker, out: Path, fix: str, settle_s: float) -> list[str]:
    """Start a fresh app on fresh topics; the records it took, in the order taken, 0.5 s after
    all were taken, or ``settle_s`` after the first one (the others would follow within
    milliseconds)."""
    out.mkdir()
    app_id, source = kafka_checks.unique("rs"), kafka_checks.unique("rs-src")
    asyncio.run(_prepare(broker, app_id, source))
    env = {"RS_BROKER": broker.url, "RS_APP_ID": app_id, "RS_SOURCE": source, "RS_OUT": str(out)}
    log = out / "worker.log"
    proc = start_app(APP, {**env, "RS_FIX": fix}, out, log)
    seen_file = out / "seen.txt"
    try:
        deadline = time.monotonic() + 60
        first_at = None
        while True:
            seen = seen_file.read_text().split() if seen_file.exists() else []
            if first_at is None and seen:
                first_at = time.monotonic()
            if set(seen) >= set(RECORDS):
                time.sleep(0.5)  # a repeat would come within milliseconds
                return seen_file.read_text().split()
            if first_at and time.monotonic() > first_at + settle_s:
                return seen
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                pytest.fail(f"worker ({fix}) took {sorted(seen)} and then nothing:\n{tail}")
            time.sleep(0.05)
    finally:
        stop_process(proc, timeout_s=20, kill_wait_s=5)


def test_records_arriving_as_recovery_ends_are_not_lost(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    with_fix = _run(broker, tmp_path / "on", "on", settle_s=15)
    # Each once, in order: nothing of the input reaches the agent before the seek.
    assert with_fix == RECORDS

    without_fix = set(_run(broker, tmp_path / "off", "off", settle_s=8))
    assert without_fix and len(without_fix) < len(RECORDS), (
        f"plain Faust lost nothing ({without_fix}): is stream/recovery.py still needed?"
    )
