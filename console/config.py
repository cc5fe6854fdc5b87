"""The configuration: a TOML file over built-in defaults, validated key by key.

`DEFAULT_TOML` is the documented default configuration (`segops config --default` prints it); a
user's file may set any subset of its keys.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from console.playbooks.catalog import (
    DESTINATION_KINDS,
    CatalogError,
    Destination,
    Playbook,
    parse_destinations,
    parse_playbooks,
)
from console.playbooks.defaults import DEFAULT_DESTINATIONS, DEFAULT_PLAYBOOKS
from store.reports import ReportSettings, ReportSettingsError, parse_reporting, reporting_toml
from store.settings import Plan, Settings, Taxonomy, Thresholds

WRITE_KEY_ENV = "SEGOPS_WRITE_KEY"


class ConfigError(Exception):
    """The configuration file is missing, not TOML, or has an invalid key or value."""


@dataclass(frozen=True)
class DispatchSettings:
    """The dispatcher's timeouts and retries, in seconds."""

    # Attempts per action (the first request included) before it fails.
    max_attempts: int = 8
    # Retry n waits about backoff_base_seconds * 2**(n-1), jittered, at most backoff_max_seconds.
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 900.0
    timeout_seconds: float = 10.0
    # A claim older than this is taken as abandoned by a dispatcher that stopped, and re-sent.
    claim_timeout_seconds: float = 120.0
    # Seconds between passes of `segops dispatch` without --once.
    interval_seconds: float = 5.0


_DISPATCH_DOCS = {
    "max_attempts": "Attempts per action, the first request included, before it is marked failed.",
    "backoff_base_seconds": "Retry n waits about this times 2**(n-1) seconds, jittered (or Retry-After).",
    "backoff_max_seconds": "Longest wait between two attempts, in seconds.",
    "timeout_seconds": "Seconds to wait for a destination's response before the attempt counts as timed out.",
    "claim_timeout_seconds": "Seconds after which a claimed, unanswered action is sent again (same idempotency key).",
    "interval_seconds": "Seconds between passes of `segops dispatch` without --once.",
}


@dataclass
class Config:
    """Everything the command line and the console read from the configuration."""

    settings: Settings = field(default_factory=Settings)
    source_url: str | None = None
    write_key: str | None = None
    sync_interval: float = 5.0
    # Seconds without a new message after which populations are marked stale.
    stale_after: float = 900.0
    # Days of daily snapshots computed from the cache on its first sync.
    backfill_days: int = 90
    operator: str | None = None
    # When true, `trigger` and `dispatch` refuse to run: nothing is sent or queued.
    read_only: bool = False
    playbooks: dict[str, Playbook] = field(
        default_factory=lambda: parse_playbooks({}, parse_destinations({})))
    destinations: dict[str, Destination] = field(default_factory=lambda: parse_destinations({}))
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    # The [reporting] table and the playbooks' `outcome` keys.
    reporting: ReportSettings = field(default_factory=ReportSettings)
    # Console key changes: binding id -> keys, such as {"dashboard.health": "H"}.
    keymap: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


_TAXONOMY_DOCS = {
    "signup_events": "Track events that mark a signup; the first one's time is the signup time.",
    "signup_traits": "User traits holding the signup time, used when no signup event exists.",
    "activation_events": "Track events of the first 'aha' action; the first one is the activation.",
    "core_feature_events": "Track events of the core features, counted as distinct features used.",
    "cancellation_events": "Track events that cancel the user.",
    "cancellation_trait": "User trait that cancels the user when it equals cancellation_trait_value.",
    "cancellation_trait_value": "Value of cancellation_trait that means cancelled (case-insensitive).",
    "churn_signal_events": "Track events that signal churn risk (At-Risk).",
    "nps_events": "Track events of an NPS answer.",
    "nps_score_property": "Property of the NPS event holding the score, 0 to 10.",
    "referral_events": "Track events of a referral or an invitation.",
    "team_trait": "User trait naming the user's team.",
    "team_property": "Event property naming the team, used when the team trait is missing.",
    "plan_trait": "Account trait naming the plan (see [plans]).",
    "seats_trait": "Account trait with the seat limit; overrides the plan's seats.",
    "email_events": "Email engagement events; never counted as activity.",
    "audience_events": "Audience events; never counted as activity.",
    "playbook_events": "Playbook events; never counted as activity.",
}

