"""CLI commands: ops (``bench e2e``, ...)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from nextbehavior.stream.console import BrokerOption, fail, setup_logging

bench_app = typer.Typer(name="bench", help="Benchmarks.", no_args_is_help=True)


def _bench_text(result: dict[str, Any]) -> str:
    lat, pt_lat = result["latency_ms"] or {}, result["passthrough_latency_ms"] or {}
    machine = result["machine"]
    lines = [
        f"model: {result['model']} ({result['n_items']} items, max_len {result['max_len']})",
        f"{result['events']:,} events, {result['users']:,} users, {result['partitions']} "
        f"partitions, {result['workers']} process(es); {machine['cores']} cores "
        f"{machine['cpu_model']}, load {machine['load_avg']}",
        f"worker:      {result['events_per_s']:>8,.0f} events/s",
    ]
    if result["passthrough_events_per_s"]:
        lines += [
            f"passthrough: {result['passthrough_events_per_s']:>8,.0f} events/s",
            f"ratio worker/passthrough: {result['ratio']:.3f}",
        ]
    cpu = result["cpu_ms_per_event"]
    if cpu["worker"] is not None:
        lines.append(
            f"CPU per event: worker {cpu['worker']:.3f} ms, passthrough {cpu['passthrough']} ms "
            f"(ratio {cpu['ratio']}); broker {cpu['broker_with_worker']} ms with the worker"
        )
    rate = result["latency_rate_per_s"]
    if lat:
        lines.append(
            f"latency at {rate:,.0f} events/s, event sent -> prediction read: "
            f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms"
        )
        lines.append(
            f"CPU per event at that rate: worker {cpu.get('worker_at_latency_rate')} ms, "
            f"broker {cpu.get('broker_at_latency_rate_with_worker')} ms"
        )
    if pt_lat:
        lines.append(
            f"passthrough at the same rate: p50 {pt_lat['p50']} ms, p95 {pt_lat['p95']} ms, "
            f"p99 {pt_lat['p99']} ms"
        )
    return "\n".join(lines)


@bench_app.command("e2e")
def bench_e2e(
    events: Annotated[int, typer.Option(min=100, help="Backlog events per phase")] = 20_000,
    users: Annotated[
        int | None, typer.Option(min=1, help="Distinct users (default: events / 50)")
    ] = None,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of every topic")] = 4,
    workers: Annotated[int, typer.Option(min=1, help="Processes of each kind (one group)")] = 1,
    latency_seconds: Annotated[
        float, typer.Option(min=0, help="Length of the fixed-rate latency phase (0: skip it)")
    ] = 10.0,
    latency_rate: Annotated[
        float | None,
        typer.Option(min=1, help="Events/s of the latency phase (default: half the worker's max)"),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(help="Bundle to serve (default: runs/ml100k-bundle, else a random model)"),
    ] = None,
    rounds: Annotated[
        int, typer.Option(min=1, help="Worker+passthrough pairs (medians; shared cores are noisy)")
    ] = 1,
    no_passthrough: Annotated[
        bool, typer.Option("--no-passthrough", help="Measure the worker only")
    ] = False,
    profile: Annotated[
        Path | None,
        typer.Option(help="Write py-spy CPU profiles (collapsed stacks) of the backlog phase here"),
    ] = None,
    trace: Annotated[
        Path | None,
        typer.Option(
            help="Write the worker's per-event send time and latency here (CSV; the "
            "passthrough's to <stem>-passthrough.csv)"
        ),
    ] = None,
    broker: BrokerOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Last line: one JSON object")] = False,
) -> None:
    """Worker vs bare Faust passthrough: events/s, ratio, and latency at half load.

    Starts the embedded broker unless --broker is given; workers run as child processes
    with the NBP_* settings of this environment (e.g. NBP_BATCH_SIZE).
    """
    from nextbehavior.stream.bench_e2e import E2EOptions
    from nextbehavior.stream.bench_summary import run_e2e
    from nextbehavior.stream.broker import BrokerError
    from nextbehavior.stream.topics import TopicError
    from nextbehavior.stream.worker_process import ProcessError

    setup_logging("WARNING")
    logging.getLogger("nextbehavior.stream.bench_e2e").setLevel(logging.INFO)
    options = E2EOptions(
        events=events,
        users=users,
        partitions=partitions,
        workers=workers,
        latency_s=latency_seconds,
        bundle=bundle,
        skip_passthrough=no_passthrough,
        rounds=rounds,
        latency_rate=latency_rate,
        trace_path=trace,
        profile_dir=profile,
    )
    try:
        result = run_e2e(options, broker)
    except (BrokerError, TopicError, ProcessError, TimeoutError) as exc:
        fail(str(exc))
    typer.echo(_bench_text(result))
    if json_out:
        typer.echo(orjson.dumps(result).decode())


def forget(
    user_id: Annotated[str, typer.Argument(help="The user's real id (as in their events)")],
    broker: BrokerOption = None,
) -> None:
    """Delete a user's state everywhere the worker keeps it (table and changelog).

    Publishes a tombstone keyed by USER_ID on the input topic; the worker deletes the user's
    sequence state and activity counts when it reaches it, in order with their events.
    """
    import asyncio

    from nextbehavior.stream.privacy import ForgetError, request_forget
    from nextbehavior.stream.settings import get_settings

    settings = get_settings(broker=broker)
    setup_logging("WARNING")
    try:
        partition, offset = asyncio.run(
            request_forget(settings, user_id, timeout_s=settings.request_timeout_s)
        )
    except ForgetError as exc:
        fail(str(exc))
    typer.echo(
        f"forget request for {user_id!r} sent to {settings.input_topic}[{partition}]@{offset}; "
        "the worker deletes their state when it gets there"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(bench_app)
    app.command()(forget)
