"""CLI command ``worker``: run the streaming worker (the Faust app of ``stream/worker.py``)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from nextbehavior.stream.console import BrokerOption, fail, setup_logging
from nextbehavior.stream.log_throttle import throttle_repeats
from nextbehavior.stream.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def _settings(**overrides: Any) -> Settings:
    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "settings"
        fail(f"bad setting {where}: {err['msg']}")


async def _prepare_topics(settings: Settings) -> int:
    """Check the input topic, create missing output topics; the input's partition count."""
    from nextbehavior.stream.topics import TopicSpec, ensure_topics, list_topics

    existing = await list_topics(settings, timeout_s=settings.request_timeout_s)
    partitions = existing.get(settings.input_topic)
    if partitions is None:
        fail(
            f"input topic {settings.input_topic!r} does not exist on {settings.bootstrap}: "
            "create it first (nextbehavior topics create)"
        )
    missing = [t for t in (settings.output_topic, settings.dlq_topic) if t not in existing]
    if missing:
        await ensure_topics(settings, [TopicSpec(t, settings.partitions) for t in missing])
    return partitions


async def _prepare_changelogs(settings: Settings, names: list[str], partitions: int) -> None:
    """Changelog topics must have the input's partition count (Faust checks it)."""
    from nextbehavior.stream.topics import TopicSpec, ensure_topics

    specs = [TopicSpec(n, partitions, {"cleanup.policy": "compact"}) for n in names]
    await ensure_topics(settings, specs)


def run_worker(settings: Settings) -> None:
    """Load the bundle, check topics and broker, then run the Faust worker until stopped.

    Exits 0 after SIGTERM/SIGINT (the batch in flight is finished and committed), non-zero with
    a one-line reason when it cannot start.
    """
    import faust

    from nextbehavior.stream.broker_wait import BrokerWaitError, wait_for_broker
    from nextbehavior.stream.bundle import BundleError
    from nextbehavior.stream.compat import CompatError, resolve_compat
    from nextbehavior.stream.explanation import require_weights
    from nextbehavior.stream.predictor import Predictor
    from nextbehavior.stream.reload import BundleDirectory, is_bundle, load_newest
    from nextbehavior.stream.topics import TopicError
    from nextbehavior.stream.worker import build_app, event_loop

    if settings.bundle is None:
        fail("no model bundle: pass --bundle DIR or set NBP_BUNDLE")

    def load(path: Path) -> Predictor:
        predictor = Predictor(path, settings.providers, settings.intra_op_threads)
        if settings.explain:  # `because` needs the history_weights output: refuse, not degrade
            require_weights(predictor.manifest, path)
        return predictor

    bundles = None  # a directory of bundles: serve the newest, watch for newer ones
    try:
        if is_bundle(settings.bundle) or not settings.bundle.is_dir():
            predictor = load(settings.bundle)
        else:
            bundles = BundleDirectory(settings.bundle)
            loaded, refused = load_newest(bundles, load)
            predictor = loaded.predictor
    except BundleError as exc:
        fail(str(exc))
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create the state directory {settings.state_dir}: {exc}")
    try:
        asyncio.run(wait_for_broker(settings))  # a broker not up yet: retry with backoff
        compat = resolve_compat(settings)
        partitions = asyncio.run(_prepare_topics(settings))
        loop = event_loop()
        asyncio.set_event_loop(loop)
        worker = build_app(settings, predictor, partitions=partitions, compat=compat)
        loop.run_until_complete(
            _prepare_changelogs(settings, worker.changelog_topics(), partitions)
        )
    except (BrokerWaitError, CompatError, TopicError) as exc:
        fail(str(exc))
    if bundles is not None and settings.reload_interval_s > 0:
        assert worker.ops is not None
        worker.ops.watch(bundles, loaded, refused, load)
    logger.info(
        "worker %s: %s -> %s (dead letters: %s), %d partitions, model %s, web %s:%d",
        settings.app_id,
        settings.input_topic,
        settings.output_topic,
        settings.dlq_topic,
        partitions,
        predictor.manifest.model_version,
        settings.web_host,
        settings.web_port,
        extra={"model_version": predictor.manifest.model_version},
    )
    runner = faust.Worker(
        worker.app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    runner.spinner = None  # no terminal spinner (escape codes) on stdout
    runner.execute_from_commandline()


def worker(
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="A model bundle, or a directory of bundles: the newest is served and newer "
            "ones are picked up while running (default: NBP_BUNDLE)"
        ),
    ] = None,
    broker: BrokerOption = None,
    app_id: Annotated[
        str | None, typer.Option(help="Consumer group / app id (default: NBP_APP_ID)")
    ] = None,
    web_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Web port (default: NBP_WEB_PORT)")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Max events per inference batch (NBP_BATCH_SIZE)")
    ] = None,
    batch_wait_ms: Annotated[
        float | None, typer.Option(min=0, help="Max wait to fill a batch (NBP_BATCH_WAIT_MS)")
    ] = None,
    explain: Annotated[
        bool | None,
        typer.Option("--explain/--no-explain", help="Add `because` to predictions (NBP_EXPLAIN)"),
    ] = None,
) -> None:
    """Run the streaming worker: events in, one prediction per valid event out.

    Bad records go to the dead-letter topic. State is kept in Faust tables backed by changelog
    topics. SIGTERM finishes the batch in flight, commits and exits 0.
    """
    settings = _settings(
        bundle=bundle,
        broker=broker,
        app_id=app_id,
        web_port=web_port,
        batch_size=batch_size,
        batch_wait_ms=batch_wait_ms,
        explain=explain,
    )
    setup_logging(settings.log_level, settings.log_json)
    throttle_repeats()  # an outage's retry errors: one line per kind per 30 s, not 40 a second
    run_worker(settings)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(worker)
