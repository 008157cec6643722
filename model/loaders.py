"""Read event logs of any supported format, streaming, with a progress bar and a reject report.

- :func:`load_events` -> :class:`EventTable` (compact columns, for training and evaluation).
- :func:`iter_events` -> stream :class:`Event` objects one by one (for replay), in file order
  (bounded memory) or in time order (per-user order kept; loads the compact table first).

Files are read line by line in binary (gzip when the name ends in ``.gz``), so memory holds the
table being built, never the file. Rejected rows are counted by reason in a
:class:`LoadReport` (see :mod:`nextbehavior.model.formats` for the codes), and logged.
No torch here: the replay command imports this module.
"""

from __future__ import annotations

import gzip
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

from tqdm import tqdm

from nextbehavior.model.formats import Row, detect_format, make_parser
from nextbehavior.model.table import EventTable, LoadReport, TableBuilder, synthetic_event_id
from nextbehavior.stream.events import Event

log = logging.getLogger(__name__)

PROGRESS_EVERY = 8192  # lines between progress-bar updates


@contextmanager
def _open(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(line stream, raw file whose position measures progress)."""
    with path.open("rb") as raw:
        if path.name.lower().endswith(".gz"):
            with gzip.GzipFile(fileobj=raw) as stream:
                yield stream, raw  # type: ignore[misc]
        else:
            yield raw, raw


def resolve_format(path: Path, fmt: str = "auto") -> str:
    """``fmt``, or the detected format when ``fmt`` is ``auto``."""
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    if fmt != "auto":
        make_parser(fmt)  # raises on an unknown name
        return fmt
    with _open(path) as (stream, _):
        first = stream.readline()
    return detect_format(path, first)


def iter_rows(
    path: str | Path,
    fmt: str = "auto",
    *,
    report: LoadReport | None = None,
    progress: bool | None = None,
) -> Iterator[tuple[Row, int]]:
    """Yield ``(row, line_number)`` for every usable row, in file order.

    Rejected rows go into ``report`` by reason; a repeated (user_id, event_id) of a source with
    ids is rejected as ``duplicate_event_id`` (the worker would drop it too). ``progress``:
    True/False, or None for "when stderr is a terminal".
    """
    path = Path(path)
    fmt = resolve_format(path, fmt)
    parser = make_parser(fmt)
    report = report if report is not None else LoadReport()
    report.source, report.format = str(path), fmt
    seen_ids: set[tuple[str, str]] = set()
    size = path.stat().st_size
    bar = tqdm(
        total=size, unit="B", unit_scale=True, desc=f"reading {path.name}", file=sys.stderr,
        disable=(not progress) if progress is not None else None, leave=False,
    )  # fmt: skip
    with bar, _open(path) as (stream, raw):
        for line_no, line in enumerate(stream, start=1):
            if line_no == 1 and parser.header(line):
                continue
            if line_no % PROGRESS_EVERY == 0:
                bar.update(raw.tell() - bar.n)
            report.lines_read += 1
            row = parser.parse(line)
            if isinstance(row, str):
                report.reject(row, line_no)
                continue
            event = row[4]
            if event is not None:
                key = (event.user_id, event.event_id)
                if key in seen_ids:
                    report.reject("duplicate_event_id", line_no)
                    continue
                seen_ids.add(key)
            yield row, line_no
        bar.update(size - bar.n)
    if report.rejected:
        log.warning("%s", report.summary())
    else:
        log.info("%s", report.summary())


def load_events(path: str | Path, fmt: str = "auto", *, progress: bool | None = None) -> EventTable:
    """Load a whole log into an :class:`EventTable` (file order; ``table.report`` says what was
    rejected). Raises ValueError when no row at all is usable."""
    report = LoadReport()
    builder = TableBuilder(report, with_ids=resolve_format(Path(path), fmt) == "jsonl")
    for (user, item, etype, ts, event), line_no in iter_rows(
        path, fmt, report=report, progress=progress
    ):
        if event is None:
            builder.add(user, item, etype, ts, line_no)
        else:
            builder.add(
                user, item, etype, ts, line_no, event.event_id, event.session_id, event.context
            )
    if report.rows_loaded == 0:
        raise ValueError(f"{path}: no usable rows ({report.summary()})")
    return builder.build()


def iter_events(
    path: str | Path,
    fmt: str = "auto",
    *,
    order: Literal["file", "time"] = "file",
    report: LoadReport | None = None,
    progress: bool | None = None,
) -> Iterator[Event]:
    """Yield the log's events as stream :class:`Event` objects.

    ``order="file"`` streams in bounded memory; ``order="time"`` loads the table and yields by
    timestamp (ties in file order), which keeps every user's order. Sources without event ids
    get deterministic ones (a hash of user, item, timestamp and line number: the same in both
    orders and on every run). ``report`` (optional) receives the reject counts.
    """
    if order == "time":
        table = load_events(path, fmt, progress=progress)
        if report is not None:
            report.__dict__.update(table.report.__dict__)
        for i in table.time_order():
            yield table.event(int(i))
        return
    if order != "file":
        raise ValueError(f"order must be 'file' or 'time', got {order!r}")
    for (user, item, etype, ts, event), line_no in iter_rows(
        path, fmt, report=report, progress=progress
    ):
        if event is not None:
            yield event
        else:
            yield Event(synthetic_event_id(user, item, ts, line_no), user, item, etype, ts)
