"""Run ``nextbehavior worker`` as a subprocess against the embedded broker, and read topics.

Workers are real processes (``python -m nextbehavior.stream worker``), configured through
``NBP_*`` variables, with their log in a file that failing tests print. Shared by the worker,
reliability and operations tests (SIGTERM, SIGKILL, /stats).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.compat import fetch_highwaters
from nextbehavior.stream.worker_process import WORKER_MODULE, ChildProcess


class WorkerProcess(ChildProcess):
    """One worker subprocess; ``env`` adds/overrides ``NBP_*`` settings."""

    def __init__(
        self, broker: EmbeddedBroker, bundle: Path, env: dict[str, str], log_dir: Path, name: str
    ) -> None:
        settings = {
            "NBP_BROKER": broker.url,
            "NBP_BUNDLE": str(bundle),
            "NBP_PROVIDERS": "CPUExecutionProvider",
            "NBP_STATE_DIR": str(log_dir / "state" / name),
            "NBP_SESSION_TIMEOUT_S": "3",
            **env,
        }
        super().__init__(name, WORKER_MODULE, settings, log_dir)

    def tail(self, lines: int = 60) -> str:
        return super().tail(lines)

    def fail(self, why: str) -> None:
        self.kill()
        pytest.fail(f"worker {self.name}: {why}\n--- log tail ---\n{self.tail()}")

    def wait_stats(
        self, check: Callable[[dict[str, Any]], bool], timeout_s: float = 60, what: str = ""
    ) -> dict[str, Any]:
        """Poll ``/stats`` until ``check`` holds (the web server starts after recovery)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                self.fail(f"exited with {self.proc.returncode} while waiting for {what or check}")
            stats = self.stats()
            if stats is not None and check(stats):
                return stats
            if time.monotonic() > deadline:
                self.fail(f"no {what or 'condition'} within {timeout_s}s; last stats {stats}")
            time.sleep(0.1)

    def wait_ready(self, timeout_s: float = 60) -> dict[str, Any]:  # type: ignore[override]
        """Wait until the worker lists assigned partitions; its ``/stats``."""
        return self.wait_stats(lambda s: bool(s["assigned"]), timeout_s, "assigned partitions")

    def terminate(self, timeout_s: float = 30) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.fail(f"did not exit within {timeout_s}s of SIGTERM")
            raise
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, Any]]) -> None:
    """Send ``(key, value)`` records in order (value bytes, or None for a tombstone)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_paced(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, Any]], per_s: float
) -> None:
    """Send records at about ``per_s`` records per second (a steady stream)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        start = time.monotonic()
        for n, (key, value) in enumerate(records):
            await producer.send(topic, value, key=key)
            ahead = start + n / per_s - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, partitions: int, expect: int | None = None, timeout_s: float = 60
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records of ``topic``: everything up to its high watermarks now (``expect`` None), or at
    least ``expect`` records, waiting up to ``timeout_s``."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await fetch_highwaters(bootstrap, tps) if expect is None else {}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if expect is not None and len(out) >= expect:
                break
            if expect is None and await _caught_up(consumer, ends):
                break
            batch = await consumer.getmany(*tps, timeout_ms=200)
            out.extend(r for msgs in batch.values() for r in msgs)
    finally:
        await consumer.stop()
    return out


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets per partition (0 where none)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        out = {}
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            out[p] = offset or 0
        return out
    finally:
        await consumer.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
