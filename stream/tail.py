"""``nextbehavior tail``: predictions or dead letters as JSON lines, or as a table on a terminal.

The row functions are pure (a :class:`Record` in, a dict or table cells out); :func:`tail` reads
the topic and writes them out.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from typing import Any, TextIO

import orjson
from rich.console import Console
from rich.table import Table

from nextbehavior.stream.reader import Record, read_topics
from nextbehavior.stream.settings import Settings

PREDICTION_COLUMNS = (("user", 12), ("event", 24), ("hist", 4), ("top items", 44), ("next", 16))
DEAD_LETTER_COLUMNS = (("where", 10), ("key", 12), ("error_type", 14), ("error", 40), ("value", 30))


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def prediction_row(record: Record) -> dict[str, Any]:
    """The prediction as published (a JSON object), or a note if the value is not one."""
    try:
        value = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    return {
        "error": "not a JSON object",
        "partition": record.partition,
        "offset": record.offset,
        "value": _text(record.value),
    }


def dead_letter_row(record: Record) -> dict[str, Any]:
    """A dead letter: where it sits, its key, its headers (as text) and the original value."""
    out: dict[str, Any] = {
        "partition": record.partition,
        "offset": record.offset,
        "key": _text(record.key),
        "headers": {k: v.decode("utf-8", "replace") for k, v in record.headers},
    }
    raw = record.value
    try:
        out["value"] = None if raw is None else raw.decode("utf-8")
    except UnicodeDecodeError:
        out["value_base64"] = base64.b64encode(raw or b"").decode("ascii")
    return out


def prediction_cells(row: dict[str, Any], n_items: int = 5) -> list[str]:
    """Table cells for one prediction: user, event, history length, top items, next type."""
    if "error" in row:
        return ["?", f"offset {row.get('offset')}", "", row["error"], ""]
    items = " ".join(
        f"{i.get('item_id')}({float(i.get('score', 0.0)):.2f})"
        for i in row.get("items", [])[:n_items]
    )
    types: dict[str, float] = row.get("next_event_type") or {}
    best = max(types.items(), key=lambda kv: kv[1]) if types else None
    next_type = f"{best[0]} {best[1]:.0%}" if best else ""
    return [
        str(row.get("user_id")),
        str(row.get("event_id")),
        str(row.get("history_length")),
        items,
        next_type,
    ]


def dead_letter_cells(row: dict[str, Any]) -> list[str]:
    """Table cells for one dead letter."""
    headers = row.get("headers", {})
    value = row.get("value")
    shown = repr(value) if value is not None else f"<{len(row.get('value_base64', ''))} b64>"
    return [
        f"{row['partition']}:{row['offset']}",
        str(row.get("key")),
        str(headers.get("error_type", "")),
        str(headers.get("error", "")),
        shown,
    ]


async def tail(
    settings: Settings,
    *,
    dlq: bool = False,
    limit: int | None = None,
    follow: bool = False,
    idle_s: float | None = None,
    table: bool = False,
    out: TextIO,
) -> int:
    """Print the predictions (or dead letters) topic; returns how many records were printed."""
    topic = settings.dlq_topic if dlq else settings.output_topic
    to_row: Callable[[Record], dict[str, Any]] = dead_letter_row if dlq else prediction_row
    to_cells = dead_letter_cells if dlq else prediction_cells
    columns = DEAD_LETTER_COLUMNS if dlq else PREDICTION_COLUMNS
    console = Console(file=out, highlight=False, soft_wrap=False) if table else None
    printed = 0
    reader = read_topics(settings, [topic], follow=follow, idle_s=idle_s)
    async with contextlib.aclosing(reader):
        async for batch in reader:
            rows = [to_row(r) for r in batch]
            if limit is not None:
                rows = rows[: max(0, limit - printed)]
            if console is not None:
                grid = Table(show_header=printed == 0, box=None, pad_edge=False)
                for name, width in columns:
                    grid.add_column(name, width=width, no_wrap=True, overflow="ellipsis")
                for row in rows:
                    grid.add_row(*to_cells(row))
                console.print(grid)
            else:
                out.write("".join(orjson.dumps(r).decode() + "\n" for r in rows))
                out.flush()
            printed += len(rows)
            if limit is not None and printed >= limit:
                break
    return printed
