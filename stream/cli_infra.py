"""CLI commands: ``broker`` (embedded Kafka-protocol broker), ``topics``, ``schema``."""

from __future__ import annotations

import asyncio
import logging
import signal
from enum import StrEnum
from pathlib import Path
from signal import SIGINT, SIGTERM
from types import FrameType
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError

from nextbehavior.stream.broker import BrokerError, EmbeddedBroker
from nextbehavior.stream.console import BrokerOption, fail, setup_logging
from nextbehavior.stream.schema import SCHEMAS
from nextbehavior.stream.settings import Settings, get_settings
from nextbehavior.stream.topics import TopicError, app_topics, ensure_topics, list_topics

topics_app = typer.Typer(
    name="topics", help="Create and check the app's topics.", no_args_is_help=True
)


class SchemaName(StrEnum):
    event = "event"
    prediction = "prediction"


class _StopSignalError(Exception):
    """SIGTERM or SIGINT arrived: stop the broker."""


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    raise _StopSignalError


def _settings(**overrides: Any) -> Settings:
    """Settings with CLI flags on top; a bad value is a one-line failure."""
    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "settings"
        fail(f"bad setting {where}: {err['msg']}")


def _quiet_clients() -> None:
    """Our one-line error says it all; aiokafka's own connection errors would add lines."""
    setup_logging("WARNING")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def broker(
    host: Annotated[
        str, typer.Option(help="Address to listen on (keep it loopback)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one")] = 9092,
    log: Annotated[
        Path | None, typer.Option(help="Keep the broker's log in this file (default: temp file)")
    ] = None,
    topics: Annotated[
        bool, typer.Option("--topics", help="Also create the app's topics once it is up")
    ] = False,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Partitions for --topics (default NBP_PARTITIONS)")
    ] = None,
) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, memory only) in the foreground.

    Prints its address (kafka://HOST:PORT) on stdout once a metadata request answers; stops on
    Ctrl-C or SIGTERM. Everything stored is gone when it stops.
    """
    _quiet_clients()
    embedded = EmbeddedBroker(host, port, log_path=log)
    previous = {sig: signal.signal(sig, _on_stop_signal) for sig in (SIGINT, SIGTERM)}
    try:
        try:
            embedded.start()
        except BrokerError as exc:
            fail(str(exc))
        if topics:
            settings = _settings(broker=embedded.url, partitions=partitions)
            try:
                asyncio.run(ensure_topics(settings, app_topics(settings), timeout_s=30.0))
            except TopicError as exc:
                fail(str(exc))
        typer.echo(embedded.url)
        typer.echo(
            f"embedded broker (pid {embedded.pid}) serving {embedded.bootstrap}; "
            f"log {embedded.log_path}; Ctrl-C to stop",
            err=True,
        )
        code = embedded.wait()
        fail(f"the broker exited by itself with code {code}: {embedded.log_tail(5).strip()}")
    except (KeyboardInterrupt, _StopSignalError):
        typer.echo("stopping the broker", err=True)
    finally:
        embedded.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@topics_app.command("create")
def topics_create(
    broker: BrokerOption = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Partitions per topic (default NBP_PARTITIONS, 4)")
    ] = None,
    replication_factor: Annotated[
        int | None, typer.Option(min=1, help="Replication factor (default NBP_REPLICATION_FACTOR)")
    ] = None,
) -> None:
    """Create the input, output and dead-letter topics; check the ones that exist."""
    _quiet_clients()
    settings = _settings(
        broker=broker, partitions=partitions, replication_factor=replication_factor
    )
    specs = app_topics(settings)
    try:
        status = asyncio.run(ensure_topics(settings, specs, timeout_s=settings.request_timeout_s))
    except TopicError as exc:
        fail(str(exc))
    for spec in specs:
        typer.echo(f"{spec.name}\t{spec.partitions} partitions\t{status[spec.name]}")


@topics_app.command("list")
def topics_list(broker: BrokerOption = None) -> None:
    """List the broker's topics with their partition counts (tab-separated)."""
    _quiet_clients()
    settings = _settings(broker=broker)
    try:
        found = asyncio.run(list_topics(settings, timeout_s=settings.request_timeout_s))
    except TopicError as exc:
        fail(str(exc))
    for name, count in found.items():
        typer.echo(f"{name}\t{count}")


def schema(
    name: Annotated[SchemaName, typer.Argument(help="Which record: event or prediction")],
) -> None:
    """Print the JSON Schema of an event or a prediction."""
    text = orjson.dumps(SCHEMAS[name.value](), option=orjson.OPT_INDENT_2).decode()
    typer.echo(text)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("broker")(broker)
    app.add_typer(topics_app)
    app.command("schema")(schema)
