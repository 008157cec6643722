"""A worker does not fetch back its own changelog records (stream/recovery.py).

Faust "pauses" an active table's changelog partition after recovery only by no longer asking
aiokafka for its records; aiokafka keeps fetching it, so the table's own changelog writes come
back and sit in its buffer, unasked for, which delays every later fetch from that broker by
aiokafka's prefetch backoff (100 ms each: the input stalls after every start). WITH
``SafeTableManager`` the changelog partition is paused in aiokafka and nothing of it is
fetched; WITHOUT it (plain Faust) the records come back, so this test fails if Faust or aiokafka
ever stops doing that (then the pause can go).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import kafka_checks
import pytest
from aiokafka import AIOKafkaProducer
from faust_apps import start_app

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.topics import TopicSpec, ensure_topics
from nextbehavior.stream.worker_process import stop_process

pytestmark = pytest.mark.timeout(120)

APP = Path(__file__).with_name("faust_changelog_app.py")
RECORDS = 5


async def _send(broker: EmbeddedBroker, source: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(RECORDS):  # one by one: each table write can be fetched back
            await producer.send_and_wait(source, f"k{n % 2}".encode(), key=b"k")
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


def _run(broker: EmbeddedBroker, out: Path, fix: str) -> dict[str, Any]:
    """Run the app on fresh topics, send it records once it reports, and return its report
    0.5 s after it took them all."""
    out.mkdir()
    app_id, source = kafka_checks.unique("cp"), kafka_checks.unique("cp-src")
    changelog = f"{app_id}-counts-changelog"
    specs = [TopicSpec(source, 1), TopicSpec(changelog, 1, {"cleanup.policy": "compact"})]
    asyncio.run(ensure_topics(broker.bootstrap, specs))
    env = {"CP_BROKER": broker.url, "CP_APP_ID": app_id, "CP_SOURCE": source, "CP_OUT": str(out)}
    log = out / "app.log"
    proc = start_app(APP, {**env, "CP_FIX": fix}, out, log)
    report = out / "report.json"
    try:
        deadline = time.monotonic() + 60
        while "Worker ready" not in log.read_text(errors="replace") or not report.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"app ({fix}) never got ready:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        asyncio.run(_send(broker, source))
        while json.loads(report.read_text())["taken"] < RECORDS:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"app ({fix}) did not take every record:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(0.5)  # room for a fetch of the changelog's last write
        body: dict[str, Any] = json.loads(report.read_text())
        body["changelog"] = f"{changelog}:0"
        return body
    finally:
        stop_process(proc, timeout_s=20, kill_wait_s=5)


def test_the_changelog_is_paused_in_aiokafka_not_fetched_back(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    fixed = _run(broker, tmp_path / "on", "on")
    assert fixed["changelog"] in fixed["paused"], fixed
    assert fixed["changelog"] not in fixed["buffered"], fixed

    plain = _run(broker, tmp_path / "off", "off")
    assert plain["changelog"] in plain["buffered"], (
        f"plain Faust no longer fetches its own changelog back ({plain}): "
        "is the pause in stream/recovery.py still needed?"
    )
