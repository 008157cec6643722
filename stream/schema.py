"""JSON Schemas (draft 2020-12) of the event and the prediction, as ``nextbehavior schema`` prints.

They state exactly what :mod:`nextbehavior.stream.events` accepts (the tests check both agree):
an event allows no other fields; a prediction may gain fields in later versions.
"""

from __future__ import annotations

from typing import Any, Final

from nextbehavior.stream.events import (
    MAX_ID_CHARS,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    OPTIONAL_STRINGS,
    REQUIRED_STRINGS,
)

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"

_ID: Final[dict[str, Any]] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_CHARS,
    "pattern": r"\S",
}
_TIMESTAMP: Final[dict[str, Any]] = {
    "type": "integer",
    "minimum": MIN_TIMESTAMP_MS,
    "maximum": MAX_TIMESTAMP_MS,
    "description": "epoch milliseconds",
}
_DESCRIPTIONS: Final = {
    "event_id": "unique id of this event; a repeat for the same user is dropped",
    "user_id": "who acted",
    "item_id": "what they acted on",
    "event_type": "the behavior: view, click, cart, purchase, ...",
    "session_id": "optional session id",
}


def event_schema() -> dict[str, Any]:
    """The input event (INTERFACE.md, "Event")."""
    properties: dict[str, Any] = {
        name: {**_ID, "description": _DESCRIPTIONS[name]} for name in REQUIRED_STRINGS
    }
    properties["timestamp"] = {**_TIMESTAMP, "description": "when, in epoch milliseconds"}
    for name in OPTIONAL_STRINGS:
        properties[name] = {
            **_ID,
            "type": ["string", "null"],
            "description": _DESCRIPTIONS[name],
        }
    properties["context"] = {
        "type": ["object", "null"],
        "description": "free-form; kept out of the model in v1",
    }
    return {
        "$schema": DRAFT,
        "$id": "https://nextbehavior/schemas/event.json",
        "title": "nextbehavior event",
        "type": "object",
        "properties": properties,
        "required": [*REQUIRED_STRINGS, "timestamp"],
        "additionalProperties": False,
    }


def prediction_schema() -> dict[str, Any]:
    """The output prediction (INTERFACE.md, "Prediction"); ``because`` only with explanations."""
    number: dict[str, Any] = {"type": "number"}
    scored_item = {
        "type": "object",
        "properties": {"item_id": {"type": "string"}, "score": number},
        "required": ["item_id", "score"],
    }
    reason = {
        "type": "object",
        "properties": {
            "item_id": {"type": "string"},
            "event_type": {"type": "string"},
            "timestamp": {"type": "integer"},
            "weight": number,
        },
        "required": ["item_id", "event_type", "timestamp", "weight"],
    }
    return {
        "$schema": DRAFT,
        "$id": "https://nextbehavior/schemas/prediction.json",
        "title": "nextbehavior prediction",
        "type": "object",
        "properties": {
            "user_id": {"type": "string"},
            "event_id": {"type": "string", "description": "the event that triggered it"},
            "event_timestamp": {"type": "integer", "description": "that event's timestamp (ms)"},
            "predicted_at": {"type": "integer", "description": "epoch ms"},
            "model_version": {"type": "string", "description": "from the bundle's manifest"},
            "history_length": {
                "type": "integer",
                "minimum": 0,
                "description": "events in the user's sequence state after this update",
            },
            "items": {
                "type": "array",
                "items": scored_item,
                "description": "top-k next items, best first",
            },
            "next_event_type": {
                "type": "object",
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                "description": "probability of each next behavior type; they sum to 1",
            },
            "because": {
                "type": ["array", "null"],
                "items": reason,
                "description": "only when explanations are on: history events that weighed most",
            },
        },
        "required": [
            "user_id",
            "event_id",
            "event_timestamp",
            "predicted_at",
            "model_version",
            "history_length",
            "items",
            "next_event_type",
        ],
    }


SCHEMAS: Final = {"event": event_schema, "prediction": prediction_schema}
