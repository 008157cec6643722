"""What a tailing consumer costs the embedded (Tansu) broker, against what the topic holds.

A consumer that tails a topic (as the worker tails its input, and ``bench e2e`` the output)
sends a Fetch every ``fetch_max_wait_ms`` (Tansu holds each for its whole wait). This measures
the broker's CPU while new records arrive at ``--rate`` a second and one such consumer reads
them, after the topic was filled to each size; as controls, the same on a new, empty topic
(while the filled one still exists), and the consumer idle at the end of the filled topic (no
new records). If only the first grows with size, a Fetch that returns records costs Tansu time
in proportion to what the fetched topic holds (memory storage), which makes latency grow over a
long run on this broker; Apache Kafka finds a fetch offset by index.

    .venv/bin/python bench/broker_fetch.py [--sizes 0,2500,5000,10000] [--seconds 3]
        [--rate 400] [--batch-records 1] [--fetch-wait-ms 10] [--partitions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.machine import load_average, machine_info, versions
from nextbehavior.stream.settings import get_settings
from nextbehavior.stream.topics import TopicSpec, ensure_topics
from nextbehavior.stream.worker_process import process_cpu_seconds

PAYLOAD = b'{"event_id":"e","user_id":"u","item_id":"i","event_type":"view","timestamp":0}' * 2


async def fill(
    producer: AIOKafkaProducer, topic: str, n: int, ends: dict[int, int], per_batch: int = 1
) -> None:
    """Add ``n`` records (keys spread over partitions), about ``per_batch`` to a record batch
    (the producer does not linger: it waits for each batch); ``ends`` gets each partition's next
    offset."""
    futures = []
    for i in range(n):
        futures.append(await producer.send(topic, PAYLOAD, key=str(i).encode()))
        if len(futures) >= per_batch or i == n - 1:
            for meta in await asyncio.gather(*futures):
                ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
            futures = []


async def feed(producer: AIOKafkaProducer, topic: str, rate: float, ends: dict[int, int]) -> None:
    """Send to ``topic`` at ``rate`` records/s until cancelled."""
    sent, t0 = 0, time.monotonic()
    while True:
        await fill(producer, topic, 1, ends)
        sent += 1
        await asyncio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))


async def tail_cost(
    bootstrap: str,
    topic: str,
    ends: dict[int, int],
    args: argparse.Namespace,
    pid: int,
    producer: AIOKafkaProducer | None = None,
) -> float:
    """Broker CPU (% of a core) while one consumer tails ``topic`` from its end, for
    ``args.seconds``; with ``producer``, new records arrive at ``args.rate`` meanwhile."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=args.fetch_wait_ms,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(args.partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, ends.get(tp.partition, 0))
        await consumer.getmany(timeout_ms=200)  # settle the first fetch
        feeding = None
        if producer is not None:
            feeding = asyncio.create_task(feed(producer, topic, args.rate, ends))
        cpu0, t0 = process_cpu_seconds(pid), time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            await consumer.getmany(timeout_ms=args.fetch_wait_ms)
        cpu1, elapsed = process_cpu_seconds(pid), time.monotonic() - t0
        if feeding is not None:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
    finally:
        await consumer.stop()
    assert cpu0 is not None and cpu1 is not None
    return round(100 * (cpu1 - cpu0) / elapsed, 1)


async def run(args: argparse.Namespace, broker: EmbeddedBroker) -> dict[str, Any]:
    settings = get_settings(broker=broker.url)
    assert broker.pid is not None
    fresh = [f"probe-fresh-{size}" for size in args.sizes]
    topics = ["probe-filled", *fresh]
    await ensure_topics(settings, [TopicSpec(t, args.partitions) for t in topics])
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=0)
    await producer.start()
    rows = []
    filled: dict[int, int] = {}
    try:
        for size, new_topic in zip(args.sizes, fresh, strict=True):
            more = size - sum(filled.values())
            await fill(producer, "probe-filled", more, filled, args.batch_records)
            pid, boot = broker.pid, settings.bootstrap
            row = {
                "records_in_topic": sum(filled.values()),
                "reading_new_records": await tail_cost(
                    boot, "probe-filled", filled, args, pid, producer
                ),
                "reading_new_records_of_an_empty_topic": await tail_cost(
                    boot, new_topic, {}, args, pid, producer
                ),
                "idle_at_the_end": await tail_cost(boot, "probe-filled", filled, args, pid),
            }
            rows.append(row)
            print(
                f"{row['records_in_topic']:>7,} records in the topic: broker CPU "
                f"{row['reading_new_records']:5.1f}% reading new records from it, "
                f"{row['reading_new_records_of_an_empty_topic']:5.1f}% from a new topic, "
                f"{row['idle_at_the_end']:5.1f}% idle at its end",
                flush=True,
            )
    finally:
        await producer.stop()
    return {
        "fetch_wait_ms": args.fetch_wait_ms,
        "rate_per_s": args.rate,
        "records_per_batch_when_filling": args.batch_records,
        "partitions": args.partitions,
        "rows": rows,
        "load_avg": load_average(),
        "machine": machine_info(),
        "versions": versions(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: sorted(int(x) for x in s.split(",")),
        default=[0, 2500, 5000, 10000],
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--batch-records", type=int, default=1, help="records per batch when filling"
    )
    parser.add_argument("--rate", type=float, default=400.0, help="new records/s")
    parser.add_argument("--fetch-wait-ms", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        result = asyncio.run(run(args, broker))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
