"""One row parser per log format, and format detection by file name and first line.

A parser turns one raw line into ``(user, item, event_type, timestamp_ms, event)`` or, for a row
it cannot use, a short reason code (counted by the loader, never dropped silently):

- ``blank_line``, ``not_utf8``, ``wrong_column_count``
- ``missing_user_id``, ``missing_item_id``, ``missing_event_type``, ``missing_timestamp``
- ``bad_timestamp`` (not a finite number), ``timestamp_out_of_range`` (outside 1970..2100)
- jsonl: the stream contract's ``EventError`` code and field, e.g. ``missing_field:user_id``,
  ``wrong_type:timestamp``, ``not_json``, ``unknown_field``

Columns the model does not use (ratings, categories, transaction ids) are never checked, so a
missing rating does not reject a row.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Final

from nextbehavior.model.table import DEFAULT_EVENT_TYPE
from nextbehavior.stream.events import MAX_TIMESTAMP_MS, Event, EventError, parse_event

Row = tuple[str, str, str, int, Event | None]
FORMATS: Final = ("recbole", "movielens", "retailrocket", "taobao", "jsonl")
SECONDS_LIMIT: Final = 100_000_000_000
"""RecBole timestamps below this are seconds (year < 5138), above it milliseconds."""

RETAILROCKET_TYPES: Final = {"view": "view", "addtocart": "cart", "transaction": "purchase"}
TAOBAO_TYPES: Final = {"pv": "view", "cart": "cart", "buy": "purchase", "fav": "favorite"}
RECBOLE_TYPE_FIELDS: Final = ("event_type", "behavior_type", "behavior", "action_type")


def timestamp_ms(text: str, unit: str) -> int | str:
    """Parse a timestamp in ``unit`` ("s", "ms" or "auto") to epoch ms, or a reason code."""
    text = text.strip()
    if not text:
        return "missing_timestamp"
    try:
        value: float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return "bad_timestamp"
        if not math.isfinite(value):
            return "bad_timestamp"
    if unit == "s" or (unit == "auto" and abs(value) < SECONDS_LIMIT):
        value = value * 1000
    ms = round(value)
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        return "timestamp_out_of_range"
    return ms


def _text(line: bytes) -> str | None:
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None


def _row(user: str, item: str, etype: str, ts: str, unit: str) -> Row | str:
    user, item, etype = user.strip().strip('"'), item.strip().strip('"'), etype.strip()
    if not user:
        return "missing_user_id"
    if not item:
        return "missing_item_id"
    if not etype:
        return "missing_event_type"
    ms = timestamp_ms(ts.strip('"'), unit)
    if isinstance(ms, str):
        return ms
    return user, item, etype, ms, None


class RowFormat(ABC):
    """A log format: reads the first line (header or data) and then parses rows."""

    name: ClassVar[str]

    def header(self, line: bytes) -> bool:
        """Inspect the first line; return True if it is a header (consumed, not a row)."""
        return False

    @abstractmethod
    def parse(self, line: bytes) -> Row | str:
        """One line -> row or reason code."""


class DelimitedFormat(RowFormat):
    """Text columns split by ``sep``; subclasses say which column is which."""

    sep = ","
    n_cols = 4
    user_col, item_col = 0, 1
    time_col: int | None = 3  # None: no time column, every row at 0 ms (file order kept)
    type_col: int | None = None
    unit = "s"
    type_map: dict[str, str] | None = None

    def columns_from(
        self,
        names: list[str],
        wanted: dict[str, tuple[str, ...]],
        optional: tuple[str, ...] = ("type_col",),
    ) -> None:
        """Set column positions from header ``names``; ``wanted`` maps attribute -> names."""
        lower = [n.strip().strip('"').split(":")[0].lower() for n in names]
        self.n_cols = len(lower)
        for attr, options in wanted.items():
            pos = next((lower.index(o) for o in options if o in lower), None)
            if pos is None and attr not in optional:
                raise ValueError(f"{self.name} header has no {options[0]} column: {names}")
            setattr(self, attr, pos)

    def parse(self, line: bytes) -> Row | str:
        text = _text(line)
        if text is None:
            return "not_utf8"
        if not text.strip():
            return "blank_line"
        cols = text.split(self.sep)
        if len(cols) != self.n_cols:
            return "wrong_column_count"
        etype = DEFAULT_EVENT_TYPE
        if self.type_col is not None:
            etype = cols[self.type_col].strip().strip('"')
            if self.type_map is not None:
                etype = self.type_map.get(etype.lower(), etype.lower())
        ts = cols[self.time_col] if self.time_col is not None else "0"
        return _row(cols[self.user_col], cols[self.item_col], etype, ts, self.unit)


class RecboleFormat(DelimitedFormat):
    """RecBole atomic ``.inter``: tab-separated, header ``name:type`` (user_id, item_id, ...)."""

    name = "recbole"
    sep = "\t"
    unit = "auto"

    def header(self, line: bytes) -> bool:
        text = _text(line) or ""
        self.columns_from(
            text.split("\t"),
            {
                "user_col": ("user_id",),
                "item_col": ("item_id",),
                "time_col": ("timestamp",),
                "type_col": RECBOLE_TYPE_FIELDS,
            },
            optional=("type_col", "time_col"),
        )
        return True


class MovielensFormat(DelimitedFormat):
    """``u.data`` (tab), ``ratings.dat`` (``::``), ``ratings.csv`` (comma, header); seconds."""

    name = "movielens"

    def header(self, line: bytes) -> bool:
        text = _text(line) or ""
        self.sep = "::" if "::" in text else "\t" if "\t" in text else ","
        lower = text.lower()
        if self.sep != "," or not ("userid" in lower or "timestamp" in lower):
            return False  # u.data and ratings.dat have no header
        self.columns_from(
            text.split(self.sep),
            {
                "user_col": ("userid", "user_id", "user"),
                "item_col": ("movieid", "item_id", "itemid", "item"),
                "time_col": ("timestamp",),
            },
        )
        return True


class RetailrocketFormat(DelimitedFormat):
    """``events.csv``: timestamp (ms), visitorid, event, itemid, transactionid."""

    name = "retailrocket"
    n_cols, time_col, user_col, type_col, item_col = 5, 0, 1, 2, 3
    unit = "ms"
    type_map = RETAILROCKET_TYPES

    def header(self, line: bytes) -> bool:
        text = _text(line) or ""
        if text.split(",")[0].strip().isdigit():
            return False
        self.columns_from(
            text.split(","),
            {
                "time_col": ("timestamp",),
                "user_col": ("visitorid",),
                "type_col": ("event",),
                "item_col": ("itemid",),
            },
        )
        if self.type_col is None:
            raise ValueError(f"retailrocket header has no event column: {text}")
        return True


class TaobaoFormat(DelimitedFormat):
    """``UserBehavior.csv`` without header: user, item, category, behavior, timestamp (s)."""

    name = "taobao"
    n_cols, user_col, item_col, type_col, time_col = 5, 0, 1, 3, 4
    type_map = TAOBAO_TYPES

    def header(self, line: bytes) -> bool:
        return not (_text(line) or "0").split(",")[0].strip().isdigit()


class JsonlFormat(RowFormat):
    """One event per line in the stream schema, validated by the stream contract itself."""

    name = "jsonl"

    def parse(self, line: bytes) -> Row | str:
        if not line.strip():
            return "blank_line"
        try:
            ev = parse_event(line.rstrip(b"\r\n"))
        except EventError as exc:
            return f"{exc.error_type}:{exc.field}" if exc.field else exc.error_type
        return ev.user_id, ev.item_id, ev.event_type, ev.timestamp, ev


PARSERS: Final[dict[str, type[RowFormat]]] = {
    "recbole": RecboleFormat,
    "movielens": MovielensFormat,
    "retailrocket": RetailrocketFormat,
    "taobao": TaobaoFormat,
    "jsonl": JsonlFormat,
}


def detect_format(path: Path, first_line: bytes) -> str:
    """The format of ``path``, from its name, else its first line; ValueError if unknown."""
    name = path.name.lower().removesuffix(".gz")
    by_name = {
        "u.data": "movielens",
        "ratings.dat": "movielens",
        "ratings.csv": "movielens",
        "events.csv": "retailrocket",
        "userbehavior.csv": "taobao",
    }
    if name in by_name:
        return by_name[name]
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    text = (_text(first_line) or "").strip()
    lower = text.lower()
    cols = lower.split(",")
    if text.startswith("{"):
        return "jsonl"
    if "user_id:" in lower and "item_id:" in lower:
        return "recbole"
    if "visitorid" in lower and "itemid" in lower:
        return "retailrocket"
    if len(cols) == 5 and cols[3].strip() in TAOBAO_TYPES:
        return "taobao"
    if "::" in text or "movieid" in lower or len(text.split("\t")) == 4:
        return "movielens"
    raise ValueError(
        f"cannot tell the format of {path.name} from its name or first line; "
        f"pass --format ({', '.join(FORMATS)})"
    )


def make_parser(fmt: str) -> RowFormat:
    try:
        return PARSERS[fmt]()
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; use one of auto, {', '.join(FORMATS)}") from None
