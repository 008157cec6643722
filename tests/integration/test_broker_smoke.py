"""The embedded broker serves our clients and one that is not ours (confluent-kafka).

The bodies live in ``kafka_checks`` and run unchanged against Apache Kafka in tests/docker.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

import kafka_checks
import pytest

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.probe import ProbeError, metadata


def test_topics_command(broker: EmbeddedBroker) -> None:
    kafka_checks.topics_command(broker)


async def test_roundtrip_aiokafka(broker: EmbeddedBroker) -> None:
    await kafka_checks.roundtrip_aiokafka(broker)


def test_roundtrip_confluent(broker: EmbeddedBroker) -> None:
    kafka_checks.roundtrip_confluent(broker)


async def test_consumer_group(broker: EmbeddedBroker) -> None:
    await kafka_checks.consumer_group(broker)


def test_compacted_topic(broker: EmbeddedBroker) -> None:
    kafka_checks.compacted_topic(broker)


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            pytest.fail(f"`nextbehavior broker` printed nothing within {timeout_s}s")
    return proc.stdout.readline().strip()


def test_broker_command_serves_confluent_kafka() -> None:
    """`nextbehavior broker` in a subprocess: prints its URL, serves `topics create` and
    librdkafka (100 records), and stops cleanly on SIGTERM, taking the broker with it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nextbehavior.stream", "broker", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _first_line(proc, 30)
        assert url.startswith("kafka://127.0.0.1:"), url
        target = kafka_checks.UrlTarget(url)
        created = subprocess.run(
            [sys.executable, "-m", "nextbehavior.stream", "topics", "create", "--broker", url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "NBP_PARTITIONS": "4"},
        )
        assert created.returncode == 0, created.stderr
        names = [line.split("\t")[0] for line in created.stdout.splitlines()]
        assert kafka_checks.partition_counts(target, names) == {n: 4 for n in names}
        kafka_checks.roundtrip_confluent(target)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        finally:
            proc.kill()
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    time.sleep(0.2)
    with pytest.raises(ProbeError):
        metadata(target.bootstrap, timeout_s=1)
