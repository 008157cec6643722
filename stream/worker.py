"""The Faust app: one agent turns each behavior event into a prediction of the user's next one.

Per record: decode and validate (bad -> dead-letter topic), update the user's sequence state
(the ``sequences`` table, changelog-backed), count the event in the ``activity`` table (events
per user per event-time hour, tumbling), and hand the event with its history to the
:class:`~nextbehavior.stream.pipeline.Pipeline`, which batches, writes each batch's table
changes once (:mod:`nextbehavior.stream.table_writes`), scores off the event loop, sends, and
only then acks. The stream is ``noack()``: an offset becomes committable only once its record's
state change and outputs are on the broker (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, cast

import faust
from faust.web import Request, Response, View

from nextbehavior.stream.batch_send import BatchSender
from nextbehavior.stream.compat import BrokerCompat, apply_compat
from nextbehavior.stream.connection import aiokafka_options
from nextbehavior.stream.durability import producer_sender, transactional_senders
from nextbehavior.stream.intake import Intake, Record
from nextbehavior.stream.operations import Operations
from nextbehavior.stream.pipeline import Pipeline
from nextbehavior.stream.predictor import Predictor
from nextbehavior.stream.privacy import pseudonymizer
from nextbehavior.stream.recovery import SafeTableManager
from nextbehavior.stream.safe_fetch import install_safe_fetch
from nextbehavior.stream.settings import Settings
from nextbehavior.stream.stats import Stats
from nextbehavior.stream.table_writes import ActivityCounts, TableWriter, UserStates

logger = logging.getLogger(__name__)

STATE_TABLE: Final = "sequences"
ACTIVITY_TABLE: Final = "activity"
ACTIVITY_WINDOW_S: Final = 3600.0
ACTIVITY_EXPIRES: Final = timedelta(hours=2)
AGENT_NAME: Final = "predict"


@dataclass
class WorkerApp:
    """The Faust app and the pieces around it (``pipeline`` exists once the agent runs)."""

    app: faust.App
    settings: Settings
    predictor: Predictor
    intake: Intake
    partitions: int
    stats: Stats = field(default_factory=Stats)
    pipeline: Pipeline[Any] | None = None
    ops: Operations | None = None  # /metrics, /healthz, /readyz, hot reload

    def changelog_topics(self) -> list[str]:
        """The tables' changelog topics: each needs ``partitions`` partitions before start."""
        return sorted(t.changelog_topic.get_topic_name() for t in self.app.tables.values())

    def use_predictor(self, predictor: Predictor) -> None:
        """Serve a new bundle from the next batch on (hot reload)."""
        self.predictor = predictor
        if self.pipeline is not None:
            self.pipeline.use_predictor(predictor)
        else:
            self.intake.max_len = predictor.max_len


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust credentials for SSL / SASL settings (None for PLAINTEXT)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = aiokafka_options(settings).get("ssl_context")
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=password,
        ssl_context=context if protocol == "SASL_SSL" else None,
        mechanism=settings.sasl_mechanism or "PLAIN",
    )


FAUST_ENV_PREFIX: Final = "NBP_FAUST_"
PRODUCER_LINGER_S: Final = 0.005


def faust_config(settings: Settings, partitions: int) -> dict[str, Any]:
    """Faust settings from ours (BROKER.md: short group timeouts, explicit topics).

    Faust lets environment variables override its settings (``BROKER``, ``WEB_PORT``, ...,
    even over arguments); with the prefix only ``NBP_FAUST_<NAME>`` does, e.g.
    ``NBP_FAUST_PRODUCER_LINGER=0.01``: an escape hatch for Faust tuning, never a clash.
    """
    session = settings.session_timeout_s
    return {
        "env_prefix": FAUST_ENV_PREFIX,
        "broker": settings.broker,
        "broker_credentials": broker_credentials(settings),
        "store": "memory://",
        "datadir": str(settings.state_dir / settings.app_id),
        "processing_guarantee": settings.processing_guarantee,
        "producer_acks": -1,
        # Predictions and changelog records go as closed record batches, which never linger;
        # this applies to record-by-record sends only (dead letters, exactly-once outputs).
        "producer_linger": PRODUCER_LINGER_S,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": session,
        "broker_heartbeat_interval": max(0.3, min(3.0, session / 3)),
        "broker_request_timeout": max(settings.request_timeout_s, session + 5.0),
        "stream_recovery_delay": 0.0,
        "stream_wait_empty": True,  # stop/rebalance wait for our unacked events (the batcher)
        # Faust drops records that arrive as recovery ends (it clears the agent queues after
        # resuming the input partitions): clear first instead (stream/recovery.py).
        "TableManager": SafeTableManager,
        "topic_partitions": partitions,
        "topic_disable_leader": True,
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "autodiscover": False,
    }


