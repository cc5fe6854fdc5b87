"""The playbook catalog: playbooks and destinations as the configuration defines them.

`parse_destinations` and `parse_playbooks` read the `[destinations.<name>]` and
`[playbooks.<id>]` tables over the defaults of `console.playbooks.defaults`: a table with the
name or id of a default changes only the keys it sets (`steps` is replaced whole). They raise
`CatalogError` naming the key; `console.config` adds the file name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from console.playbooks.defaults import DEFAULT_DESTINATIONS, DEFAULT_PLAYBOOKS
from store import segments as seg


def delay_words(minutes: int) -> str:
    """Say when a step goes out after the trigger: "at once", "after 2 days", "after 1 day 3 h"."""
    if minutes <= 0:
        return "at once"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days:,} day" if days == 1 else f"{days:,} days")
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    return "after " + " ".join(parts)

CHANNELS = ("email", "in_app", "cs_task")
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class CatalogError(ValueError):
    """An invalid `[playbooks.*]` or `[destinations.*]` key or value; the message names the key."""


@dataclass(frozen=True)
class Step:
    """One step of a playbook: what to send through which destination, and when."""

    channel: str
    destination: str
    # Campaign, workflow or template id at the destination.
    content: str
    # Minutes after the trigger.
    delay_minutes: int = 0


@dataclass(frozen=True)
class Playbook:
    """The documented intervention for a segment."""

    id: str
    name: str
    segment: str
    description: str
    tone: str
    steps: tuple[Step, ...]
    # Share of targeted users held out, from 0 up to (not including) 1.
    holdout_share: float = 0.10
    # No action of this playbook to the same user within this many days.
    cooldown_days: int = 7
    exclude_segments: tuple[str, ...] = ()
    # Trigger for every user who enters the segment (paused while the feed is stale).
    on_entry: bool = False


@dataclass(frozen=True)
class DestinationKind:
    """A destination type: its plain fields and its secret fields, each with a description."""

    name: str
    fields: Mapping[str, str]
    secrets: Mapping[str, str]
    required: tuple[str, ...]
    defaults: Mapping[str, str] = field(default_factory=dict)
    # Whether the destination drops a repeated request with the same idempotency key.
    deduplicates: bool = False
    # Whether held-out users are announced to it, so that it can simulate their baseline.
    takes_holdout_notices: bool = False


DESTINATION_KINDS: dict[str, DestinationKind] = {
    kind.name: kind
    for kind in (
        DestinationKind(
            "webhook",
            {"url": "URL that receives a JSON POST per action."},
            {"secret": "Key of the X-Segops-Signature HMAC-SHA256 of the body."},
            required=("url", "secret"),
            # The body and the Idempotency-Key header carry the key; deduplication is up to the receiver.
            deduplicates=True,
        ),
        DestinationKind(
            "segment",
            {"url": "Base URL of Segment's HTTP Tracking API."},
            {"write_key": "Write key of a Segment HTTP API source."},
            required=("write_key",),
            defaults={"url": "https://api.segment.io"},
            deduplicates=True,
        ),
        DestinationKind(
            "customerio",
            {"url": "Base URL of the Customer.io Track API (https://track-eu.customer.io in the EU)."},
            {"site_id": "Track API site id.", "api_key": "Track API key."},
            required=("site_id", "api_key"),
            defaults={"url": "https://track.customer.io"},
            deduplicates=True,
        ),
        DestinationKind(
            "braze",
            {"rest_endpoint": "The REST endpoint of the Braze instance, such as https://rest.iad-01.braze.com."},
            {"api_key": "REST API key with the campaigns.trigger.send permission."},
            required=("rest_endpoint", "api_key"),
        ),
        DestinationKind(
            "iterable",
            {"url": "Base URL of the Iterable API (https://api.eu.iterable.com in the EU)."},
            {"api_key": "Server-side API key."},
            required=("api_key",),
            defaults={"url": "https://api.iterable.com"},
        ),
        DestinationKind(
            "slack",
            {},
            {"url": "Incoming webhook URL; it is a credential, so prefer url_env."},
            required=("url",),
        ),
        DestinationKind(
            "demo",
            {"url": "Base URL of the demo CDP; empty uses source.url."},
            {"write_key": "Write key of the demo CDP; unset uses the source's write key."},
            required=(),
            deduplicates=True,
            takes_holdout_notices=True,
        ),
    )
}


@dataclass(frozen=True)
class SecretRef:
    """The source of a secret: an environment variable (preferred) or a literal in the file."""

    env: str | None = None
    literal: str | None = None

    def resolve(self, environ: Mapping[str, str] | None = None) -> str | None:
        """Return the secret: the environment variable's value when set and not empty, else the
        literal, else None."""
        environ = os.environ if environ is None else environ
        if self.env and environ.get(self.env):
            return environ[self.env]
        return self.literal or None

    def describe(self) -> str:
        """Say where the secret comes from, without the secret itself."""
        if self.env:
            return f"environment variable {self.env}" + (" (else the file)" if self.literal else "")
        return "the configuration file" if self.literal else "not set"


@dataclass(frozen=True)
class Destination:
    """A configured destination: its type, plain fields and where its secrets come from."""

    name: str
    type: str
    fields: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)

    @property
    def kind(self) -> DestinationKind:
        return DESTINATION_KINDS[self.type]

    def field_value(self, key: str) -> str:
        """Return a plain field, or its type's default, or ""."""
        return self.fields.get(key) or self.kind.defaults.get(key, "")

    def secret(self, key: str, environ: Mapping[str, str] | None = None) -> str | None:
        """Return a secret field's value, or None when neither its variable nor a literal is set."""
        reference = self.secrets.get(key)
        return None if reference is None else reference.resolve(environ)


