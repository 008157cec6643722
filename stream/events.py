"""Wire contracts: the input event and the output prediction (see README, "Schemas").

Decoding is strict and precise: a bad record raises :class:`EventError` naming the field and
what was wrong, so the worker can dead-letter it with a human-readable reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

MAX_ID_CHARS: Final = 256
"""Longest accepted ``event_id``/``user_id``/``item_id``/``session_id``/``event_type``."""
MIN_TIMESTAMP_MS: Final = 0
"""1970-01-01: event timestamps are epoch milliseconds and never negative."""
MAX_TIMESTAMP_MS: Final = 4_102_444_800_000
"""2100-01-01: anything later is a unit mistake (micro/nanoseconds), not an event."""
DEFAULT_MAX_EVENT_BYTES: Final = 65_536

REQUIRED_STRINGS: Final = ("event_id", "user_id", "item_id", "event_type")
OPTIONAL_STRINGS: Final = ("session_id",)
KNOWN_FIELDS: Final = frozenset((*REQUIRED_STRINGS, "timestamp", *OPTIONAL_STRINGS, "context"))


class EventError(ValueError):
    """A record that is not a valid event. ``error_type`` is a stable machine-readable code."""

    def __init__(self, error_type: str, reason: str, field_name: str | None = None) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    """One user interaction (INTERFACE.md, "Event")."""

    event_id: str
    user_id: str
    item_id: str
    event_type: str
    timestamp: int  # epoch ms
    session_id: str | None = None
    context: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp,
        }
        if self.session_id is not None:
            out["session_id"] = self.session_id
        if self.context is not None:
            out["context"] = self.context
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def _check_string(obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    if name not in obj:
        if required:
            raise EventError("missing_field", f"required field '{name}' is missing", name)
        return None
    value = obj[name]
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise EventError(
            "wrong_type", f"field '{name}' must be a string, got {type(value).__name__}", name
        )
    if not value.strip():
        raise EventError("invalid_value", f"field '{name}' must not be empty", name)
    if len(value) > MAX_ID_CHARS:
        raise EventError(
            "invalid_value", f"field '{name}' is longer than {MAX_ID_CHARS} characters", name
        )
    return value


def _check_timestamp(obj: dict[str, Any]) -> int:
    if "timestamp" not in obj:
        raise EventError("missing_field", "required field 'timestamp' is missing", "timestamp")
    value = obj["timestamp"]
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and not math.isfinite(value):
            raise EventError("invalid_value", "field 'timestamp' is not finite", "timestamp")
        raise EventError(
            "wrong_type",
            f"field 'timestamp' must be an integer (epoch ms), got {type(value).__name__}",
            "timestamp",
        )
    if not MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS:
        raise EventError(
            "invalid_value",
            f"field 'timestamp' {value} is outside [{MIN_TIMESTAMP_MS}, {MAX_TIMESTAMP_MS}] "
            "(epoch milliseconds, 1970..2100)",
            "timestamp",
        )
    return value


def event_from_dict(obj: Any) -> Event:
    """Validate an already-decoded JSON value as an :class:`Event`."""
    if not isinstance(obj, dict):
        raise EventError("not_object", f"event must be a JSON object, got {type(obj).__name__}")
    unknown = obj.keys() - KNOWN_FIELDS
    if unknown:
        names = ", ".join(sorted(repr(k) for k in unknown)[:5])
        raise EventError(
            "unknown_field", f"unknown field(s) {names}; free-form data belongs in 'context'"
        )
    event_id, user_id, item_id, event_type = (
        _check_string(obj, name, required=True) for name in REQUIRED_STRINGS
    )
    timestamp = _check_timestamp(obj)
    session_id = _check_string(obj, "session_id", required=False)
    context = obj.get("context")
    if context is not None and not isinstance(context, dict):
        raise EventError(
            "wrong_type",
            f"field 'context' must be an object, got {type(context).__name__}",
            "context",
        )
    assert event_id and user_id and item_id and event_type  # narrowed by _check_string
    return Event(event_id, user_id, item_id, event_type, timestamp, session_id, context)


def parse_event(
    raw: bytes | bytearray | memoryview | str | None, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> Event:
    """Decode and validate one record value. Raises :class:`EventError` with the reason."""
    if raw is None:
        raise EventError("empty", "record has no value (tombstone or null)")
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if not data:
        raise EventError("empty", "record value is empty")
    if len(data) > max_bytes:
        raise EventError("too_large", f"record is {len(data)} bytes, over the {max_bytes} limit")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        kind = "not_utf8" if "utf-8" in str(exc).lower() else "not_json"
        raise EventError(kind, f"value is not valid JSON: {exc}") from None
    return event_from_dict(obj)


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    score: float


@dataclass(frozen=True, slots=True)
class Reason:
    """One history event that weighed on a prediction (``because``)."""

    item_id: str
    event_type: str
    timestamp: int
    weight: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """One prediction per valid event (INTERFACE.md, "Prediction")."""

    user_id: str
    event_id: str
    event_timestamp: int
    predicted_at: int
    model_version: str
    history_length: int
    items: list[ScoredItem]
    next_event_type: dict[str, float]
    because: list[Reason] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "event_id": self.event_id,
            "event_timestamp": self.event_timestamp,
            "predicted_at": self.predicted_at,
            "model_version": self.model_version,
            "history_length": self.history_length,
            "items": [{"item_id": i.item_id, "score": i.score} for i in self.items],
            "next_event_type": self.next_event_type,
        }
        if self.because is not None:
            out["because"] = [
                {
                    "item_id": r.item_id,
                    "event_type": r.event_type,
                    "timestamp": r.timestamp,
                    "weight": r.weight,
                }
                for r in self.because
            ]
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_prediction(raw: bytes | str) -> Prediction:
    """Decode a prediction (for consumers, `tail` and `monitor`). Raises ValueError if malformed."""
    obj = orjson.loads(raw)
    try:
        because = obj.get("because")
        return Prediction(
            user_id=str(obj["user_id"]),
            event_id=str(obj["event_id"]),
            event_timestamp=int(obj["event_timestamp"]),
            predicted_at=int(obj["predicted_at"]),
            model_version=str(obj["model_version"]),
            history_length=int(obj["history_length"]),
            items=[ScoredItem(str(i["item_id"]), float(i["score"])) for i in obj["items"]],
            next_event_type={str(k): float(v) for k, v in obj["next_event_type"].items()},
            because=None
            if because is None
            else [
                Reason(
                    str(r["item_id"]), str(r["event_type"]), int(r["timestamp"]), float(r["weight"])
                )
                for r in because
            ],
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a prediction: {exc!r}") from None
