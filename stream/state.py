"""A user's sequence state as the worker stores it: one small record per user, in a table.

The table value is ``orjson`` bytes ``[1, [[event_id, item_id, event_type, timestamp], ...]]``
(format version first, steps oldest first). It holds raw ids, never vocabulary indices, so a
new model bundle with another vocabulary reads the same state. :func:`apply_event` is the one
update rule (dedupe by event id, time order, windows) and also says what the prediction for
that event sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from nextbehavior.stream.history import Step, add_step

STATE_VERSION: Final = 1


class StateError(ValueError):
    """A stored state record this version cannot read."""


def encode_history(history: Sequence[Step]) -> bytes:
    """State record for ``history`` (time-ordered steps)."""
    return orjson.dumps(
        [STATE_VERSION, [[s.event_id, s.item_id, s.event_type, s.timestamp] for s in history]]
    )


def decode_history(raw: bytes | None) -> list[Step]:
    """Steps of a state record; ``None`` (no state yet) is the empty history."""
    if raw is None:
        return []
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"state record is not JSON: {exc}") from None
    if not (isinstance(obj, list) and len(obj) == 2 and obj[0] == STATE_VERSION):
        raise StateError(f"state record is not format version {STATE_VERSION}")
    rows = obj[1]
    try:
        steps = [Step(str(e), str(i), str(t), int(ts)) for e, i, t, ts in rows]
    except (TypeError, ValueError) as exc:
        raise StateError(f"state record has a malformed step: {exc}") from None
    return steps


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
    """
    for pos, held in enumerate(history):
        if held.event_id == step.event_id:
            return Update(history, history[: pos + 1], changed=False, duplicate=True)
    new, _ = add_step(history, step, max_len=max_len, horizon_ms=horizon_ms)
    if not any(s is step for s in new):
        return Update(history, history, changed=False, duplicate=False)
    return Update(new, new, changed=True, duplicate=False)
