"""``nextbehavior monitor``: online evaluation of live predictions, read from the topics.

Reads the input, prediction and dead-letter topics from the beginning (no consumer group),
feeds an :class:`OnlineEvaluator` and counts what it saw. When the worker pseudonymizes user
ids (``NBP_PSEUDONYMIZE_KEY``), give the monitor the same key: it pseudonymizes the input
events' user ids the same way, so they meet their predictions. The CLI renders the summary live, or
prints one JSON line at the end; the demo runs the same loop next to its replay.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from nextbehavior.stream.events import EventError, Prediction, parse_event, parse_prediction
from nextbehavior.stream.online_eval import OnlineEvaluator
from nextbehavior.stream.privacy import pseudonymize, pseudonymizer
from nextbehavior.stream.reader import read_topics
from nextbehavior.stream.settings import Settings


@dataclass
class MonitorState:
    """What the monitor has seen so far, and the evaluator it feeds."""

    evaluator: OnlineEvaluator = field(default_factory=OnlineEvaluator)
    events: int = 0
    invalid_events: int = 0
    predictions: int = 0
    invalid_predictions: int = 0
    dead_letters: int = 0
    dead_letter_types: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: counts, then the evaluator's figures."""
        return {
            "events": self.events,
            "invalid_events": self.invalid_events,
            "predictions": self.predictions,
            "invalid_predictions": self.invalid_predictions,
            "dead_letters": self.dead_letters,
            "dead_letter_types": dict(sorted(self.dead_letter_types.items())),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "online": self.evaluator.summary(),
        }


async def monitor(
    settings: Settings,
    state: MonitorState,
    *,
    duration_s: float | None = None,
    until_idle_s: float | None = None,
    stop: Callable[[], bool] | None = None,
    on_prediction: Callable[[Prediction], None] | None = None,
    on_tick: Callable[[MonitorState], None] | None = None,
    tick_s: float = 0.5,
) -> MonitorState:
    """Consume until ``duration_s`` passes, nothing arrives for ``until_idle_s``, or ``stop()``."""
    topics = [settings.input_topic, settings.output_topic, settings.dlq_topic]
    key = settings.pseudonymize_key
    alias = pseudonymizer(key.get_secret_value().encode()) if key else None
    last_tick = 0.0
    reader = read_topics(settings, topics, follow=True, idle_s=until_idle_s, duration_s=duration_s)
    async with contextlib.aclosing(reader):
        async for batch in reader:
            for record in batch:
                if record.topic == settings.input_topic:
                    try:
                        event = parse_event(record.value, max_bytes=settings.max_event_bytes)
                    except EventError:
                        state.invalid_events += 1
                        continue
                    state.events += 1
                    if alias is not None:  # predictions carry the pseudonym
                        event = pseudonymize(event, alias)
                    state.evaluator.add_event(event)
                elif record.topic == settings.output_topic:
                    try:
                        prediction = parse_prediction(record.value or b"")
                    except ValueError:  # orjson.JSONDecodeError is a ValueError
                        state.invalid_predictions += 1
                        continue
                    state.predictions += 1
                    state.evaluator.add_prediction(prediction)
                    if on_prediction is not None:
                        on_prediction(prediction)
                else:
                    state.dead_letters += 1
                    kind = dict(record.headers).get("error_type", b"?").decode("utf-8", "replace")
                    state.dead_letter_types[kind] = state.dead_letter_types.get(kind, 0) + 1
            now = time.monotonic()
            if on_tick is not None and now - last_tick >= tick_s:
                on_tick(state)
                last_tick = now
            if stop is not None and stop():
                break
    return state


def render(state: MonitorState) -> Table:
    """A compact table of the live figures: counts, then each metric in the window and total."""
    online = state.evaluator
    table = Table(title="online evaluation", box=None, pad_edge=False, title_justify="left")
    table.add_column("metric")
    table.add_column(f"last {online.window_size}", justify="right")
    table.add_column("total", justify="right")
    window, total = online.windowed(), online.total()
    for name in total:
        table.add_row(name, f"{window[name]:.4f}", f"{total[name]:.4f}")
    table.caption = (
        f"events {state.events:,} · predictions {state.predictions:,} · scored {online.scored:,}"
        f" · dead letters {state.dead_letters:,} · invalid events {state.invalid_events:,}"
    )
    table.caption_justify = "left"
    return table