def find_playbook(playbooks: Mapping[str, Playbook], wanted: str) -> Playbook | None:
    """Find a playbook by id (ignoring case) or by exact name."""
    for playbook in playbooks.values():
        if playbook.id.lower() == wanted.lower() or playbook.name == wanted:
            return playbook
    return None


# --- parsing -------------------------------------------------------------------------------------


def parse_destinations(table: Mapping) -> dict[str, Destination]:
    """Build the destinations from a `[destinations]` table over the defaults.

    Raises `CatalogError` for an invalid name, type or key.
    """
    merged = _merge_tables(DEFAULT_DESTINATIONS, table, "destinations", replace_on="type")
    return {name: _destination(name, values) for name, values in merged.items()}


def _destination(name: str, values: dict) -> Destination:
    prefix = f"destinations.{name}"
    _check_id(name, "destinations")
    kind_name = values.get("type")
    if kind_name not in DESTINATION_KINDS:
        raise CatalogError(f"{prefix}.type must be one of {', '.join(DESTINATION_KINDS)}, got {kind_name!r}")
    kind = DESTINATION_KINDS[kind_name]
    known = {"type", *kind.fields, *kind.secrets, *(f"{key}_env" for key in kind.secrets)}
    _check_keys(values, known, prefix)

    fields = {key: _string(values, key, prefix) for key in kind.fields if key in values}
    for key, text in fields.items():
        if text and not re.match(r"https?://[^/\s]+", text):
            raise CatalogError(f"{prefix}.{key} must be an http:// or https:// URL, got {text!r}")
    secrets = {}
    for key in kind.secrets:
        env = _string(values, f"{key}_env", prefix) if f"{key}_env" in values else None
        literal = _string(values, key, prefix) if key in values else None
        if env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
            raise CatalogError(f"{prefix}.{key}_env must name an environment variable, got {env!r}")
        if env or literal:
            secrets[key] = SecretRef(env or None, literal or None)
    for key in kind.required:
        if not (fields.get(key) or kind.defaults.get(key) or key in secrets):
            hint = f"set {prefix}.{key}_env to the environment variable holding it" if key in kind.secrets \
                else f"set {prefix}.{key}"
            raise CatalogError(f"{prefix}: {kind_name} destinations need {key}: {hint}")
    return Destination(name, kind_name, fields, secrets)


def parse_playbooks(table: Mapping, destinations: Mapping[str, Destination]) -> dict[str, Playbook]:
    """Build the playbooks from a `[playbooks]` table over the defaults; every step must name one
    of `destinations`. Raises `CatalogError` for an invalid id, key or value."""
    merged = _merge_tables(DEFAULT_PLAYBOOKS, table, "playbooks")
    return {playbook_id: _playbook(playbook_id, values, destinations) for playbook_id, values in merged.items()}


_PLAYBOOK_KEYS = {"name", "segment", "description", "tone", "steps", "holdout_share", "cooldown_days",
                  "exclude_segments", "on_entry"}
_STEP_KEYS = {"channel", "destination", "content", "delay_minutes"}


