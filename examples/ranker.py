"""A downstream ranker subscribing to nextbehavior's predictions (a minimal example).

It keeps, per user, the newest prediction (by the triggering event's time: delivery is
at-least-once, so a repeat or an older one can arrive) and prints what a ranker would use:
the items to boost and the most likely next behavior. Run it next to a worker:

    python examples/ranker.py --bootstrap 127.0.0.1:9092 --topic behavior-predictions
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer


async def run(bootstrap: str, topic: str, group: str, max_messages: int | None) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,  # one group per ranker service; its instances share the partitions
        auto_offset_reset="earliest",
        value_deserializer=orjson.loads,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    latest: dict[str, dict[str, Any]] = {}
    seen = 0
    try:
        async for msg in consumer:
            p = msg.value
            old = latest.get(p["user_id"])
            if old is None or p["event_timestamp"] >= old["event_timestamp"]:
                latest[p["user_id"]] = p
                boost = [i["item_id"] for i in p["items"][:5]]  # best first
                types = p["next_event_type"]
                nxt = max(types, key=types.get)
                print(f"{p['user_id']}: boost {boost}; next {nxt} ({types[nxt]:.0%})", flush=True)
            seen += 1
            if max_messages is not None and seen >= max_messages:
                break
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="behavior-predictions")
    parser.add_argument("--group", default="example-ranker")
    parser.add_argument("--max", type=int, default=None, help="stop after N predictions")
    args = parser.parse_args()
    asyncio.run(run(args.bootstrap, args.topic, args.group, args.max))


if __name__ == "__main__":
    main()
