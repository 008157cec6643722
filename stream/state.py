"""A user's sequence state as the worker stores it: one small record per user, in a table.

The table value (format 2) is ``orjson`` bytes, column by column, steps oldest first::

    [2, [event_key, ...], [item_id, ...], [event_type names], [type index, ...],
     [first timestamp, delta, delta, ...]]

It holds raw item ids and type names, never vocabulary indices, so a new model bundle with
another vocabulary reads the same state. Event ids serve only to drop repeats, so each is kept
as its :func:`event_key`: the id itself when it has at most 12 characters, else ``#`` and a
64-bit digest (11 characters), which bounds the record whatever the ids look like (~1.6 KB at
50 steps with 20-character ids, against ~3 KB in format 1). Format 1 records
(``[1, [[event_id, item_id, event_type, timestamp], ...]]``) are still read, their ids turned
into keys. :func:`apply_event` is the one update rule (dedupe by event id, time order, windows)
and also says what the prediction for that event sees.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from nextbehavior.stream.history import Step, add_step

STATE_VERSION: Final = 2
EVENT_KEY_CHARS: Final = 12
"""Event ids up to this long are kept as they are; longer ones as ``#`` + a 64-bit digest."""

_event_ids = operator.attrgetter("event_id")
_new_step = tuple.__new__  # Step(*row) without the Python-level __new__ of a named tuple


class StateError(ValueError):
    """A stored state record this version cannot read."""


def event_key(event_id: str) -> str:
    """What the state keeps of an event id: short ids as they are, long ones digested (a repeat
    of an id always gets the same key; two ids share one with probability ~2**-64)."""
    if len(event_id) <= EVENT_KEY_CHARS:
        return event_id
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return "#" + base64.urlsafe_b64encode(digest)[:11].decode("ascii")


def encode_history(history: Sequence[Step]) -> bytes:
    """State record for ``history`` (time-ordered steps); event ids are stored as keys."""
    if not history:
        raw = orjson.dumps([STATE_VERSION, [], [], [], [], []])
    else:
        ids, items, types, stamps = zip(*history, strict=True)  # columns, in C
        if max(map(len, ids)) > EVENT_KEY_CHARS:  # steps read back from state hold keys already
            ids = tuple(map(event_key, ids))
        names = list(dict.fromkeys(types))
        if len(names) == 1:
            type_idx = [0] * len(types)
        else:
            type_idx = list(map({name: n for n, name in enumerate(names)}.__getitem__, types))
        deltas = [stamps[0], *map(operator.sub, stamps[1:], stamps[:-1])]
        raw = orjson.dumps([STATE_VERSION, ids, items, names, type_idx, deltas])
    # orjson's bytes keep its whole output buffer (~16 KB for a 1.5 KB record, measured with
    # tracemalloc and RSS); the table holds one record per user, so keep an exact-size copy.
    return bytes(memoryview(raw))


def decode_history(raw: bytes | None) -> list[Step]:
    """Steps of a state record (event ids as keys); ``None`` (no state yet) is the empty
    history. Raises :class:`StateError` for a record this version cannot read."""
    if raw is None:
        return []
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"state record is not JSON: {exc}") from None
    if isinstance(obj, list) and obj and obj[0] == STATE_VERSION and len(obj) == 6:
        return _decode_columns(obj)
    if isinstance(obj, list) and len(obj) == 2 and obj[0] == 1:
        return _decode_v1(obj[1])
    raise StateError(f"state record is not format version {STATE_VERSION} (or 1)")


def _decode_columns(obj: list[Any]) -> list[Step]:
    _, ids, items, names, type_idx, deltas = obj
    try:
        n = len(ids)
        if not (len(items) == len(type_idx) == len(deltas) == n):
            raise ValueError("columns of different lengths")
        types = [names[k] for k in type_idx]
        stamps = list(itertools.accumulate(deltas))
        steps = list(
            map(_new_step, itertools.repeat(Step), zip(ids, items, types, stamps, strict=True))
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise StateError(f"state record is malformed: {exc}") from None
    if steps and not (
        type(steps[0].event_id) is str
        and type(steps[-1].item_id) is str
        and type(steps[-1].event_type) is str
        and type(steps[-1].timestamp) is int
    ):
        raise StateError("state record has a malformed step")
    return steps


def _decode_v1(rows: Any) -> list[Step]:
    try:
        return [Step(event_key(str(e)), str(i), str(t), int(ts)) for e, i, t, ts in rows]
    except (TypeError, ValueError) as exc:
        raise StateError(f"state record has a malformed step: {exc}") from None


@dataclass(frozen=True, slots=True)
class Update:
    """The outcome of one event for one user's state.

    ``history`` is the state after the event (what is stored); ``context`` is the history the
    prediction for this event is made from; ``changed`` says whether ``history`` must be
    written back; ``duplicate`` marks an event id the state already held.
    """

    history: list[Step]
    context: list[Step]
    changed: bool
    duplicate: bool


def apply_event(history: list[Step], step: Step, *, max_len: int, horizon_ms: int | None) -> Update:
    """Apply one event to a user's state (see :func:`nextbehavior.stream.history.add_step`).

    - A new event is inserted in time order, then the windows apply; the prediction sees the
      whole new state.
    - A repeat of an event id the state holds changes nothing; its prediction sees the state up
      to and including that event, so a replayed event (after a crash) gets the prediction it
      had the first time whenever its successors arrived in time order.
    - An event too old for the windows (it falls out at once) changes nothing either; its
      prediction sees the current state.

    Event ids are compared, and kept, as their :func:`event_key`.
    """
    key = event_key(step.event_id)
    if key != step.event_id:
        step = Step(key, step.item_id, step.event_type, step.timestamp)
    ids = list(map(_event_ids, history))
    if step.event_id in ids:
        pos = ids.index(step.event_id)
        return Update(history, history[: pos + 1], changed=False, duplicate=True)
    new, _ = add_step(history, step, max_len=max_len, horizon_ms=horizon_ms)
    if not any(map(operator.is_, new, itertools.repeat(step))):
        return Update(history, history, changed=False, duplicate=False)
    return Update(new, new, changed=True, duplicate=False)
