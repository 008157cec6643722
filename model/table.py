"""The event table every loader produces, and the report of the rows it rejected.

Strings (user, item and type ids) are interned once; the table holds compact integer codes into
those lists, so millions of rows cost ~28 bytes each. The table is torch-free.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from nextbehavior.stream.events import Event

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

DEFAULT_EVENT_TYPE = "interaction"
"""The single behavior type of logs that have no behavior column."""


def synthetic_event_id(user: str, item: str, timestamp: int, row: int) -> str:
    """Deterministic id for a source row that has none: hash of user, item, time and line."""
    key = f"{user}\x1f{item}\x1f{timestamp}\x1f{row}".encode()
    return hashlib.blake2b(key, digest_size=10).hexdigest()


@dataclass
class LoadReport:
    """What a loader read, kept and rejected (by reason, with the first line of each reason)."""

    source: str = ""
    format: str = ""
    lines_read: int = 0  # data lines, header excluded
    rows_loaded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_line: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str, line: int) -> None:
        self.rejected[reason] += 1
        self.first_line.setdefault(reason, line)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "lines_read": self.lines_read,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "rejected": dict(sorted(self.rejected.items())),
            "first_line_of_reason": dict(sorted(self.first_line.items())),
        }

    def summary(self) -> str:
        """One line for logs: counts, then each reason with its first line number."""
        reasons = ", ".join(
            f"{r}={n} (first at line {self.first_line[r]})" for r, n in self.rejected.most_common()
        )
        text = f"{self.source}: {self.rows_loaded} rows loaded of {self.lines_read} read"
        return f"{text}; rejected: {reasons}" if reasons else text


@dataclass
class EventTable:
    """Columns of one event log, in file order. ``user``/``item``/``event_type`` are codes."""

    user: I32  # (N,) codes into ``users``
    item: I32  # (N,) codes into ``items``
    event_type: I32  # (N,) codes into ``event_types``
    timestamp: I64  # (N,) epoch ms
    row: I64  # (N,) 1-based line number in the source file
    users: list[str]
    items: list[str]
    event_types: list[str]
    report: LoadReport
    event_id: list[str] | None = None  # only when the source has ids (jsonl)
    extras: dict[int, tuple[str | None, dict[str, Any] | None]] = field(default_factory=dict)
    """Row index -> (session_id, context), only for rows that have either."""

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def event(self, i: int) -> Event:
        """Row ``i`` as a stream :class:`Event` (deterministic id when the source had none)."""
        user = self.users[int(self.user[i])]
        item = self.items[int(self.item[i])]
        ts = int(self.timestamp[i])
        eid = (
            self.event_id[i]
            if self.event_id is not None
            else synthetic_event_id(user, item, ts, int(self.row[i]))
        )
        session, context = self.extras.get(i, (None, None))
        etype = self.event_types[int(self.event_type[i])]
        return Event(eid, user, item, etype, ts, session, context)

    def time_order(self) -> I64:
        """Row indices sorted by time; ties keep file order."""
        return np.lexsort((self.row, self.timestamp)).astype(np.int64)


class _Interner:
    """String -> dense code, first come first numbered."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []

    def __call__(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code


class TableBuilder:
    """Appends rows into compact arrays (bounded overhead per row); ``build()`` freezes them."""

    def __init__(self, report: LoadReport, *, with_ids: bool = False) -> None:
        self.report = report
        self._users, self._items, self._types = _Interner(), _Interner(), _Interner()
        self._u, self._i, self._t = array("i"), array("i"), array("i")
        self._ts, self._row = array("q"), array("q")
        self._ids: list[str] | None = [] if with_ids else None
        self._extras: dict[int, tuple[str | None, dict[str, Any] | None]] = {}

    def add(
        self,
        user: str,
        item: str,
        event_type: str,
        timestamp: int,
        row: int,
        event_id: str | None = None,
        session_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        if session_id is not None or context is not None:
            self._extras[len(self._u)] = (session_id, context)
        self._u.append(self._users(user))
        self._i.append(self._items(item))
        self._t.append(self._types(event_type))
        self._ts.append(timestamp)
        self._row.append(row)
        if self._ids is not None:
            self._ids.append(event_id if event_id is not None else "")
        self.report.rows_loaded += 1

    def build(self) -> EventTable:
        return EventTable(
            user=np.frombuffer(self._u, dtype=np.int32).copy(),
            item=np.frombuffer(self._i, dtype=np.int32).copy(),
            event_type=np.frombuffer(self._t, dtype=np.int32).copy(),
            timestamp=np.frombuffer(self._ts, dtype=np.int64).copy(),
            row=np.frombuffer(self._row, dtype=np.int64).copy(),
            users=self._users.names,
            items=self._items.names,
            event_types=self._types.names,
            report=self.report,
            event_id=self._ids,
            extras=self._extras,
        )
