"""Helpers for the replay/tail/monitor tests: uuid-named topic sets, reading a topic, env."""

from __future__ import annotations

import asyncio
import uuid

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.reader import Record, read_topics
from nextbehavior.stream.settings import Settings, get_settings
from nextbehavior.stream.topics import ensure_topics

PARTITIONS = 4


def topic_settings(broker: EmbeddedBroker) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = get_settings(
        broker=broker.url,
        input_topic=f"events-{tag}",
        output_topic=f"predictions-{tag}",
        dlq_topic=f"events-{tag}.dlq",
        partitions=PARTITIONS,
    )
    asyncio.run(
        ensure_topics(
            settings,
            {
                t: PARTITIONS
                for t in (settings.input_topic, settings.output_topic, settings.dlq_topic)
            },
        )
    )
    return settings


def read_all(settings: Settings, topic: str) -> list[Record]:
    async def go() -> list[Record]:
        out: list[Record] = []
        async for batch in read_topics(settings, [topic], idle_s=10.0):
            out.extend(batch)
        return out

    return asyncio.run(go())


def env(settings: Settings) -> dict[str, str]:
    return {
        "NBP_BROKER": settings.broker,
        "NBP_INPUT_TOPIC": settings.input_topic,
        "NBP_OUTPUT_TOPIC": settings.output_topic,
        "NBP_DLQ_TOPIC": settings.dlq_topic,
    }
