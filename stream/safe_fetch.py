"""Faust consumer fetches that never let aiokafka hand over records Faust will throw away.

The bug (faust-streaming 0.15.3 with aiokafka 0.14.0; found here, not yet reported upstream):
Faust's fetcher asks aiokafka for records on its consumer thread with
``fetcher.fetched_records(<Faust's set of active partitions>, timeout=1.0)``, passing its live
set object. aiokafka moves a partition's position past every record it hands over. Faust then
drops, on its main thread, every record of a call during which the consumer generation changed,
and every record of a partition no longer in its active set. Two ways that loses records:

- A call waiting for records when a rebalance starts waits for the new assignment and then
  carries on in it: it hands over records fetched for the *new* assignment (changelog
  partitions, which nothing pauses in aiokafka, after table recovery has sought them), and Faust
  drops them for the generation change. Recovery then waits for records already consumed.
- At an assignment Faust empties its active set (it pauses everything until recovery resumes
  what it needs), and aiokafka reads an empty set as "every partition".

Seen as: after a second worker left, the first worker's recovery logged "No event received for
active tp" for the changelog partitions it had read as standby and now owned, forever, with
aiokafka's position at the partition's end and Faust's read offset unset
(``test_reliability.py::test_a_worker_joins_and_leaves_mid_stream``, about 1 run in 5 beside four
busy loops).

The fix, :func:`fetch_guarded`, is what :class:`SafeConsumerThread` uses instead: it fetches for
a copy of the active set (never an empty one), and before returning, on the consumer thread
where nothing else can seek meanwhile, it seeks back to its first record every partition whose
records Faust would drop: all of them when aiokafka's assignment changed during the call, else
those no longer active (partitions held back for a full agent buffer excepted: Faust takes their
records). A seek back only undoes the hand-over, so nothing is skipped and nothing is read
twice. Left: a partition paused on Faust's main thread after this returns still has its records
dropped there; Faust pauses only at an assignment (those records belong to the old one, which
the new one re-reads) and at the end of active recovery (changelog records past the recovered
high water: this worker's own writes, already in its tables).
Proven by ``tests/integration/test_safe_fetch.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError
from faust.transport.drivers import aiokafka as driver

logger = logging.getLogger(__name__)

Records = Mapping[TopicPartition, Sequence[ConsumerRecord[Any, Any]]]

_REPLACED = "_fetch_records"
if not callable(getattr(driver.AIOKafkaConsumerThread, _REPLACED, None)):  # pragma: no cover
    raise ImportError(
        "this faust-streaming has no AIOKafkaConsumerThread._fetch_records: re-check "
        "stream/safe_fetch.py against it (tests/integration/test_safe_fetch.py)"
    )


def _assignment(consumer: AIOKafkaConsumer) -> object | None:
    """aiokafka's current assignment object: a new one at every (re)assignment."""
    subscription = consumer._subscription.subscription
    return None if subscription is None else subscription.assignment


async def fetch_guarded(
    consumer: AIOKafkaConsumer,
    active: Collection[TopicPartition],
    *,
    timeout: float = 0.0,
    max_records: int | None = None,
    buffered: Collection[TopicPartition] = (),
) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
    """Records of ``active`` partitions (a set the caller may change meanwhile), as aiokafka's
    ``fetched_records``, minus those it would throw away (see the module doc), which stay
    unread; records of ``buffered`` partitions (Faust's, paused for a full agent buffer) are
    taken like Faust takes them. Call it on the aiokafka consumer's own event loop."""
    fetcher = consumer._fetcher
    if consumer._closed or fetcher._closed:
        raise ConsumerStoppedError()
    wanted = frozenset(active)  # one C-level copy of a set: atomic under the GIL
    if not wanted:  # aiokafka would read an empty set as "every partition"
        return {}
    assignment = _assignment(consumer)
    with consumer._subscription.fetch_context():
        records = await fetcher.fetched_records(wanted, timeout=timeout, max_records=max_records)
    if not records:
        return {}
    if _assignment(consumer) is not assignment:
        _put_back(consumer, records, "fetched across a rebalance")  # Faust drops them all
        return {}
    inactive = {
        tp: batch for tp, batch in records.items() if tp not in active and tp not in buffered
    }
    if inactive:
        _put_back(consumer, inactive, "of partitions paused meanwhile")
    return {tp: list(batch) for tp, batch in records.items() if tp not in inactive}


def _put_back(consumer: AIOKafkaConsumer, records: Records, why: str) -> None:
    """Seek each partition back to its first handed-over record: its position before (or past
    offsets that hold no record, such as transaction markers)."""
    owned = consumer.assignment()
    kept = {tp: batch for tp, batch in records.items() if batch and tp in owned}
    for tp, batch in kept.items():
        consumer.seek(tp, batch[0].offset)
    if not kept:  # all of them were of partitions aiokafka no longer owns: nothing to keep
        return
    logger.info(
        "kept %d records %s unread (Faust would drop them): %s",
        sum(map(len, kept.values())),
        why,
        ", ".join(f"{tp.topic}[{tp.partition}]@{batch[0].offset}" for tp, batch in kept.items()),
    )


class SafeConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, fetching through :func:`fetch_guarded`."""

    async def _fetch_records(
        self,
        consumer: AIOKafkaConsumer,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        if active_partitions is None:  # a client-only app reads every partition: Faust's way
            every = cast(Any, active_partitions)  # typed Set[TP] in Faust, but None here
            return await super()._fetch_records(consumer, every, timeout, max_records)
        if not self.consumer.flow_active:
            return {}
        return await fetch_guarded(
            consumer,
            active_partitions,
            timeout=timeout or 0.0,
            max_records=max_records,
            buffered=self.consumer._buffered_partitions,
        )


def safe_transport(app: Any, thread_class: type[SafeConsumerThread] = SafeConsumerThread) -> Any:
    """A Faust aiokafka transport for ``app`` whose consumer runs ``thread_class``."""

    class SafeConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
            return thread_class(self, loop=self.loop, beacon=self.beacon)

    class SafeTransport(driver.Transport):
        Consumer = SafeConsumer

    return SafeTransport(app.conf.broker_consumer, app)


def uses_aiokafka(app: Any) -> bool:
    """Whether a Faust ``app`` consumes through Faust's aiokafka transport (``kafka://``,
    ``aiokafka://``), the one these fixes (and the Tansu ones) are written for."""
    return str(app.conf.broker_consumer[0].scheme) in ("kafka", "aiokafka")


def install_safe_fetch(app: Any) -> bool:
    """Give a Faust ``app`` (before it starts) the safe fetches; False (and a warning) for a
    transport other than aiokafka, which is left as it is."""
    if not uses_aiokafka(app):
        logger.warning(
            "safe fetches need Faust's aiokafka transport, not %s: left out", app.conf.broker
        )
        return False
    app.transport = safe_transport(app)
    return True
