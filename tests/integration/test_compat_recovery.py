"""Faust table recovery on the embedded broker, with and without the compat fix.

A plain Faust table (``faust_recovery_app.py``, one partition) gets N updates from one worker.
Then a fresh worker (memory store: all state comes from the changelog) recovers the table and
dumps it. WITH ``apply_compat`` it recovers all N; WITHOUT it recovery trusts Tansu's
ListOffsets and stops early. The "without" run asserts the loss, so this test fails if the
fix ever stops mattering (then the fix can go). Workers run as subprocesses (Faust owns its
loop and signals); each run takes a few seconds (JoinGroup is held session_timeout/2 = 3 s).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import kafka_checks
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust_apps import start_app

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.compat import fetch_highwaters
from nextbehavior.stream.topics import TopicSpec, ensure_topics

APP = Path(__file__).with_name("faust_recovery_app.py")
N = 30


class Worker:
    """One `faust worker` subprocess of the test app; its log goes to a file."""

    def __init__(self, broker: EmbeddedBroker, env: dict[str, str], out: Path, name: str) -> None:
        self.log = out / f"{name}.log"
        self.proc = start_app(
            APP, {**env, "RT_BROKER": broker.url, "RT_OUT": str(out)}, out, self.log
        )

    def wait_for(self, path: Path, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"no {path.name} after {timeout_s}s:\n{self.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Faust stops gracefully (flushes the producer, commits offsets)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                pytest.fail(f"worker ignored SIGTERM:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def _send(broker: EmbeddedBroker, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, key=b"k")
        await producer.flush()
    finally:
        await producer.stop()


async def _end_offset(broker: EmbeddedBroker, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


def _recover(broker: EmbeddedBroker, env: dict[str, str], out: Path, fix: str) -> dict[str, int]:
    """Start a read-only worker, let it recover, make it dump the table, stop it."""
    name = f"dump-{fix}"
    asyncio.run(_send(broker, env["RT_SOURCE"], [f"dump:{name}".encode()]))
    worker = Worker(broker, {**env, "RT_MODE": "read", "RT_FIX": fix}, out, name)
    try:
        worker.wait_for(out / f"{name}.json")
    finally:
        worker.stop()
    table: dict[str, int] = json.loads((out / f"{name}.json").read_text())
    return table


def test_table_recovery_needs_the_fix(broker: EmbeddedBroker, tmp_path: Path) -> None:
    app_id = kafka_checks.unique("rt")
    source = kafka_checks.unique("rt-src")
    changelog = f"{app_id}-keys-changelog"
    asyncio.run(
        ensure_topics(
            broker.bootstrap,
            [TopicSpec(source, 1), TopicSpec(changelog, 1, {"cleanup.policy": "compact"})],
        )
    )
    env = {"RT_APP_ID": app_id, "RT_SOURCE": source, "RT_N": str(N)}

    asyncio.run(_send(broker, source, [str(i).encode() for i in range(N)]))
    writer = Worker(broker, {**env, "RT_MODE": "write", "RT_FIX": "on"}, tmp_path, "write")
    try:
        writer.wait_for(tmp_path / "written")
    finally:
        writer.stop()

    tp = TopicPartition(changelog, 0)
    true_end = asyncio.run(fetch_highwaters(broker.bootstrap, [tp]))[tp]
    assert true_end == N, "every table update reached the changelog"
    reported_end = asyncio.run(_end_offset(broker, tp))
    assert reported_end < N, "changelog batches hid the Tansu quirk: the test proves nothing"

    with_fix = _recover(broker, env, tmp_path, "on")
    assert with_fix == {f"k{i}": i for i in range(N)}

    without_fix = _recover(broker, env, tmp_path, "off")
    assert len(without_fix) < N, "recovery without the fix lost nothing: is the fix still needed?"
    assert set(without_fix.items()) <= set(with_fix.items())