def event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop for a Faust worker: uvloop when installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def input_topic(app: faust.App, settings: Settings, partitions: int) -> faust.TopicT:
    """The input topic as the worker (and the passthrough) read it: raw key and value bytes,
    decoded by us (a decode error inside Faust's stream would end the agent)."""
    return app.topic(
        settings.input_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


def build_app(
    settings: Settings, predictor: Predictor, *, partitions: int, compat: BrokerCompat
) -> WorkerApp:
    """The worker's Faust app, ready for ``faust.Worker``; nothing connects until it starts."""
    app = faust.App(settings.app_id, **faust_config(settings, partitions))
    if not apply_compat(app, compat):  # the Tansu transport fetches safely too
        install_safe_fetch(app)  # Faust drops records it fetched across a rebalance
    source = input_topic(app, settings, partitions)
    state = app.Table(
        STATE_TABLE,
        default=None,
        partitions=partitions,
        key_type=bytes,  # bytes -> the "raw" codec, for writes and for recovery alike
        value_type=bytes,
        help="user key -> recent steps (nextbehavior.stream.state)",
    )
    activity = app.Table(
        ACTIVITY_TABLE,
        default=int,
        partitions=partitions,  # keys (user_id, (start, end)) and counts: json
        help="(user_id, hour window) -> events",
    ).tumbling(ACTIVITY_WINDOW_S, expires=ACTIVITY_EXPIRES)
    ops = Operations(settings, predictor)
    stats = ops.stats
    # Both tables are written once per batch, by the pipeline (stream/table_writes.py).
    users = UserStates(TableWriter.of(state))
    key = settings.pseudonymize_key
    intake = Intake(
        users,
        max_len=predictor.max_len,
        horizon_ms=settings.history_horizon_s * 1000 or None,
        max_bytes=settings.max_event_bytes,
        activity=ActivityCounts.of(activity, on_count=stats.observe_activity),
        pseudonym=pseudonymizer(key.get_secret_value().encode()) if key else None,
    )

    async def rebalanced(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        users.invalidate()  # partitions may move: the recovered store is the truth
        batches.forget_partitions()

    app.on_partitions_revoked.connect(rebalanced)
    app.on_partitions_assigned.connect(rebalanced)

    worker = WorkerApp(app, settings, predictor, intake, partitions, stats, ops=ops)

    exactly_once = settings.processing_guarantee == "exactly_once"  # outputs in transactions
    batches = BatchSender(
        lambda: cast(Any, app.producer)._ensure_producer(),  # the started aiokafka producer
        lambda topic, key: app.producer.key_partition(topic, key).partition,
    )

    outputs = [settings.output_topic, settings.dlq_topic, *worker.changelog_topics()]
    ops.health.outputs_pending(outputs)  # /readyz waits until the producer knows them

    async def learn_outputs() -> None:
        await batches.learn_topics(
            outputs, ops.health.output_known, timeout_s=settings.request_timeout_s
        )

    app.task(learn_outputs)

    @app.agent(source, name=AGENT_NAME)
    async def predict(stream: faust.StreamT[bytes]) -> None:
        events = cast(faust.Stream[bytes], stream).noack()
        pipeline: Pipeline[Any] = Pipeline(
            intake,
            worker.predictor,
            send=producer_sender(app),
            ack=events.ack,
            output_topic=settings.output_topic,
            dlq_topic=settings.dlq_topic,
            batch_size=settings.batch_size,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            batch_idle_s=settings.batch_idle_ms / 1000.0 or None,
            explain=settings.explain,
            stats=stats,
            observer=ops,
            send_for=transactional_senders(app, source.get_topic_name()) if exactly_once else None,
            send_many=None if exactly_once else batches.send,
        )
        worker.pipeline = pipeline
        runner = asyncio.ensure_future(pipeline.run())
        runner.add_done_callback(lambda task: _crash_if_failed(app, task))
        try:
            async for event in events.events():
                msg = event.message
                record = Record(msg.key, msg.value, msg.topic, msg.partition, msg.offset)
                await pipeline.take(event, record)
        finally:
            pipeline.close()
            await asyncio.wait([runner], timeout=settings.request_timeout_s)
            pipeline.shutdown()

    @app.page("/stats")
    class StatsView(View):
        async def get(self, request: Request) -> Response:
            body = stats.snapshot()
            body["model_version"] = worker.predictor.manifest.model_version
            body["assigned"] = sorted(
                tp.partition
                for tp in app.consumer.assignment()
                if tp.topic == source.get_topic_name()
            )
            pending = worker.pipeline.batcher.pending if worker.pipeline else 0
            body["pending"] = pending
            return self.json(body)

    ops.install(worker)
    del predict, StatsView  # registered on the app
    return worker


def _crash_if_failed(app: faust.App, task: asyncio.Future[None]) -> None:
    """The batch runner must never end with an error; if it does, stop the worker (non-zero)."""
    if task.cancelled() or task.exception() is None:
        return
    exc = task.exception()
    assert exc is not None
    logger.critical("prediction pipeline failed, stopping the worker: %r", exc)
    _crashing.add(asyncio.ensure_future(app.crash(exc)))


_crashing: set[asyncio.Future[None]] = set()
