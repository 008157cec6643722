"""A user's behavior sequence: update rules (dedupe, time order, windows) and model encoding.

:func:`encode` is the one function that turns histories into model input, at training time
(``nextbehavior.model``) and at serving time (the worker): left-padded with 0, newest last.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

PAD = 0
_event_ids = operator.attrgetter("event_id")


class Step(NamedTuple):
    """One event as kept in a user's state (what the model and `because` need, nothing more).

    A named tuple, not a dataclass: the worker rebuilds a user's whole state (up to max_len
    steps) for every event, and a tuple is ~4x cheaper to build than a frozen dataclass.
    """

    event_id: str
    item_id: str
    event_type: str
    timestamp: int  # epoch ms


def add_step(
    history: Sequence[Step], step: Step, *, max_len: int, horizon_ms: int | None
) -> tuple[list[Step], bool]:
    """Insert ``step`` in time order (ties: arrival order), then apply the windows.

    Returns ``(new_history, changed)``; a repeat of an event id already held leaves the
    history as it is and returns ``changed=False``. The windows keep at most ``max_len``
    newest steps, and drop steps older than ``horizon_ms`` before the newest one.
    """
    if step.event_id in map(_event_ids, history):
        return list(history), False
    out = list(history)
    if out and step.timestamp < out[-1].timestamp:  # a late event; else it goes last
        out.insert(bisect.bisect_right([s.timestamp for s in out], step.timestamp), step)
    else:
        out.append(step)
    return window(out, max_len=max_len, horizon_ms=horizon_ms), True


def window(history: Sequence[Step], *, max_len: int, horizon_ms: int | None) -> list[Step]:
    """The newest ``max_len`` steps within ``horizon_ms`` of the newest step (sorted input)."""
    out = list(history[-max_len:]) if max_len > 0 else []
    if horizon_ms is not None and horizon_ms > 0 and out:
        cutoff = out[-1].timestamp - horizon_ms
        if out[0].timestamp < cutoff:  # else nothing is old enough to drop
            out = out[bisect.bisect_left([s.timestamp for s in out], cutoff) :]
    return out


def encode(
    histories: Sequence[Sequence[tuple[str, str]]],
    item_index: Mapping[str, int],
    type_index: Mapping[str, int],
    max_len: int,
    *,
    width: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Encode ``(item_id, event_type)`` sequences (oldest first) as model input.

    Returns ``(item_ids, event_types)``, both int64 ``[B, W]``, left-padded with 0, newest last.
    Items the vocabulary does not know are skipped (the model cannot represent them); a type it
    does not know maps to 0 (no type information). ``W`` is ``width`` if given, else ``max_len``;
    each row keeps its newest ``min(max_len, W)`` known events.
    """
    return _encode(histories, _FIRST, _SECOND, item_index, type_index, max_len, width)


def encode_steps(
    histories: Sequence[Sequence[Step]],
    item_index: Mapping[str, int],
    type_index: Mapping[str, int],
    max_len: int,
    *,
    width: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """:func:`encode` for state histories (their steps' item ids and event types)."""
    return _encode(histories, _ITEM_ID, _EVENT_TYPE, item_index, type_index, max_len, width)


def _encode(
    histories: Sequence[Sequence[Any]],
    item_of_step: Callable[[Any], str],
    type_of_step: Callable[[Any], str],
    item_index: Mapping[str, int],
    type_index: Mapping[str, int],
    max_len: int,
    width: int | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """:func:`encode`, reading each step's fields with the given getters. The worker's hot
    path: the per-step work is ``map`` over the steps, no per-step tuples."""
    cols = max_len if width is None else width
    keep = min(max_len, cols)
    items = np.zeros((len(histories), cols), dtype=np.int64)
    types = np.zeros((len(histories), cols), dtype=np.int64)
    if keep <= 0:
        return items, types
    item_of, type_of = item_index.get, type_index.get
    for row, steps in enumerate(histories):
        found: list[int | None] = list(map(item_of, map(item_of_step, steps)))
        kinds = list(map(type_of, map(type_of_step, steps), itertools.repeat(PAD)))
        ids = cast(list[int], found)
        if None in found:  # unknown items are skipped, with their types
            kinds = [k for i, k in zip(found, kinds, strict=True) if i is not None]
            ids = [i for i in found if i is not None]
        n = min(len(ids), keep)
        if n:
            items[row, cols - n :] = ids[-n:]
            types[row, cols - n :] = kinds[-n:]
    return items, types


_FIRST = operator.itemgetter(0)  # (item_id, event_type) pairs
_SECOND = operator.itemgetter(1)
_ITEM_ID = operator.itemgetter(1)  # Step.item_id
_EVENT_TYPE = operator.itemgetter(2)  # Step.event_type
