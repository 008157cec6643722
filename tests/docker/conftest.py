"""Docker tier: the integration bodies against a real Apache Kafka (KRaft, single node).

Runs only where a Docker engine answers; otherwise every test here is skipped with the reason.
The image is the same pinned ``apache/kafka`` as docker-compose.yml. testcontainers' Kafka
module drives Confluent's cp-kafka start scripts, which the apache/kafka image does not have, so
the container is testcontainers' generic ``DockerContainer`` configured for KRaft, with the
client port mapped to the same number on the host (so the advertised address just works).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nextbehavior.stream.broker import free_port
from nextbehavior.stream.probe import ProbeError, metadata

# The smoke bodies live with the integration tier; both tiers run the same code.
sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))

KAFKA_IMAGE = "apache/kafka:3.9.1"
START_TIMEOUT_S = 180


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/docker carries the ``docker`` marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


def docker_unavailable() -> str | None:
    """None if a Docker engine answers a ping within a few seconds, else why not."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return "the docker SDK is not installed (pip install -e '.[dev]')"
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except (DockerException, OSError) as exc:
        return f"no Docker engine answers ({type(exc).__name__}): {str(exc)[:120]}"
    return None


@dataclass(frozen=True)
class KafkaTarget:
    bootstrap: str

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaTarget]:
    """A fresh single-node Apache Kafka for the session (skips without Docker)."""
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient

    host = DockerClient().host()
    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(port, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS=f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://0.0.0.0:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://{host}:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
        )
    )
    container.start()
    target = KafkaTarget(f"{host}:{port}")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                metadata(target.bootstrap, timeout_s=2)
                break
            except ProbeError as exc:
                if time.monotonic() > deadline:
                    logs = b"".join(container.get_logs()).decode(errors="replace")[-3000:]
                    pytest.fail(f"Kafka in Docker did not answer: {exc}\n{logs}")
                time.sleep(1)
        yield target
    finally:
        container.stop()
