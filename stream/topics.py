"""Create topics with explicit partition counts, and check the ones that already exist.

Every topic is created before workers or producers start (BROKER.md: the embedded broker
auto-creates unknown topics with 4 partitions, even on a subscribe). A topic that exists with
another partition count is an error, never a silent mismatch. Never describes a topic by name
before knowing it exists: on the embedded broker that would create it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from nextbehavior.stream.connection import aiokafka_options
from nextbehavior.stream.settings import Settings, bootstrap_servers

logger = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS: Final = 36
CREATED: Final = "created"
EXISTS: Final = "exists"


class TopicError(RuntimeError):
    """A topic could not be created, or exists with the wrong shape; one-line reason."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic to have: name, partition count, and configs for creation (``cleanup.policy``)."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


def app_topics(settings: Settings) -> list[TopicSpec]:
    """The input, output and dead-letter topics, each with ``settings.partitions``."""
    names = (settings.input_topic, settings.output_topic, settings.dlq_topic)
    return [TopicSpec(name, settings.partitions) for name in names]


def _specs(topics: Mapping[str, int] | Iterable[TopicSpec]) -> list[TopicSpec]:
    if isinstance(topics, Mapping):
        specs = [TopicSpec(name, int(count)) for name, count in topics.items()]
    else:
        specs = list(topics)
    for spec in specs:
        if not spec.name or spec.partitions < 1:
            raise TopicError(f"topic {spec.name!r}: need a name and at least 1 partition")
    return specs


def _options(target: Settings | str) -> dict[str, Any]:
    if isinstance(target, Settings):
        return aiokafka_options(target)
    return {"bootstrap_servers": bootstrap_servers(target)}


async def _partition_counts(admin: AIOKafkaAdminClient, wanted: set[str] | None) -> dict[str, int]:
    names = set(await admin.list_topics())
    if wanted is not None:
        names &= wanted
    if not names:
        return {}
    out: dict[str, int] = {}
    for topic in await admin.describe_topics(sorted(names)):
        if topic.get("error_code", 0) == 0:
            out[topic["topic"]] = len(topic["partitions"])
    return out


async def _with_admin(target: Settings | str, timeout_s: float, work: Any) -> Any:
    options = _options(target)
    admin = AIOKafkaAdminClient(**options)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            return await work(admin)
    except TimeoutError:
        raise TopicError(
            f"broker {options['bootstrap_servers']} did not answer within {timeout_s:g}s"
        ) from None
    except KafkaConnectionError:
        raise TopicError(f"cannot reach broker {options['bootstrap_servers']}") from None
    except KafkaError as exc:
        raise TopicError(f"broker {options['bootstrap_servers']}: {exc}") from None
    finally:
        await admin.close()


async def list_topics(target: Settings | str, *, timeout_s: float = 30.0) -> dict[str, int]:
    """Every topic on the broker with its partition count."""

    async def work(admin: AIOKafkaAdminClient) -> dict[str, int]:
        return await _partition_counts(admin, None)

    result: dict[str, int] = await _with_admin(target, timeout_s, work)
    return dict(sorted(result.items()))


async def ensure_topics(
    target: Settings | str,
    topics: Mapping[str, int] | Iterable[TopicSpec],
    *,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
) -> dict[str, str]:
    """Create missing topics, check existing ones. Returns ``{name: "created"|"exists"}``.

    ``target`` is a Settings (bootstrap + security) or a bootstrap address/``kafka://`` URL.
    Raises :class:`TopicError` naming every topic whose partition count differs.
    """
    specs = _specs(topics)
    if replication_factor is None:
        replication_factor = target.replication_factor if isinstance(target, Settings) else 1

    async def work(admin: AIOKafkaAdminClient) -> dict[str, str]:
        wanted = {spec.name for spec in specs}
        existing = await _partition_counts(admin, wanted)
        status = {spec.name: EXISTS for spec in specs if spec.name in existing}
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            new = [
                NewTopic(s.name, s.partitions, replication_factor, topic_configs=dict(s.config))
                for s in missing
            ]
            response = await admin.create_topics(new)
            for err in response.to_object()["topic_errors"]:
                code, name = err["error_code"], err["topic"]
                if code == TOPIC_ALREADY_EXISTS:  # created meanwhile by someone else
                    status[name] = EXISTS
                elif code:
                    raise TopicError(
                        f"cannot create topic {name!r}: {err.get('error_message') or 'error'} "
                        f"(Kafka error code {code})"
                    )
                else:
                    status[name] = CREATED
                    logger.info("created topic %s", name)
            existing = await _partition_counts(admin, wanted)
        problems = []
        for spec in specs:
            have = existing.get(spec.name)
            if have is None:
                problems.append(f"{spec.name!r} is missing after creation")
            elif have != spec.partitions:
                problems.append(f"{spec.name!r} has {have} partitions, expected {spec.partitions}")
        if problems:
            raise TopicError(
                "topic check failed: "
                + "; ".join(problems)
                + " (delete and recreate it, or set NBP_PARTITIONS / --partitions to match)"
            )
        return {spec.name: status[spec.name] for spec in specs}

    result: dict[str, str] = await _with_admin(target, timeout_s, work)
    return result