def _playbook(playbook_id: str, values: dict, destinations: Mapping[str, Destination]) -> Playbook:
    prefix = f"playbooks.{playbook_id}"
    _check_id(playbook_id, "playbooks")
    _check_keys(values, _PLAYBOOK_KEYS, prefix)
    if "segment" not in values:
        raise CatalogError(f"{prefix}.segment is missing: name the seed segment the playbook is for")

    holdout = values.get("holdout_share", 0.10)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise CatalogError(f"{prefix}.holdout_share must be a number from 0 up to 1 (not included), got {holdout!r}")
    cooldown = values.get("cooldown_days", 7)
    if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
        raise CatalogError(f"{prefix}.cooldown_days must be a whole number >= 0, got {cooldown!r}")
    on_entry = values.get("on_entry", False)
    if not isinstance(on_entry, bool):
        raise CatalogError(f"{prefix}.on_entry must be true or false, got {on_entry!r}")
    excluded = values.get("exclude_segments", [])
    if not isinstance(excluded, list):
        raise CatalogError(f"{prefix}.exclude_segments must be a list of segment names, got {excluded!r}")

    steps = values.get("steps")
    if not isinstance(steps, list) or not steps:
        raise CatalogError(f"{prefix}.steps must be a non-empty list of tables ([[{prefix}.steps]])")
    return Playbook(
        id=playbook_id,
        name=_string(values, "name", prefix) or playbook_id,
        segment=_segment_name(values["segment"], f"{prefix}.segment"),
        description=_string(values, "description", prefix),
        tone=_string(values, "tone", prefix),
        steps=tuple(_step(step, f"{prefix}.steps[{index}]", destinations) for index, step in enumerate(steps)),
        holdout_share=float(holdout),
        cooldown_days=cooldown,
        exclude_segments=tuple(
            _segment_name(name, f"{prefix}.exclude_segments[{index}]") for index, name in enumerate(excluded)
        ),
        on_entry=on_entry,
    )


def _step(values: object, prefix: str, destinations: Mapping[str, Destination]) -> Step:
    if not isinstance(values, dict):
        raise CatalogError(f"{prefix} must be a table with channel, destination and content")
    _check_keys(values, _STEP_KEYS, prefix)
    channel = values.get("channel")
    if channel not in CHANNELS:
        raise CatalogError(f"{prefix}.channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    destination = values.get("destination")
    if destination not in destinations:
        raise CatalogError(
            f"{prefix}.destination must name a [destinations.<name>] table ({', '.join(sorted(destinations))}), "
            f"got {destination!r}"
        )
    content = _string(values, "content", prefix)
    if not content:
        raise CatalogError(f"{prefix}.content must be the campaign, workflow or template id to send")
    if destinations[destination].type == "iterable" and not content.isdigit():
        raise CatalogError(f"{prefix}.content must be an Iterable workflow id (a whole number), got {content!r}")
    delay = values.get("delay_minutes", 0)
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise CatalogError(f"{prefix}.delay_minutes must be a whole number >= 0, got {delay!r}")
    return Step(channel, destination, content, delay)


def _merge_tables(defaults: Mapping[str, dict], table: Mapping, section: str, replace_on: str | None = None) -> dict:
    if not isinstance(table, Mapping):
        raise CatalogError(f"[{section}] must be a table of tables, got {type(table).__name__}")
    merged = {name: dict(values) for name, values in defaults.items()}
    for name, values in table.items():
        if not isinstance(values, Mapping):
            raise CatalogError(f"{section}.{name} must be a table, got {type(values).__name__}")
        base = merged.get(name, {})
        if replace_on is not None and replace_on in values and values[replace_on] != base.get(replace_on):
            base = {}
        merged[name] = {**base, **values}
    return merged


def _segment_name(value: object, key: str) -> str:
    definition = seg.find_segment(value) if isinstance(value, str) else None
    if definition is None:
        names = ", ".join(d.name for d in seg.ALL_SEGMENTS)
        raise CatalogError(f"{key} must name a seed segment ({names}), got {value!r}")
    return definition.name


def _check_id(name: str, section: str) -> None:
    if not _ID_PATTERN.fullmatch(name):
        raise CatalogError(
            f"{section}.{name}: names are 1 to 64 letters, digits, '-' or '_', starting with a letter or digit"
        )


def _check_keys(values: Mapping, known: set[str], prefix: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise CatalogError(f"unknown key {prefix}.{unknown[0]}; known keys: {', '.join(sorted(known))}")


def _string(values: Mapping, key: str, prefix: str) -> str:
    value = values.get(key, "")
    if not isinstance(value, str):
        raise CatalogError(f"{prefix}.{key} must be a string, got {type(value).__name__}")
    return value
