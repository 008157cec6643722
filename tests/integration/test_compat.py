"""The broker-compatibility module against the real embedded broker: detection and the
high-water read that Faust's table recovery needs (the recovery itself: test_compat_recovery)."""

from __future__ import annotations

import kafka_checks
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.compat import CompatError, detect_tansu, fetch_highwaters, resolve_compat
from nextbehavior.stream.settings import Settings


def test_detects_the_embedded_broker(broker: EmbeddedBroker) -> None:
    found = detect_tansu(broker.bootstrap)
    assert found.enabled
    assert broker.bootstrap in found.reason


def test_resolve_follows_the_setting(broker: EmbeddedBroker) -> None:
    assert resolve_compat(Settings(broker=broker.url)).enabled  # auto: detected
    assert not resolve_compat(Settings(broker=broker.url, broker_compat="kafka")).enabled
    forced = resolve_compat(Settings(broker="kafka://127.0.0.1:1", broker_compat="tansu"))
    assert forced.enabled and "NBP_BROKER_COMPAT" in forced.reason


def test_auto_needs_a_reachable_broker() -> None:
    with pytest.raises(CompatError, match="cannot tell which broker"):
        resolve_compat(Settings(broker="kafka://127.0.0.1:1"), timeout_s=1)


async def test_fetch_highwaters_sees_what_list_offsets_misses(broker: EmbeddedBroker) -> None:
    """Ten records in one batch: ListOffsets(LATEST) says 1 on Tansu, the Fetch high water 10.

    If the first assertion ever fails, Tansu fixed the quirk and compat may be retired."""
    topic = await kafka_checks.new_topic(broker, "hw", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=100)
    await producer.start()
    try:
        for i in range(10):
            await producer.send(topic, b"%d" % i, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    assert ends[tps[0]] < 10, "the Tansu ListOffsets quirk is gone"
    assert await fetch_highwaters(broker.bootstrap, tps) == {tps[0]: 10, tps[1]: 0}
    assert await fetch_highwaters(broker.bootstrap, []) == {}
