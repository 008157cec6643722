"""What happens to one input record: decode, validate, update the user's state.

Pure and synchronous (the worker's agent calls it inside Faust's event context, so the state
write lands in the changelog of the record's partition). The result is either a
:class:`Scorable` (a valid event and the history its prediction sees) or a :class:`DeadLetter`
(the record, untouched, with the reason).

The record key must be the event's ``user_id`` (UTF-8): the state of a user lives in the
partition its key hashes to, so a record keyed otherwise (or not keyed) would put that user's
state in the wrong place. Such a record is dead-lettered with ``error_type`` ``missing_key`` or
``key_mismatch``.

A keyed record with a null value (a tombstone) is a request to forget that user
(:mod:`nextbehavior.stream.privacy`): their state is deleted and the result is
:class:`Forgotten`, neither a prediction nor a dead letter. With a ``pseudonym`` function,
user ids are replaced by their pseudonyms before anything is stored or scored.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, replace

from nextbehavior.stream.events import Event, EventError, parse_event
from nextbehavior.stream.history import Step
from nextbehavior.stream.privacy import Pseudonym, pseudonymize
from nextbehavior.stream.state import apply_event
from nextbehavior.stream.table_writes import ActivityCounts, ChangelogWrite, TableWriter, UserStates

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """One input record as it came off the topic."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record for the dead-letter topic: original key and bytes, reason in the headers."""

    record: Record
    error_type: str
    reason: str

    def headers(self) -> list[tuple[str, bytes]]:
        """The dead-letter headers of INTERFACE.md."""
        return dead_letter_headers(self.record, self.error_type, self.reason)


@dataclass(frozen=True, slots=True)
class Forgotten:
    """A tombstone: the user's state was deleted (``had_state``: there was some)."""

    record: Record
    had_state: bool


@dataclass(frozen=True, slots=True)
class Scorable:
    """A valid event and the history (oldest first) its prediction is made from."""

    record: Record
    event: Event
    context: list[Step]
    history_length: int
    duplicate: bool


def dead_letter_headers(record: Record, error_type: str, reason: str) -> list[tuple[str, bytes]]:
    """Headers ``error``, ``error_type``, ``source_topic``, ``source_partition``,
    ``source_offset`` (UTF-8 text; numbers in decimal)."""
    return [
        ("error", reason.encode("utf-8", "replace")),
        ("error_type", error_type.encode()),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


def decode_record(record: Record, *, max_bytes: int) -> Event:
    """The record's event, checked against its key. Raises :class:`EventError`."""
    event = parse_event(record.value, max_bytes=max_bytes)
    if record.key is None:
        raise EventError("missing_key", "record has no key; the key must be the user_id")
    if record.key != event.user_id.encode():
        shown = record.key[:64].decode("utf-8", "replace")
        raise EventError(
            "key_mismatch", f"record key {shown!r} is not the event's user_id {event.user_id!r}"
        )
    return event


Work = Scorable | DeadLetter | Forgotten
"""What one record becomes."""


class Intake:
    """Turns records into work, reading and writing users' state in ``state``.

    ``state`` keeps the user key (the record key bytes) -> steps; a plain mapping of state
    records (:func:`nextbehavior.stream.state.encode_history`) is wrapped in one. Writes are
    gathered until :meth:`flush`, which returns the changelog records to send. ``activity``
    (optional) counts each event new to a user's state. ``max_len`` may be changed between
    records (a new model bundle).
    """

    def __init__(
        self,
        state: UserStates | MutableMapping[bytes, bytes],
        *,
        max_len: int,
        horizon_ms: int | None,
        max_bytes: int,
        activity: ActivityCounts | None = None,
        pseudonym: Pseudonym | None = None,
    ) -> None:
        self.state = state if isinstance(state, UserStates) else UserStates(TableWriter(state, ""))
        self.max_len = max_len
        self.horizon_ms = horizon_ms
        self.max_bytes = max_bytes
        self.activity = activity
        self.pseudonym = pseudonym

    def take(self, record: Record) -> Work:
        """Decode and apply one record; never raises :class:`EventError`."""
        if record.value is None and record.key:
            return self._forget(record, record.key)
        try:
            event = decode_record(record, max_bytes=self.max_bytes)
        except EventError as exc:
            return DeadLetter(record, exc.error_type, exc.reason)
        if self.pseudonym is not None:
            event = pseudonymize(event, self.pseudonym)
            record = replace(record, key=event.user_id.encode())
        key = record.key
        assert key is not None  # checked by decode_record
        history = self.state.read(key)
        step = Step(event.event_id, event.item_id, event.event_type, event.timestamp)
        update = apply_event(history, step, max_len=self.max_len, horizon_ms=self.horizon_ms)
        if update.changed:
            self.state.write(key, update.history, record.partition)
        if not update.duplicate and self.activity is not None:
            self.activity.count(event.user_id, event.timestamp, record.partition)
        return Scorable(record, event, update.context, len(update.context), update.duplicate)

    def flush(self) -> list[ChangelogWrite]:
        """The changelog records of every state change since the last flush (store updated)."""
        writes = self.state.flush()
        if self.activity is not None:
            writes.extend(self.activity.flush())
        return writes

    def _forget(self, record: Record, key: bytes) -> Forgotten:
        user_id = key.decode("utf-8", "replace")
        if self.pseudonym is not None:
            user_id = self.pseudonym(user_id)
        history = self.state.forget(user_id.encode(), record.partition)
        if history is not None and self.activity is not None:
            self.activity.erase(user_id, history, record.partition)
        return Forgotten(record, history is not None)
