"""Validation and normalization of Segment-spec messages, before they reach the cache.

A message either becomes a `Normalized` row or a `Rejection` with a reason code; nothing is dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from store.raw import Unparsed
from store.timeparse import TimeParseError, parse_time_ms

SPEC_TYPES = frozenset({"track", "identify", "group", "page", "screen", "alias"})
# Candidates for the event time, in order of preference.
TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
# Fields left out when two payloads with one messageId are compared: a client's retry or a CDP's
# redelivery changes them without changing the message.
_DELIVERY_FIELDS = ("sentAt", "receivedAt")

# Quarantine reasons, with the text the console and `segops import` show for each.
REASONS = {
    "invalid_json": "not valid JSON",
    "not_an_object": "not a JSON object",
    "too_large": "larger than the maximum message size",
    "missing_type": "no type",
    "unknown_type": "type is not one of track, identify, group, page, screen, alias",
    "missing_identity": "neither userId nor anonymousId",
    "missing_event": "track without event",
    "missing_group_id": "group without groupId",
    "missing_previous_id": "alias without previousId",
    "invalid_time": "time field cannot be parsed",
}


@dataclass(slots=True)
class Rejection:
    """Why a message was quarantined: a code from `REASONS` and a detail naming the value."""

    reason: str
    detail: str
    payload: str


@dataclass(slots=True)
class Normalized:
    """A valid message, reduced to the columns the cache indexes, plus its whole JSON payload."""

    message_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    event: str | None
    group_id: str | None
    event_time: int
    time_field: str
    team_id: str | None
    payload: str
    # The message as received. `fingerprint(value)` separates a redelivery from a reused messageId.
    value: dict
    user_traits: dict | None
    account_traits: dict | None


def normalize(value: object, received_at: int, max_bytes: int) -> Normalized | Rejection:
    """Validate one message and return its normalized form or the reason to quarantine it.

    `received_at` (epoch ms) is the event time of a message with no usable time field; `max_bytes`
    is the size limit of the message's JSON.
    """
    if isinstance(value, Unparsed):
        return Rejection("invalid_json", value.error, value.text)
    payload_bytes = orjson.dumps(value)
    payload = payload_bytes.decode()
    if not isinstance(value, dict):
        return Rejection("not_an_object", f"a JSON {_json_kind(value)}", payload)
    if len(payload_bytes) > max_bytes:
        return Rejection(
            "too_large", f"{len(payload_bytes)} bytes, limit {max_bytes} bytes", payload
        )

    raw_type = value.get("type")
    if raw_type is None or (isinstance(raw_type, str) and not raw_type.strip()):
        return Rejection("missing_type", "type is missing or empty", payload)
    message_type = raw_type.strip().lower() if isinstance(raw_type, str) else None
    if message_type not in SPEC_TYPES:
        return Rejection("unknown_type", f"type {raw_type!r}", payload)

    user_id = _identifier(value.get("userId"))
    anonymous_id = _identifier(value.get("anonymousId"))
    if user_id is None and anonymous_id is None:
        return Rejection("missing_identity", "userId and anonymousId are missing or empty", payload)

    context = value.get("context") if isinstance(value.get("context"), dict) else {}
    properties = value.get("properties") if isinstance(value.get("properties"), dict) else {}
    event = None
    group_id = _identifier(context.get("groupId"))
    previous_id = None
    if message_type == "track":
        event = _identifier(value.get("event"))
        if event is None:
            return Rejection("missing_event", "event is missing or empty", payload)
    elif message_type in ("page", "screen"):
        event = _identifier(value.get("name")) or _identifier(properties.get("name"))
    elif message_type == "group":
        group_id = _identifier(value.get("groupId"))
        if group_id is None:
            return Rejection("missing_group_id", "groupId is missing or empty", payload)
    elif message_type == "alias":
        previous_id = _identifier(value.get("previousId"))
        if previous_id is None:
            return Rejection("missing_previous_id", "previousId is missing or empty", payload)

    event_time, time_field = received_at, "ingest"
    for field in TIME_FIELDS:
        candidate = value.get(field)
        if candidate is None or (isinstance(candidate, str) and not candidate.strip()):
            continue
        try:
            event_time = parse_time_ms(candidate)
        except TimeParseError as error:
            return Rejection("invalid_time", f"{field}: {error}", payload)
        time_field = field
        break

    message_id = _identifier(value.get("messageId"))
    if message_id is None:
        canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        message_id = "segops-" + hashlib.sha256(canonical).hexdigest()[:32]

    return Normalized(
        message_id=message_id,
        type=message_type,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        event=event,
        group_id=group_id,
        event_time=event_time,
        time_field=time_field,
        team_id=_identifier(properties.get("team_id")),
        payload=payload,
        value=value,
        user_traits=_user_traits(message_type, value, context),
        account_traits=_dict_or_none(value.get("traits")) if message_type == "group" else None,
    )


def fingerprint(value: dict) -> bytes:
    """Return the canonical JSON of a message without its delivery fields."""
    return orjson.dumps(
        {key: item for key, item in value.items() if key not in _DELIVERY_FIELDS},
        option=orjson.OPT_SORT_KEYS,
    )


def _identifier(value: object) -> str | None:
    """Return an id as a string: numbers become strings, empty or blank strings are missing."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def _user_traits(message_type: str, value: dict, context: dict) -> dict | None:
    traits = dict(_dict_or_none(context.get("traits")) or {})
    if message_type == "identify":
        traits.update(_dict_or_none(value.get("traits")) or {})
    return traits or None


def _dict_or_none(value: object) -> dict | None:
    return value if isinstance(value, dict) and value else None


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"
