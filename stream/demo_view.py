"""What ``nextbehavior demo`` shows: phases, predictions as they arrive, live and final figures."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from nextbehavior.stream.events import Event, Prediction
from nextbehavior.stream.monitor import MonitorState, render

PRINTED_WHEN_NOT_LIVE = 5
"""Predictions printed one per line when the output is not a terminal."""
PLAIN_PROGRESS_EVERY_S = 3.0
"""Seconds between progress lines when the output is not a terminal."""


class DemoView:
    """Live panel on a terminal (recent predictions + online figures), plain lines otherwise."""

    def __init__(self, console: Console, *, recent: int = 8) -> None:
        self.console = console
        self.events: dict[str, Event] = {}  # event_id -> replayed event (what triggered it)
        self.recent: deque[Prediction] = deque(maxlen=recent)
        self.predicted: set[str] = set()
        self.state: MonitorState | None = None
        self.status = ""
        self.expected = 0  # predictions the replay should bring
        self._live: Live | None = None
        self._last_line = time.monotonic()

    # --- phases -------------------------------------------------------------------------------
    def phase(self, text: str) -> None:
        self.console.print(f"[bold cyan]›[/] {text}")

    def done(self, text: str, seconds: float) -> None:
        self.console.print(f"  [green]✓[/] {text} [dim]({seconds:.1f}s)[/]")

    # --- the live part ------------------------------------------------------------------------
    def start_live(self, state: MonitorState) -> None:
        self.state = state
        if self.console.is_terminal:
            self._live = Live(self._panel(), console=self.console, auto_refresh=False)
            self._live.start()

    def stop_live(self) -> None:
        if self._live is not None:
            self._live.update(self._panel(), refresh=True)
            self._live.stop()
            self._live = None

    def add_prediction(self, prediction: Prediction) -> None:
        self.predicted.add(prediction.event_id)
        self.recent.append(prediction)
        if self._live is None and len(self.predicted) <= PRINTED_WHEN_NOT_LIVE:
            self.console.print("  " + self.describe(prediction), soft_wrap=True)

    def refresh(self, state: MonitorState) -> None:
        self.state = state
        if self._live is not None:
            self._live.update(self._panel(), refresh=True)
        elif time.monotonic() - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._last_line = time.monotonic()
            total = state.evaluator.total()
            self.console.print(
                f"  predictions {len(self.predicted):,}/{self.expected:,} · dead letters "
                f"{state.dead_letters} · online hit@10 {total['hit@10']:.4f} "
                f"ndcg@10 {total['ndcg@10']:.4f} ({state.evaluator.scored:,} scored)"
            )

    def describe(self, p: Prediction) -> str:
        """One prediction in words: user, what they just did, what they will do next."""
        trigger = self.events.get(p.event_id)
        did = f"{trigger.event_type} {trigger.item_id}" if trigger else p.event_id
        items = " ".join(i.item_id for i in p.items[:5])
        best = max(p.next_event_type.items(), key=lambda kv: kv[1], default=("?", 0.0))
        return (
            f"{p.user_id} after {did} (history {p.history_length}) -> next items {items}; "
            f"next behavior {best[0]} {best[1]:.0%}"
        )

    def _panel(self) -> RenderableType:
        recent = Table(title="latest predictions", box=None, pad_edge=False, title_justify="left")
        for name in ("user", "just did", "hist", "predicted next items", "next behavior"):
            recent.add_column(name, no_wrap=True, overflow="ellipsis", max_width=40)
        for p in list(self.recent):
            trigger = self.events.get(p.event_id)
            best = max(p.next_event_type.items(), key=lambda kv: kv[1], default=("?", 0.0))
            recent.add_row(
                p.user_id,
                f"{trigger.event_type} {trigger.item_id}" if trigger else p.event_id,
                str(p.history_length),
                " ".join(i.item_id for i in p.items[:5]),
                f"{best[0]} {best[1]:.0%}",
            )
        parts: list[RenderableType] = [recent]
        if self.state is not None:
            parts.append(render(self.state))
        if self.status:
            parts.append(self.status)
        return Group(*parts)


def summary_table(summary: Mapping[str, Any]) -> Table:
    """The final summary: the counts, online vs offline figures, the time spent."""
    table = Table(title="nextbehavior demo: summary", box=None, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    counts = summary["counts"]
    rows = [
        ("events sent (valid)", f"{counts['events_sent']:,}"),
        ("bad events sent", f"{counts['bad_events_sent']:,}"),
        ("predictions received", f"{counts['predictions_received']:,}"),
        ("dead letters", f"{counts['dead_letters']:,}"),
        ("predictions scored online", f"{summary['online']['scored']:,}"),
    ]
    for k in ("hit@10", "ndcg@10", "type_accuracy"):
        online = summary["online"]["total"][k]
        offline = summary["offline"].get(k)
        rows.append(
            (
                f"online {k}",
                f"{online:.4f}" + (f"  (offline {offline:.4f})" if offline is not None else ""),
            )
        )
    reasons = ", ".join(f"{k} {v}" for k, v in summary["dead_letter_types"].items()) or "none"
    rows.append(("dead letters by reason", reasons))
    test_ndcg = summary["model"]["test_ndcg@10"]
    rows.append(("model test ndcg@10 (training-time split)", f"{test_ndcg:.4f}"))
    for name, seconds in summary["seconds"].items():
        rows.append((f"time: {name}", f"{seconds:.1f}s"))
    for label, value in rows:
        table.add_row(label, value)
    return table
