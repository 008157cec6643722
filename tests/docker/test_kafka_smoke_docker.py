"""The integration smoke bodies against a real Apache Kafka, plus what compat must do there:
detect that it is NOT Tansu, and read the same high water as ListOffsets."""

from __future__ import annotations

import kafka_checks
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka_checks import Target

from nextbehavior.stream.compat import detect_tansu, fetch_highwaters, resolve_compat
from nextbehavior.stream.settings import Settings


def test_topics_command(kafka: Target) -> None:
    kafka_checks.topics_command(kafka)


async def test_roundtrip_aiokafka(kafka: Target) -> None:
    await kafka_checks.roundtrip_aiokafka(kafka)


def test_roundtrip_confluent(kafka: Target) -> None:
    kafka_checks.roundtrip_confluent(kafka)


async def test_consumer_group(kafka: Target) -> None:
    await kafka_checks.consumer_group(kafka)


def test_compacted_topic(kafka: Target) -> None:
    kafka_checks.compacted_topic(kafka)


def test_compat_stays_off_on_kafka(kafka: Target) -> None:
    assert not detect_tansu(kafka.bootstrap).enabled
    assert not resolve_compat(Settings(broker=kafka.url)).enabled


async def test_fetch_highwaters_equals_end_offsets(kafka: Target) -> None:
    topic = await kafka_checks.new_topic(kafka, "hw", partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=100)
    await producer.start()
    try:
        for i in range(10):
            await producer.send(topic, b"%d" % i, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([tp])
    finally:
        await consumer.stop()
    assert ends[tp] == 10
    assert await fetch_highwaters(kafka.bootstrap, [tp]) == {tp: 10}
