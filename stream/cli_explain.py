"""CLI command ``explain``: one user's history with the weight of each event, and the prediction.

The user's events are read from a log, folded into the state the worker would hold (same
update rule, window and horizon), scored by the bundle and lined up with its
``history_weights``. A table on a terminal, one JSON object with ``--json``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from nextbehavior.stream.console import fail
from nextbehavior.stream.explanation import Explanation

BAR_WIDTH = 12


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(result: Explanation, console: Console) -> None:
    """The history (oldest first, ``because`` events marked) and the prediction as tables."""
    pred = result.prediction
    chosen = {(r.item_id, r.timestamp, r.event_type) for r in pred.because or []}
    history = Table(
        title=f"user {pred.user_id}: {len(result.history)} events, model {pred.model_version}"
    )
    for name, justify in (("#", "right"), ("time (UTC)", "left"), ("item", "left")):
        history.add_column(name, justify=justify)  # type: ignore[arg-type]
    history.add_column("type")
    history.add_column("weight", justify="right")
    history.add_column("", min_width=BAR_WIDTH)
    top = max((w for w in result.weights if w is not None), default=0.0) or 1.0
    for n, (step, weight) in enumerate(zip(result.history, result.weights, strict=True), 1):
        marked = (step.item_id, step.timestamp, step.event_type) in chosen
        shown = "not in model" if weight is None else f"{weight:.3f}"
        bar = "" if weight is None else "█" * max(0, round(BAR_WIDTH * weight / top))
        history.add_row(
            str(n),
            _when(step.timestamp),
            step.item_id,
            step.event_type,
            shown,
            bar,
            style="bold" if marked else ("dim" if weight is None else None),
        )
    console.print(history)
    items = Table(title="predicted next items")
    items.add_column("rank", justify="right")
    items.add_column("item")
    items.add_column("score", justify="right")
    for rank, item in enumerate(pred.items, 1):
        items.add_row(str(rank), item.item_id, f"{item.score:.4f}")
    console.print(items)
    types = ", ".join(
        f"{name} {p:.2f}" for name, p in sorted(pred.next_event_type.items(), key=lambda kv: -kv[1])
    )
    console.print(f"next behavior: {types}")
    because = "; ".join(f"{r.event_type} {r.item_id} ({r.weight:.2f})" for r in pred.because or [])
    console.print(f"because: {because or '-'}")


def explain(
    bundle: Annotated[Path, typer.Option("--bundle", help="Model bundle with history_weights")],
    data: Annotated[Path, typer.Option("--data", help="Event log file")],
    user: Annotated[str, typer.Option("--user", help="The user_id to explain")],
    fmt: Annotated[str, typer.Option("--format", help="Log format (auto: by name/header)")] = (
        "auto"
    ),
    until: Annotated[
        str | None,
        typer.Option("--until", help="Only events before this time (epoch ms or ISO-8601)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
) -> None:
    """Show which of a user's past events drove the model's prediction for them.

    Reads the user's events from the log (all of them, or those before --until), builds the
    history the worker would hold, and prints each event's weight, the top items and the
    `because` events (the 3 heaviest) that `worker --explain` would publish.
    """
    from nextbehavior.stream.bundle import BundleError
    from nextbehavior.stream.explanation import explain as explain_state
    from nextbehavior.stream.explanation import require_weights, user_state
    from nextbehavior.stream.predictor import Predictor
    from nextbehavior.stream.replay import parse_time
    from nextbehavior.stream.settings import get_settings

    try:
        until_ms = parse_time(until) if until else None
        predictor = Predictor(bundle, providers=["CPUExecutionProvider"])
        require_weights(predictor.manifest, bundle)
    except (BundleError, ValueError) as exc:
        fail(str(exc))
    try:
        from nextbehavior.model.loaders import iter_events
    except ImportError as exc:
        fail(
            f"explain needs the data loaders' dependencies ({exc}): "
            "pip install 'nextbehavior[train]'"
        )
    try:
        events = [
            ev
            for ev in iter_events(data, fmt, progress=False)
            if ev.user_id == user and (until_ms is None or ev.timestamp < until_ms)
        ]
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if not events:
        fail(f"user {user!r} has no events in {data}" + (f" before {until}" if until else ""))
    events.sort(key=lambda ev: ev.timestamp)  # stable: ties keep file order, as replay does
    horizon_s = get_settings().history_horizon_s
    state, last = user_state(events, max_len=predictor.max_len, horizon_ms=horizon_s * 1000 or None)
    assert last is not None  # at least one event, and the first is always new
    result = explain_state(predictor, state, last)
    if as_json:
        typer.echo(orjson.dumps(result.to_dict()).decode())
    else:
        render(result, Console())


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("explain")(explain)
