"""Exactly-once on a real Apache Kafka (skipped without Docker): the worker with
``NBP_PROCESSING_GUARANTEE=exactly_once`` is SIGKILLed mid-stream and restarted; a consumer
reading with ``isolation_level=read_committed`` sees exactly one prediction per event, each
made from the right history (the embedded broker refuses this mode: test_reliability.py)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka_checks import Target, new_topic, unique
from worker_proc import WorkerProcess, produce_paced, run  # (tests/docker/conftest.py: path)

from nextbehavior.stream.events import parse_prediction

PARTITIONS = 2


async def committed_predictions(target: Target, topic: str, expect: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=target.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    out: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 120
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(*tps, timeout_ms=500)
            got = [r for msgs in batch.values() for r in msgs]
            out.extend(got)
            if got:
                quiet_since = time.monotonic()
            elif len(out) >= expect and time.monotonic() - quiet_since > 5:
                break  # everything there, and no late duplicate for 5 s
    finally:
        await consumer.stop()
    return [parse_prediction(r.value) for r in out]


def test_exactly_once_survives_sigkill(kafka: Target, tiny_bundle: Path, tmp_path: Path) -> None:
    names = [run(new_topic(kafka, p, PARTITIONS)) for p in ("events", "preds", "dlq")]
    env = {
        "NBP_INPUT_TOPIC": names[0],
        "NBP_OUTPUT_TOPIC": names[1],
        "NBP_DLQ_TOPIC": names[2],
        "NBP_APP_ID": unique("eos"),
        "NBP_PROCESSING_GUARANTEE": "exactly_once",
        "NBP_BROKER_COMPAT": "kafka",
        "NBP_SESSION_TIMEOUT_S": "6",  # Kafka's group.min.session.timeout.ms
    }
    users = [f"x{n}" for n in range(20)]
    sent = [
        (
            u.encode(),
            orjson.dumps(
                {
                    "event_id": f"{u}-{k}",
                    "user_id": u,
                    "item_id": f"i{k + 1}",
                    "event_type": "view",
                    "timestamp": 1_700_000_000_000 + k,
                }
            ),
        )
        for k in range(8)
        for u in users
    ]
    first = WorkerProcess(kafka, tiny_bundle, env, tmp_path, "first")  # type: ignore[arg-type]
    second = None
    try:
        first.wait_ready(120)

        async def stream_and_kill() -> None:
            sending = asyncio.create_task(produce_paced(kafka.bootstrap, names[0], sent, per_s=20))
            await asyncio.to_thread(
                first.wait_stats, lambda s: s["events"].get("predicted", 0) >= 40, 90, "40 done"
            )
            await asyncio.sleep(1.3)  # somewhere inside a transaction
            first.kill()
            await sending

        run(stream_and_kill())
        second = WorkerProcess(kafka, tiny_bundle, env, tmp_path, "second")  # type: ignore[arg-type]
        second.wait_ready(120)
        preds = run(committed_predictions(kafka, names[1], len(sent)))
        counts = Counter(p.event_id for p in preds)
        assert set(counts) == {orjson.loads(v)["event_id"] for _, v in sent}
        assert set(counts.values()) == {1}, counts.most_common(3)  # no duplicate is visible
        for p in preds:
            assert p.history_length == int(p.event_id.rsplit("-", 1)[1]) + 1
        assert second.terminate()[0] == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()
