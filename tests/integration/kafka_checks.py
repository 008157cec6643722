"""Smoke-test bodies shared by the two broker tiers: the embedded broker (tests/integration) and
a real Apache Kafka in Docker (tests/docker). Each takes a target with ``.bootstrap``
(``HOST:PORT``) and ``.url`` (``kafka://HOST:PORT``) and uses fresh uuid-named topics/groups.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from typer.testing import CliRunner

from nextbehavior.stream.cli import app
from nextbehavior.stream.settings import bootstrap_servers
from nextbehavior.stream.topics import TopicSpec, ensure_topics

N_RECORDS = 100
GROUP_TIMEOUTS: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


class Target(Protocol):
    @property
    def bootstrap(self) -> str: ...

    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class UrlTarget:
    """A broker known only by its ``kafka://`` URL (e.g. printed by `nextbehavior broker`)."""

    url: str

    @property
    def bootstrap(self) -> str:
        return bootstrap_servers(self.url)


def unique(prefix: str) -> str:
    """A fresh name for a topic or group, so tests never share state."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def new_topic(target: Target, prefix: str, partitions: int = 3, **config: str) -> str:
    """Create a uuid-named topic explicitly (never rely on auto-creation)."""
    name = unique(prefix)
    await ensure_topics(target.bootstrap, [TopicSpec(name, partitions, config)], timeout_s=30)
    return name


def partition_counts(target: Target, names: list[str]) -> dict[str, int]:
    """Partition counts as confluent-kafka (librdkafka, not our code) sees them."""
    meta = AdminClient({"bootstrap.servers": target.bootstrap}).list_topics(timeout=10)
    return {n: len(meta.topics[n].partitions) for n in names if n in meta.topics}


def records(n: int = N_RECORDS) -> list[tuple[bytes, bytes]]:
    return [(f"user-{i % 7}".encode(), f'{{"seq": {i}}}'.encode()) for i in range(n)]


def check_per_key_order(got: list[tuple[bytes, bytes]], sent: list[tuple[bytes, bytes]]) -> None:
    """Same multiset of records, and each key's values in the order they were sent."""
    assert sorted(got) == sorted(sent)
    by_key_got: dict[bytes, list[bytes]] = defaultdict(list)
    by_key_sent: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in got:
        by_key_got[key].append(value)
    for key, value in sent:
        by_key_sent[key].append(value)
    assert by_key_got == by_key_sent


def topics_command(target: Target) -> None:
    """`nextbehavior topics create` makes the three topics; a wrong count is a clear error."""
    names = {k: unique(k) for k in ("in", "out", "dlq")}
    env = {
        "NBP_INPUT_TOPIC": names["in"],
        "NBP_OUTPUT_TOPIC": names["out"],
        "NBP_DLQ_TOPIC": names["dlq"],
        "NBP_PARTITIONS": "3",
    }
    runner = CliRunner()
    first = runner.invoke(app, ["topics", "create", "--broker", target.url], env=env)
    assert first.exit_code == 0, first.output
    assert first.stdout.count("created") == 3
    assert partition_counts(target, list(names.values())) == {n: 3 for n in names.values()}

    again = runner.invoke(app, ["topics", "create", "--broker", target.url], env=env)
    assert again.exit_code == 0, again.output
    assert again.stdout.count("exists") == 3

    wrong = runner.invoke(
        app, ["topics", "create", "--broker", target.url, "--partitions", "2"], env=env
    )
    assert wrong.exit_code == 1
    assert f"'{names['in']}' has 3 partitions, expected 2" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    assert partition_counts(target, list(names.values())) == {n: 3 for n in names.values()}


async def roundtrip_aiokafka(target: Target) -> None:
    """100 keyed records through aiokafka; all arrive, per-key order kept."""
    topic = await new_topic(target, "aio", partitions=3)
    sent = records()
    producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=target.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 20
        while len(got) < len(sent) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got.extend((r.key, r.value) for msgs in batch.values() for r in msgs)
    finally:
        await consumer.stop()
    check_per_key_order(got, sent)


def roundtrip_confluent(target: Target) -> None:
    """100 keyed records through confluent-kafka (librdkafka), consumed in a group."""
    topic = asyncio.run(new_topic(target, "rdk", partitions=3))
    sent = records()
    producer = Producer({"bootstrap.servers": target.bootstrap, "acks": "all"})
    for key, value in sent:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(15) == 0
    got = consume_confluent(target, topic, unique("g"), len(sent))
    check_per_key_order(got, sent)


def consume_confluent(
    target: Target, topic: str, group: str, expect: int, timeout_s: float = 30
) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": target.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    got: list[tuple[bytes, bytes]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(got) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got.append((msg.key(), msg.value()))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


async def consumer_group(target: Target) -> None:
    """Two members split the partitions, nothing is lost or doubled, and commits resume."""
    topic = await new_topic(target, "grp", partitions=4)
    group = unique("g")
    members = [
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=target.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **GROUP_TIMEOUTS,
        )
        for _ in range(2)
    ]
    await asyncio.gather(*(m.start() for m in members))
    producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap)
    await producer.start()
    sent = records()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(m.assignment() for m in members):
            await asyncio.gather(*(m.getmany(timeout_ms=200) for m in members))
        assignments = [m.assignment() for m in members]
        assert all(assignments), f"each member should own partitions: {assignments}"
        assert not set.intersection(*map(set, assignments))
        for key, value in sent:
            await producer.send(topic, value, key=key)
        await producer.flush()
        per_member: list[list[tuple[bytes, bytes]]] = [[], []]
        while time.monotonic() < deadline and sum(map(len, per_member)) < len(sent):
            batches = await asyncio.gather(*(m.getmany(timeout_ms=300) for m in members))
            for i, batch in enumerate(batches):
                per_member[i].extend((r.key, r.value) for msgs in batch.values() for r in msgs)
        assert all(per_member), "both members should receive records"
        check_per_key_order(per_member[0] + per_member[1], sent)
        await asyncio.gather(*(m.commit() for m in members))
    finally:
        await asyncio.gather(*(m.stop() for m in members))
    # A new member of the same group starts from the committed offsets: only new records.
    more = records(10)
    for key, value in more:
        await producer.send(topic, b"late-" + value, key=key)
    await producer.stop()
    got = await asyncio.to_thread(consume_confluent, target, topic, group, len(more), 30)
    assert sorted(got) == sorted((k, b"late-" + v) for k, v in more)


def compacted_topic(target: Target) -> None:
    """A topic created with cleanup.policy=compact keeps that config; keyed updates and a
    tombstone read back so that folding by key gives the latest state."""
    topic = asyncio.run(new_topic(target, "cmp", partitions=1, **{"cleanup.policy": "compact"}))
    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    future = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    configs = next(iter(future.values())).result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    producer = Producer({"bootstrap.servers": target.bootstrap})
    updates = [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1"), (b"b", None)]
    for key, value in updates:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(15) == 0
    got = consume_confluent(target, topic, unique("g"), len(updates), timeout_s=20)
    state: dict[bytes, bytes] = {}
    for key, value in got:
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    assert state == {b"a": b"2", b"c": b"1"}
    assert (b"b", None) in got  # the tombstone itself is delivered (compaction keeps it a while)