_THRESHOLD_DOCS = {
    "retention_idle_days": "Activated-Not-Retained: days without activity; Below-Threshold Usage: activity window.",
    "power_top_share": "Power Users: share of active users (by usage score) in the top group, 0 to 1.",
    "power_window_days": "Power Users and Champion: window in days for active days and 'active'.",
    "below_threshold_features": "Below-Threshold Usage: fewer distinct core features than this.",
    "feature_window_days": "Window in days for distinct core features used.",
    "expansion_usage_share": "Account Expansion Ready: share of a seat or metered limit in use, 0 to 1.",
    "expansion_min_teams": "Account Expansion Ready: distinct teams using the account.",
    "churn_idle_days": "Churned: days without activity (from signup when never active).",
    "at_risk_idle_days": "At-Risk: an activated user idle at least this many days (and less than churn_idle_days).",
    "decline_window_days": "At-Risk: length in days of the recent and the previous window compared.",
    "decline_ratio": "At-Risk: recent active days below this share of the previous window's.",
    "decline_min_days": "At-Risk: the decline counts only when the previous window has this many active days.",
    "at_risk_nps_max": "At-Risk: latest NPS at or below this.",
    "at_risk_nps_window_days": "At-Risk: window in days for the latest NPS answer.",
    "churn_signal_window_days": "At-Risk: window in days for churn-signal events.",
    "champion_active_days": "Champion: active days in the last power_window_days (or a Power User).",
    "champion_nps_min": "Champion: latest NPS at or above this.",
    "champion_nps_window_days": "Champion: window in days for the latest NPS answer.",
    "champion_referrals": "Champion: referrals in the referral window.",
    "referral_window_days": "Champion: window in days for referrals.",
    "new_days": "New: signed up less than this many days ago.",
    "established_days": "Established: signed up between new_days and this many days ago.",
}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def default_toml() -> str:
    """Return the full default configuration as TOML, with a comment on every key."""
    lines = [
        "# segops configuration. Every key is optional; a missing key keeps its default.",
        "",
        "[source]",
        "# Pull feed of the CDP (for example the demo CDP: http://127.0.0.1:8765). Empty: no sync.",
        'url = ""',
        f"# Write key for the feed. Prefer the environment variable {WRITE_KEY_ENV}.",
        'write_key = ""',
        "# Seconds between syncs in the console and in `segops sync --follow`.",
        "sync_interval_seconds = 5.0",
        "# Seconds without any new message after which populations are shown as stale and kept out",
        "# of trends.",
        "stale_after_seconds = 900.0",
        "# Days of daily population snapshots computed from the cached events on the first sync.",
        "backfill_days = 90",
        "",
        "[ingest]",
        "# Messages larger than this many bytes of JSON are quarantined (Segment's limit is 32 KB).",
        "max_message_bytes = 32768",
        "",
        "[operator]",
        "# Name recorded on playbook runs; empty uses the operating system user.",
        'name = ""',
        "# true: `segops trigger` and `segops dispatch` refuse to run, so nothing is queued or sent.",
        "read_only = false",
        "",
        "[dispatch]",
    ]
    dispatch = DispatchSettings()
    for key, doc in _DISPATCH_DOCS.items():
        lines += [f"# {doc}", f"{key} = {_toml_value(getattr(dispatch, key))}"]
    lines += [
        "",
        "[taxonomy]",
    ]
    taxonomy = Taxonomy()
    for key, doc in _TAXONOMY_DOCS.items():
        lines += [f"# {doc}", f"{key} = {_toml_value(getattr(taxonomy, key))}"]
    lines += ["", "[thresholds]"]
    thresholds = Thresholds()
    for key, doc in _THRESHOLD_DOCS.items():
        lines += [f"# {doc}", f"{key} = {_toml_value(getattr(thresholds, key))}"]
    lines += [
        "",
        "# Plans by name (the account trait `plan`, case-insensitive). `seats` is the seat limit;",
        "# every other key X is a metered limit whose usage is the account trait `X_used`.",
        "# A plan with no keys has no limits.",
    ]
    for name, plan in Settings().plans.items():
        lines.append(f"[plans.{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in plan.limits.items()]
    lines += reporting_toml() + _destinations_toml() + _playbooks_toml()
    lines += [
        "",
        "# Console keys, by binding id (F1 in the console lists each screen's ids), for example:",
        '# "dashboard.health" = "H"',
        '# "screen.export" = "ctrl+e"',
        "[keymap]",
    ]
    return "\n".join(lines) + "\n"


def _destinations_toml() -> list[str]:
    lines = [
        "",
        "# Destinations by name: where playbook steps are sent. `type` is one of:",
        f"# {', '.join(DESTINATION_KINDS)}.",
        "# Each secret X is read from the environment variable that X_env names (preferred), else",
        "# from X in this file (discouraged: the file is not a safe place for secrets).",
    ]
    for kind in DESTINATION_KINDS.values():
        lines.append(f"#   {kind.name}:")
        for key, doc in kind.fields.items():
            default = kind.defaults.get(key)
            lines.append(f"#     {key}: {doc}" + (f" Default: {default}" if default else ""))
        for key, doc in kind.secrets.items():
            lines.append(f"#     {key}_env (or {key}): {doc}")
    lines += [
        "# For example:",
        "#   [destinations.braze]",
        '#   type = "braze"',
        '#   rest_endpoint = "https://rest.iad-01.braze.com"',
        '#   api_key_env = "BRAZE_API_KEY"',
    ]
    for name, values in DEFAULT_DESTINATIONS.items():
        lines.append(f"[destinations.{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return lines


_PLAYBOOK_KEY_ORDER = ("name", "segment", "description", "tone", "holdout_share", "cooldown_days",
                       "exclude_segments", "on_entry")
_PLAYBOOK_DEFAULTS = {"description": "", "tone": "", "holdout_share": 0.10, "cooldown_days": 7,
                      "exclude_segments": [], "on_entry": False}


def _playbooks_toml() -> list[str]:
    lines = [
        "",
        "# Playbooks by id. A playbook is for one seed segment; each step sends `content` (a campaign,",
        "# workflow or template id) on a channel (email, in_app or cs_task) through a destination,",
        "# `delay_minutes` after the trigger. holdout_share (0 to <1, default 0.1) of the targeted users is",
        "# held out, chosen by a stable hash of playbook and user; cooldown_days (default 7) skips users",
        "# this playbook reached in that many days; exclude_segments skips their current members;",
        "# on_entry = true triggers the playbook for every user entering the segment (default false).",
    ]
    for playbook_id, values in DEFAULT_PLAYBOOKS.items():
        lines += ["", f"[playbooks.{playbook_id}]"]
        for key in _PLAYBOOK_KEY_ORDER:
            lines.append(f"{key} = {_toml_value(values.get(key, _PLAYBOOK_DEFAULTS.get(key)))}")
        for step in values["steps"]:
            lines.append(f"[[playbooks.{playbook_id}.steps]]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in step.items()]
    return lines


def load_config(path: Path | None) -> Config:
    """Read the configuration at `path` over the defaults; a None path or a missing default file
    gives the defaults. The write key comes from the environment first.

    Raises `ConfigError` naming the file, the key and what is wrong.
    """
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} not found") from None
        except OSError as error:
            raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"configuration file {path} is not valid TOML: {error}") from None
    config = parse_config(data, str(path) if path else "defaults")
    config.path = Path(path) if path else None
    return config


def parse_config(data: dict, origin: str) -> Config:
    """Build a `Config` from parsed TOML. Raises `ConfigError` for unknown keys and wrong types."""
    _check_keys(data, {"source", "ingest", "operator", "taxonomy", "thresholds", "plans", "dispatch",
                       "destinations", "playbooks", "reporting", "keymap"}, "", origin)
    source = _table(data, "source", origin)
    _check_keys(source, {"url", "write_key", "sync_interval_seconds", "stale_after_seconds", "backfill_days"},
                "source.", origin)
    ingest = _table(data, "ingest", origin)
    _check_keys(ingest, {"max_message_bytes"}, "ingest.", origin)
    operator = _table(data, "operator", origin)
    _check_keys(operator, {"name", "read_only"}, "operator.", origin)
    read_only = operator.get("read_only", False)
    if not isinstance(read_only, bool):
        raise ConfigError(f"{origin}: operator.read_only must be true or false, got {read_only!r}")
    dispatch = _replace(DispatchSettings(), _table(data, "dispatch", origin), "dispatch.", origin)
    _check_dispatch(dispatch, origin)
    try:
        destinations = parse_destinations(_table(data, "destinations", origin))
        reporting, playbook_tables = parse_reporting(
            _table(data, "reporting", origin), _table(data, "playbooks", origin))
        playbooks = parse_playbooks(playbook_tables, destinations)
    except (CatalogError, ReportSettingsError) as error:
        raise ConfigError(f"{origin}: {error}") from None

    taxonomy = _replace(Taxonomy(), _table(data, "taxonomy", origin), "taxonomy.", origin)
    thresholds = _replace(Thresholds(), _table(data, "thresholds", origin), "thresholds.", origin)
    _check_thresholds(thresholds, origin)
    plans = Settings().plans
    if "plans" in data:
        plans = {}
        for name, limits in _table(data, "plans", origin).items():
            if not isinstance(limits, dict):
                raise ConfigError(f"{origin}: plans.{name} must be a table of limits, got {_kind(limits)}")
            for key, value in limits.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ConfigError(f"{origin}: plans.{name}.{key} must be a positive number, got {value!r}")
            plans[name.lower()] = Plan(name.lower(), dict(limits))

    max_bytes = ingest.get("max_message_bytes", 32 * 1024)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ConfigError(f"{origin}: ingest.max_message_bytes must be a positive integer, got {max_bytes!r}")
    interval = source.get("sync_interval_seconds", 5.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise ConfigError(f"{origin}: source.sync_interval_seconds must be a positive number, got {interval!r}")
    stale_after = source.get("stale_after_seconds", 900.0)
    if isinstance(stale_after, bool) or not isinstance(stale_after, (int, float)) or stale_after <= 0:
        raise ConfigError(f"{origin}: source.stale_after_seconds must be a positive number, got {stale_after!r}")
    backfill_days = source.get("backfill_days", 90)
    if isinstance(backfill_days, bool) or not isinstance(backfill_days, int) or not 0 <= backfill_days <= 3660:
        raise ConfigError(f"{origin}: source.backfill_days must be a whole number from 0 to 3660, got {backfill_days!r}")
    keymap = _table(data, "keymap", origin)
    for binding_id, keys in keymap.items():
        if not isinstance(keys, str) or not keys.strip():
            raise ConfigError(f"{origin}: keymap.{binding_id} must be a key name such as \"H\" or "
                              f"\"ctrl+h\" (several separated by commas), got {keys!r}")
    url = _string(source, "url", "source.", origin)
    write_key = os.environ.get(WRITE_KEY_ENV) or _string(source, "write_key", "source.", origin)
    return Config(
        settings=Settings(taxonomy=taxonomy, thresholds=thresholds, plans=plans, max_message_bytes=max_bytes),
        source_url=url or None,
        write_key=write_key or None,
        sync_interval=float(interval),
        stale_after=float(stale_after),
        backfill_days=backfill_days,
        operator=_string(operator, "name", "operator.", origin) or None,
        read_only=read_only,
        playbooks=playbooks,
        destinations=destinations,
        dispatch=dispatch,
        reporting=reporting,
        keymap=dict(keymap),
    )


def _table(data: dict, key: str, origin: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: [{key}] must be a table, got {_kind(value)}")
    return value


def _check_keys(data: dict, known: set[str], prefix: str, origin: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key {prefix}{unknown[0]}; known keys: {', '.join(sorted(known))}"
        )


def _string(data: dict, key: str, prefix: str, origin: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: {prefix}{key} must be a string, got {_kind(value)}")
    return value


def _replace(defaults, values: dict, prefix: str, origin: str):
    """Return a copy of a settings dataclass with `values` applied, each checked against the
    default's type."""
    fields = {item.name for item in dataclasses.fields(defaults)}
    _check_keys(values, fields, prefix, origin)
    changes = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        name = f"{prefix}{key}"
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
                raise ConfigError(f"{origin}: {name} must be a list of non-empty strings, got {value!r}")
            value = tuple(value)
        elif isinstance(default, str):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{origin}: {name} must be a non-empty string, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool) and type(default) is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{origin}: {name} must be a whole number >= 0, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{origin}: {name} must be a number >= 0, got {value!r}")
            value = float(value)
        changes[key] = value
    return dataclasses.replace(defaults, **changes)


def _check_thresholds(thresholds: Thresholds, origin: str) -> None:
    for key in ("power_top_share", "expansion_usage_share", "decline_ratio"):
        value = getattr(thresholds, key)
        if not 0 < value <= 1:
            raise ConfigError(f"{origin}: thresholds.{key} must be greater than 0 and at most 1, got {value}")
    if thresholds.new_days > thresholds.established_days:
        raise ConfigError(
            f"{origin}: thresholds.new_days ({thresholds.new_days}) must not exceed "
            f"thresholds.established_days ({thresholds.established_days})"
        )


def _check_dispatch(dispatch: DispatchSettings, origin: str) -> None:
    if dispatch.max_attempts < 1:
        raise ConfigError(f"{origin}: dispatch.max_attempts must be at least 1, got {dispatch.max_attempts}")
    for key in ("backoff_base_seconds", "timeout_seconds", "claim_timeout_seconds", "interval_seconds"):
        if not getattr(dispatch, key) > 0:
            raise ConfigError(f"{origin}: dispatch.{key} must be greater than 0, got {getattr(dispatch, key)}")
    if dispatch.claim_timeout_seconds <= dispatch.timeout_seconds:
        raise ConfigError(
            f"{origin}: dispatch.claim_timeout_seconds ({dispatch.claim_timeout_seconds}) must exceed "
            f"dispatch.timeout_seconds ({dispatch.timeout_seconds}), or requests still waiting for an answer "
            "would be sent again"
        )
    if dispatch.backoff_max_seconds < dispatch.backoff_base_seconds:
        raise ConfigError(
            f"{origin}: dispatch.backoff_max_seconds ({dispatch.backoff_max_seconds}) must be at least "
            f"dispatch.backoff_base_seconds ({dispatch.backoff_base_seconds})"
        )


def _kind(value: object) -> str:
    return type(value).__name__
