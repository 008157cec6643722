"""Broker compatibility: what a Faust app needs to run correctly on the embedded Tansu broker.

Applied only when the broker is Tansu (BROKER.md, "Quirks"), never silently on Apache Kafka:
``Settings.broker_compat`` is ``tansu`` (always on), ``kafka`` (never) or ``auto`` (on when the
broker's Metadata cluster id starts with ``tansu``, or its ApiVersions answer lacks both
OffsetForLeaderEpoch (23) and CreatePartitions (37), which every Apache Kafka >= 1.0 has;
TLS/SASL brokers count as Kafka). When on, a WARNING says so, with the reason.

What it changes, when on:

1. **Recovery high water.** Tansu answers ListOffsets(LATEST) with the newest *batch's* base
   offset + 1, so ``consumer.end_offsets()`` is too small and Faust's table recovery stops
   early and loses updates. Faust (faust-streaming 0.15.3) gets the changelog end offsets in
   ``Recovery._build_highwaters`` via ``Consumer.highwaters()`` ->
   ``AIOKafkaConsumerThread._highwaters()``, which calls ``end_offsets``. The fix replaces that
   one method, for this app only, by :func:`fetch_highwaters`: a short-lived group-less consumer
   fetches from each partition's last batch and reads the high watermark that the Fetch response
   carries (which Tansu reports right). Installed by giving the app a transport subclass; no
   global monkey-patching. Proven by ``tests/integration/test_compat_recovery.py``. How much
   a restart without the fix loses varies: Faust (``Recovery._slurp_changelogs``) still
   applies records past the wrong end while another changelog partition is recovering, so
   with several partitions a restart can lose nothing (that test uses one partition and one
   table, so the loss always shows).
2. **Short group timeouts.** Tansu holds each JoinGroup for session_timeout/2, so Faust's 60 s
   default makes every start take ~30 s: session timeout <= 6 s, heartbeat <= 1 s.
3. **Short fetch waits.** Tansu holds every Fetch for its whole max wait, even when records
   arrive meanwhile, and Faust's worker consumer waits up to 1500 ms (fixed in
   ``_create_worker_consumer``): a quiet stream then gets ~0.4 s p50 latency from the fetch
   alone (measured; 10 ms waits: ~3 ms). The worker consumer waits at most
   ``TANSU_FETCH_MAX_WAIT_MS``; an idle consumer sends ~100 small fetches a second instead.
4. **At-least-once only.** Tansu cannot do aiokafka's idempotent/transactional producer:
   ``processing_guarantee="exactly_once"`` is refused with a clear error.

Usage (the worker)::

    compat = resolve_compat(settings)        # BrokerCompat(enabled, reason); probes if "auto"
    app = faust.App(settings.app_id, broker=settings.broker, ...)
    apply_compat(app, compat)                # before the app starts; no-op when disabled
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from nextbehavior.stream.probe import ProbeError, api_versions, first_answer
from nextbehavior.stream.settings import Settings

logger = logging.getLogger(__name__)

TANSU_SESSION_TIMEOUT_S: Final = 6.0
TANSU_HEARTBEAT_S: Final = 1.0
TANSU_FETCH_MAX_WAIT_MS: Final = 10
_KAFKA_ONLY_APIS: Final = {23: "OffsetForLeaderEpoch", 37: "CreatePartitions"}


class CompatError(RuntimeError):
    """Broker compatibility could not be decided or applied; one-line reason."""


@dataclass(frozen=True, slots=True)
class BrokerCompat:
    """Whether the Tansu fixes apply, and why (for logs and ``nextbehavior`` output)."""

    enabled: bool
    reason: str


def detect_tansu(bootstrap: str, timeout_s: float = 5.0) -> BrokerCompat:
    """Ask the broker (plain socket, no client) whether it is Tansu. Raises ProbeError."""
    address, info = first_answer(bootstrap, timeout_s)
    cluster_id = info.cluster_id or ""
    if cluster_id.lower().startswith("tansu"):
        return BrokerCompat(True, f"broker {address} has cluster id {cluster_id!r}")
    apis = api_versions(address, timeout_s)
    lacking = [name for key, name in _KAFKA_ONLY_APIS.items() if key not in apis]
    if len(lacking) == len(_KAFKA_ONLY_APIS):
        return BrokerCompat(True, f"broker {address} lacks the {' and '.join(lacking)} APIs")
    return BrokerCompat(False, f"broker {address} (cluster id {cluster_id!r}) looks like Kafka")


def resolve_compat(settings: Settings, timeout_s: float = 5.0) -> BrokerCompat:
    """Decide from ``settings.broker_compat``, probing the broker when it is ``auto``."""
    if settings.broker_compat == "tansu":
        return BrokerCompat(True, "NBP_BROKER_COMPAT=tansu")
    if settings.broker_compat == "kafka":
        return BrokerCompat(False, "NBP_BROKER_COMPAT=kafka")
    if settings.security_protocol != "PLAINTEXT":
        return BrokerCompat(False, f"{settings.security_protocol} broker: assumed Apache Kafka")
    try:
        return detect_tansu(settings.bootstrap, timeout_s)
    except ProbeError as exc:
        raise CompatError(
            f"cannot tell which broker {settings.bootstrap} is ({exc}); is it running? "
            "Set NBP_BROKER_COMPAT=kafka or tansu to skip detection"
        ) from None


async def fetch_highwaters(
    bootstrap: str | list[str],
    partitions: Iterable[Any],
    *,
    timeout_s: float = 30.0,
    **client_options: Any,
) -> dict[Any, int]:
    """The true high watermark of each ``(topic, partition)``, read from Fetch responses.

    Keys are the given partition objects (Faust ``TP`` or aiokafka ``TopicPartition``). Starts
    each fetch at ListOffsets(LATEST) - 1 (on Tansu: the newest batch's base offset), so only
    the last batch travels. Works on Apache Kafka too (where it equals ``end_offsets``).
    """
    given = list(partitions)
    if not given:
        return {}
    tps = {TopicPartition(tp[0], tp[1]): tp for tp in given}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=64 * 1024,
        **client_options,
    )
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
            consumer.assign(list(tps))
            ends = await consumer.end_offsets(list(tps))
            for tp in tps:
                consumer.seek(tp, max(ends[tp] - 1, 0))
            pending = set(tps)
            while pending:
                await consumer.getmany(*pending, timeout_ms=50)
                pending = {tp for tp in pending if consumer.highwater(tp) is None}
            return {tps[tp]: int(consumer.highwater(tp)) for tp in tps}
    except TimeoutError:
        raise CompatError(
            f"no high watermark for {len(tps)} partition(s) within {timeout_s:g}s"
        ) from None
    finally:
        await consumer.stop()


def _tansu_transport(app: Any) -> Any:
    """A Faust aiokafka transport whose consumer reads high watermarks with fetches (and
    fetches safely: :mod:`nextbehavior.stream.safe_fetch`)."""
    from faust.transport.drivers import aiokafka as driver

    from nextbehavior.stream.safe_fetch import SafeConsumerThread, safe_transport

    if not hasattr(driver.AIOKafkaConsumerThread, "_highwaters"):  # the one method we replace
        raise CompatError(
            "this faust-streaming has no AIOKafkaConsumerThread._highwaters: the Tansu recovery "
            "fix must be re-checked against it (tests/integration/test_compat_recovery.py)"
        )

    class TansuConsumerThread(SafeConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            if not hasattr(consumer, "_fetch_max_wait_ms"):  # read by AIOKafkaConsumer.start()
                raise CompatError("this aiokafka has no AIOKafkaConsumer._fetch_max_wait_ms")
            consumer._fetch_max_wait_ms = TANSU_FETCH_MAX_WAIT_MS
            return consumer

        async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
            if self.consumer.in_transaction:
                return await super()._highwaters(partitions)
            conf = self.app.conf
            transport = self.transport
            return await fetch_highwaters(
                driver.server_list(transport.url, driver.Transport.default_port),
                partitions,
                timeout_s=float(conf.broker_request_timeout),
                **driver.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
            )

    return safe_transport(app, TansuConsumerThread)


def apply_compat(app: Any, compat: BrokerCompat) -> bool:
    """Install the Tansu fixes on a Faust ``app`` before it starts; returns ``compat.enabled``.

    Disabled: changes nothing. Enabled: the recovery high-water transport, session timeout
    <= 6 s and heartbeat <= 1 s, fetch waits of 10 ms, and a refusal of ``exactly_once``.
    """
    if not compat.enabled:
        logger.info("broker compatibility fixes off: %s", compat.reason)
        return False
    if app.started:
        raise CompatError("apply_compat must run before the Faust app starts")
    conf = app.conf
    if conf.processing_guarantee.value == "exactly_once":
        raise CompatError(
            "processing_guarantee=exactly_once does not work on the embedded Tansu broker "
            "(no idempotent producer); use at_least_once, or Apache Kafka"
        )
    from nextbehavior.stream.safe_fetch import uses_aiokafka

    if not uses_aiokafka(app):
        raise CompatError(f"the Tansu fixes need the aiokafka transport, not {conf.broker}")
    from faust.exceptions import AlreadyConfiguredWarning

    with warnings.catch_warnings():  # we read them just above; the consumer reads them at start
        warnings.simplefilter("ignore", AlreadyConfiguredWarning)
        for key, limit in (
            ("broker_session_timeout", TANSU_SESSION_TIMEOUT_S),
            ("broker_heartbeat_interval", TANSU_HEARTBEAT_S),
        ):
            if float(getattr(conf, key)) > limit:
                setattr(conf, key, limit)
    app.transport = _tansu_transport(app)
    logger.warning(
        "Tansu broker compatibility ON (%s): table recovery reads high watermarks by fetch, "
        "session timeout %gs, heartbeat %gs, fetch wait %d ms, at-least-once",
        compat.reason,
        conf.broker_session_timeout,
        conf.broker_heartbeat_interval,
        TANSU_FETCH_MAX_WAIT_MS,
    )
    return True
