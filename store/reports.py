"""Reporting: how playbook runs performed, and their outcome against the holdout.

Everything here is computed from the cache: the `runs` and `actions` tables and the cached
messages. Times are epoch milliseconds, UTC.

Intervention performance of a run, or of a playbook (all its runs that were not dry runs):

- sent: actions with status `sent` (one per step and user);
- delivered, opened, clicked: distinct users with an `Email Delivered`, `Email Opened` or CTA
  event (`ReportSettings.cta_event`, default `Email Link Clicked`) that belongs to the run;
- open rate = opened / delivered;
- CTA completion = users whose CTA event came at most `cta_window_days` after their first
  delivery / delivered.

A playbook's figures add up its runs, so a user reached by two runs counts in each.

Join rule, for an email event of user U:

1. when its `action_id` property carries the id of one of U's actions, the event belongs to that
   action and its run;
2. else, when its `run_id` property carries the id of a run in which U has an action, it belongs
   to that run;
3. else, when it carries neither property, it belongs to U's most recent email action that was
   sent at or before the event and at most `cta_window_days` before it, whatever its playbook.

Ids may be JSON numbers or strings of digits. An event whose ids match none of U's actions or runs
belongs to no run, because the ids mean that another sender produced it.

Outcome against holdout: each playbook has an outcome (`OutcomeRule`), configured per playbook or
else the default of its segment (`default_outcome`). The treated arm is the users of the runs with a
sent action, from their first `sent_at`. The held-out arm is the held-out users, from their first
`due_at`, when they would have been sent. A user reached the outcome when the rule is true in the
window (t0 + from, t0 + to] after that time. The report gives both rates, their difference in
percentage points and its 95% confidence interval by Newcombe's hybrid score method
(`newcombe_interval`), or "too few users" when an arm has fewer than `min_users_per_arm` users.
"""

from __future__ import annotations

import bisect
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist

import orjson

from store import segments as seg
from store.queries import segment_rows
from store.runs import _RUN_COLUMNS, Run, _run
from store.settings import DAY_MS, Settings, Taxonomy

# The two-sided 95% quantile of the standard normal distribution, 1.959963984540054.
Z_95 = NormalDist().inv_cdf(0.975)
OUTCOME_KINDS = ("activated", "active_in_days", "event", "new_feature")
DELIVERED_EVENT = "Email Delivered"
OPENED_EVENT = "Email Opened"
# Upgrade events that end an expansion conversation, besides a change of the account's plan trait.
UPGRADE_EVENTS = ("Plan Upgraded", "Subscription Upgraded")

_HOUR_MS = 3_600_000
_MINUTE_MS = 60_000


class ReportSettingsError(ValueError):
    """An invalid `[reporting]` key or playbook `outcome`. The message names the key."""


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeRule:
    """The result a playbook aims at, checked in the window (t0 + from_ms, t0 + to_ms] after its action.

    Kinds: `activated` means the user's first activation event ever falls in the window.
    `active_in_days` means any activity event in the window. `event` means one of `events` by the
    user (with `account`, by anyone at the user's account) or a change of the account trait
    `account_trait`. `new_feature` means an event of a core feature that the user did not use in
    the `feature_window_days` before the action.
    """

    kind: str
    from_ms: int = 0
    to_ms: int = 7 * DAY_MS
    events: tuple[str, ...] = ()
    account: bool = False
    account_trait: str | None = None

    def describe(self, taxonomy: Taxonomy) -> str:
        """Describe the rule in words, for tables and reports."""
        window = _window_words(self.from_ms, self.to_ms)
        if self.kind == "activated":
            return f"activated ({_or(taxonomy.activation_events)}) {window}"
        if self.kind == "active_in_days":
            return f"active {window}"
        if self.kind == "new_feature":
            return f"used a core feature new to the user {window}"
        what = []
        if self.events:
            who = " by anyone at the account" if self.account else ""
            what.append(f"{_or(self.events)}{who}")
        if self.account_trait:
            what.append(f"account trait {self.account_trait} changed")
        return f"{' or '.join(what)} {window}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ReportSettings:
    """The `[reporting]` settings and the playbooks' configured outcomes.

    `outcomes` maps a playbook id to its configured rule; other playbooks use their segment's
    default. `outcome_window_ms`, when set, replaces every outcome's window by the first that many
    ms after the action (see `with_windows`).
    """

    cta_event: str = "Email Link Clicked"
    cta_window_days: float = 7.0
    min_users_per_arm: int = 30
    outcomes: Mapping[str, OutcomeRule] = field(default_factory=dict)
    outcome_window_ms: int | None = None

    @property
    def cta_window_ms(self) -> int:
        return round(self.cta_window_days * DAY_MS)

    def with_windows(self, window_ms: int) -> ReportSettings:
        """Return these settings with the CTA window and every outcome window set to the first
        `window_ms` after the action, for a source that responds within minutes (the demo CDP)."""
        return replace(self, cta_window_days=window_ms / DAY_MS, outcome_window_ms=window_ms)

    def outcome_for(self, playbook_id: str, segment: str, taxonomy: Taxonomy) -> OutcomeRule:
        """Return the outcome of a playbook: its configured rule, else its segment's default."""
        rule = self.outcomes.get(playbook_id) or default_outcome(segment, taxonomy)
        if self.outcome_window_ms is not None:
            rule = replace(rule, from_ms=0, to_ms=self.outcome_window_ms)
        return rule


def default_outcome(segment: str, taxonomy: Taxonomy) -> OutcomeRule:
    """Return the default outcome of a segment's playbooks.

    Not-Yet-Activated: activated within 14 days. Activated-Not-Retained, At-Risk and New: active in
    days 7-14, still there in the second week. Churned: active again within 30 days. Power Users
    and Champion: a referral event within 30 days. Below-Threshold Usage and Established: a core
    feature new to the user within 14 days. Account Expansion Ready: an upgrade event by anyone at
    the account, or a change of its plan trait, within 30 days. Any other segment: active within
    7 days.
    """
    days = DAY_MS
    rules = {
        seg.NOT_YET_ACTIVATED: OutcomeRule("activated", 0, 14 * days),
        seg.ACTIVATED_NOT_RETAINED: OutcomeRule("active_in_days", 7 * days, 14 * days),
        seg.AT_RISK: OutcomeRule("active_in_days", 7 * days, 14 * days),
        seg.NEW: OutcomeRule("active_in_days", 7 * days, 14 * days),
        seg.CHURNED: OutcomeRule("active_in_days", 0, 30 * days),
        seg.POWER_USERS: OutcomeRule("event", 0, 30 * days, events=taxonomy.referral_events),
        seg.CHAMPION: OutcomeRule("event", 0, 30 * days, events=taxonomy.referral_events),
        seg.BELOW_THRESHOLD: OutcomeRule("new_feature", 0, 14 * days),
        seg.ESTABLISHED: OutcomeRule("new_feature", 0, 14 * days),
        seg.EXPANSION_READY: OutcomeRule("event", 0, 30 * days, events=UPGRADE_EVENTS, account=True,
                                         account_trait=taxonomy.plan_trait),
    }
    return rules.get(segment, OutcomeRule("active_in_days", 0, 7 * days))


REPORTING_DOCS = {
    "cta_event": "Track event that completes an email's call to action.",
    "cta_window_days": "CTA completion counts the CTA event up to this many days after the user's delivery.",
    "min_users_per_arm": "Below this many treated or held-out users, the outcome shows 'too few users'.",
}


def reporting_toml() -> list[str]:
    """Return the `[reporting]` table of the default configuration, with a comment on every key
    and on the playbooks' `outcome` key."""
    defaults = ReportSettings()
    lines = ["", "[reporting]"]
    for key, doc in REPORTING_DOCS.items():
        lines += [f"# {doc}", f"{key} = {json.dumps(getattr(defaults, key))}"]
    return lines + [
        "# Each playbook's outcome is compared between treated and held-out users. Set it in the",
        "# playbook's table, for example:",
        '#   [playbooks.<id>]  outcome = { kind = "active_in_days", from_days = 7, to_days = 14 }',
        "# kind is one of: activated (first activation event), active_in_days (any activity event),",
        "# event (one of `events`; account = true counts anyone at the user's account; account_trait",
        "# names an account trait whose change counts), new_feature (a core feature not used in the",
        "# feature window before the action). The window is (from_days, to_days] after the action,",
        "# by default (0, 7]. Without `outcome`, a playbook uses its segment's default: activated",
        "# within 14 days (Not-Yet-Activated); active in days 7-14 (Activated-Not-Retained, At-Risk,",
        "# New); active within 30 days (Churned); a referral event within 30 days (Power Users,",
        "# Champion); a new core feature within 14 days (Below-Threshold Usage, Established); an",
        "# upgrade event or a plan change within 30 days (Account Expansion Ready).",
    ]


def parse_reporting(reporting: Mapping, playbooks: Mapping) -> tuple[ReportSettings, dict]:
    """Build the report settings from the `[reporting]` table and the `outcome` keys of the
    `[playbooks.<id>]` tables. Return them and the playbook tables without their `outcome` keys.

    Raises `ReportSettingsError` naming an invalid key or value.
    """
    unknown = sorted(set(reporting) - set(REPORTING_DOCS))
    if unknown:
        raise ReportSettingsError(f"unknown key reporting.{unknown[0]}; known keys: {', '.join(REPORTING_DOCS)}")
    defaults = ReportSettings()
    cta_event = reporting.get("cta_event", defaults.cta_event)
    if not isinstance(cta_event, str) or not cta_event:
        raise ReportSettingsError(f"reporting.cta_event must be a non-empty string, got {cta_event!r}")
    window = reporting.get("cta_window_days", defaults.cta_window_days)
    if not _is_number(window) or window <= 0:
        raise ReportSettingsError(f"reporting.cta_window_days must be a number of days > 0, got {window!r}")
    minimum = reporting.get("min_users_per_arm", defaults.min_users_per_arm)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise ReportSettingsError(f"reporting.min_users_per_arm must be a whole number >= 1, got {minimum!r}")

    outcomes: dict[str, OutcomeRule] = {}
    remaining: dict = {}
    for playbook_id, table in playbooks.items():
        if isinstance(table, Mapping) and "outcome" in table:
            outcomes[playbook_id] = parse_outcome(table["outcome"], f"playbooks.{playbook_id}.outcome")
            table = {key: value for key, value in table.items() if key != "outcome"}
        remaining[playbook_id] = table
    settings = ReportSettings(cta_event, float(window), minimum, outcomes)
    return settings, remaining


_OUTCOME_KEYS = {"kind", "from_days", "to_days", "events", "account", "account_trait"}


def parse_outcome(table: object, name: str) -> OutcomeRule:
    """Build an `OutcomeRule` from an outcome table such as `{kind = "activated", to_days = 14}`.

    `name` is the key's full name, for the message of the `ReportSettingsError` it raises.
    """
    if not isinstance(table, Mapping):
        raise ReportSettingsError(f"{name} must be a table such as {{ kind = \"activated\" }}, got {table!r}")
    unknown = sorted(set(table) - _OUTCOME_KEYS)
    if unknown:
        raise ReportSettingsError(f"unknown key {name}.{unknown[0]}; known keys: {', '.join(sorted(_OUTCOME_KEYS))}")
    kind = table.get("kind")
    if kind not in OUTCOME_KINDS:
        raise ReportSettingsError(f"{name}.kind must be one of {', '.join(OUTCOME_KINDS)}, got {kind!r}")
    start, end = table.get("from_days", 0), table.get("to_days", 7)
    for key, value in (("from_days", start), ("to_days", end)):
        if not _is_number(value) or value < 0:
            raise ReportSettingsError(f"{name}.{key} must be a number of days >= 0, got {value!r}")
    if end <= start:
        raise ReportSettingsError(f"{name}.to_days ({end}) must be greater than from_days ({start})")

    events = table.get("events", [])
    if not isinstance(events, list) or not all(isinstance(event, str) and event for event in events):
        raise ReportSettingsError(f"{name}.events must be a list of event names, got {events!r}")
    account = table.get("account", False)
    if not isinstance(account, bool):
        raise ReportSettingsError(f"{name}.account must be true or false, got {account!r}")
    trait = table.get("account_trait")
    if trait is not None and (not isinstance(trait, str) or not trait):
        raise ReportSettingsError(f"{name}.account_trait must be a trait name, got {trait!r}")
    if kind == "event" and not events and trait is None:
        raise ReportSettingsError(f"{name}: an event outcome needs `events`, `account_trait` or both")
    if kind != "event" and (events or account or trait is not None):
        raise ReportSettingsError(f"{name}: events, account and account_trait apply only to kind = \"event\"")
    return OutcomeRule(kind, round(start * DAY_MS), round(end * DAY_MS), tuple(events), account, trait)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- statistics ----------------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Return the Wilson score interval of the proportion successes / trials.

    Raises `ValueError` when `trials` is 0 or `successes` is not in 0..trials.
    """
    if trials <= 0:
        raise ValueError(f"a proportion needs at least one trial, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be from 0 to {trials}, got {successes}")
    p = successes / trials
    z2 = z * z
    center = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    # At 0 and n successes the bounds are exactly 0 and 1, so rounding must not move them.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == trials else min(1.0, center + half)
    return low, high


def newcombe_interval(
    successes_1: int, trials_1: int, successes_2: int, trials_2: int, z: float = Z_95
) -> tuple[float, float, float]:
    """Return p1 - p2 and its confidence interval by Newcombe's hybrid score method.

    This is method 10 of R. G. Newcombe, "Interval estimation for the difference between
    independent proportions: comparison of eleven methods", Statistics in Medicine 17 (1998),
    873-890. It combines the Wilson score intervals (l1, u1) and (l2, u2) of both proportions:
    lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2).
    Values are fractions, not percentage points. Raises `ValueError` like `wilson_interval`.
    """
    low_1, high_1 = wilson_interval(successes_1, trials_1, z)
    low_2, high_2 = wilson_interval(successes_2, trials_2, z)
    p1, p2 = successes_1 / trials_1, successes_2 / trials_2
    difference = p1 - p2
    lower = difference - math.sqrt((p1 - low_1) ** 2 + (high_2 - p2) ** 2)
    upper = difference + math.sqrt((high_1 - p1) ** 2 + (p2 - low_2) ** 2)
    return difference, max(-1.0, lower), min(1.0, upper)


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Performance:
    """Intervention performance of a run or a playbook. Rates are fractions, None without deliveries."""

    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    cta_completed: int = 0

    @property
    def open_rate(self) -> float | None:
        return self.opened / self.delivered if self.delivered else None

    @property
    def cta_rate(self) -> float | None:
        return self.cta_completed / self.delivered if self.delivered else None

    def as_dict(self) -> dict:
        return dict(asdict(self), open_rate=self.open_rate, cta_rate=self.cta_rate)


@dataclass(frozen=True)
class Arm:
    """The users of one arm (treated or held out) and how many of them reached the outcome."""

    users: int
    reached: int

    @property
    def rate(self) -> float | None:
        return self.reached / self.users if self.users else None

    def describe(self) -> str:
        """Format the arm as "35.0% (42/120)"."""
        return f"{percent(self.rate)} ({self.reached}/{self.users})"

    def as_dict(self) -> dict:
        return {"users": self.users, "reached": self.reached, "rate": self.rate}


@dataclass(frozen=True)
class OutcomeComparison:
    """The outcome rate of treated users against held-out users.

    `difference_pp` and `ci_pp` (95%, Newcombe's hybrid score method) are in percentage points,
    treated minus held out; both are None when `too_few_users`. `window_open_until` is the time
    the last user's outcome window closes, when it is after the report's time: until then the rates
    can still grow.
    """

    outcome: str
    treated: Arm
    held_out: Arm
    too_few_users: bool
    difference_pp: float | None
    ci_pp: tuple[float, float] | None
    window_open_until: int | None

    def describe_difference(self) -> str:
        """Format the difference as "+25.0 pp [+10.2, +36.1]", or "too few users"."""
        if self.too_few_users:
            return "too few users"
        low, high = self.ci_pp
        return f"{self.difference_pp:+.1f} pp [{low:+.1f}, {high:+.1f}]"

    def as_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "treated": self.treated.as_dict(),
            "held_out": self.held_out.as_dict(),
            "too_few_users": self.too_few_users,
            "difference_pp": self.difference_pp,
            "ci_95_pp": list(self.ci_pp) if self.ci_pp else None,
            "window_open_until": self.window_open_until,
        }


@dataclass(frozen=True)
class RunReport:
    """A run with its performance and its outcome against holdout."""

    run: Run
    performance: Performance
    outcome: OutcomeComparison

    def as_dict(self) -> dict:
        return {"run": self.run.as_dict(), "performance": self.performance.as_dict(),
                "outcome": self.outcome.as_dict()}


@dataclass(frozen=True)
class PlaybookReport:
    """A playbook's runs (not dry runs) taken together: their performance and outcome."""

    playbook: str
    segment: str
    runs: int
    latest_run_at: int
    performance: Performance
    outcome: OutcomeComparison

    def as_dict(self) -> dict:
        return {"playbook": self.playbook, "segment": self.segment, "runs": self.runs,
                "latest_run_at": self.latest_run_at, "performance": self.performance.as_dict(),
                "outcome": self.outcome.as_dict()}


@dataclass(frozen=True)
class HealthRow:
    """One segment on the health screen and in `segops report`.

    `snapshot_at` is the time of the segment's latest snapshot; `stale` is true when that snapshot
    was marked stale or is older than the stale-after time. `latest` is the report of the latest
    run (not a dry run) of a playbook of the segment, or None.
    """

    segment: str
    kind: str
    entity: str
    population: int
    change_24h: int | None
    change_7d: int | None
    history: list[int]
    snapshot_at: int | None
    stale: bool
    latest: RunReport | None

    def as_dict(self) -> dict:
        record = asdict(self)
        record["latest"] = self.latest.as_dict() if self.latest else None
        return record


# --- queries -------------------------------------------------------------------------------------


def run_report(
    connection: sqlite3.Connection, run_id: int, settings: Settings, reporting: ReportSettings, *, now: int
) -> RunReport | None:
    """Return the performance and the outcome of one run at `now`, or None for an unknown run."""
    row = connection.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    run = _run(row)
    rule = reporting.outcome_for(run.playbook, run.segment, settings.taxonomy)
    return RunReport(
        run,
        performance(connection, [run.id], reporting),
        outcome_comparison(connection, [run.id], rule, settings, reporting, now=now),
    )


def playbook_report(
    connection: sqlite3.Connection, playbook_id: str, settings: Settings, reporting: ReportSettings, *, now: int
) -> PlaybookReport | None:
    """Return the performance and the outcome of all runs of a playbook that were not dry runs,
    or None when it has none. The outcome is the one of the segment of its latest run."""
    rows = connection.execute(
        "SELECT id, segment, created_at FROM runs WHERE playbook = ? AND dry_run = 0 ORDER BY created_at, id",
        (playbook_id,),
    ).fetchall()
    if not rows:
        return None
    run_ids = [row[0] for row in rows]
    segment, latest_at = rows[-1][1], rows[-1][2]
    rule = reporting.outcome_for(playbook_id, segment, settings.taxonomy)
    return PlaybookReport(
        playbook_id, segment, len(rows), latest_at,
        performance(connection, run_ids, reporting),
        outcome_comparison(connection, run_ids, rule, settings, reporting, now=now),
    )


def segment_runs(connection: sqlite3.Connection, segment: str, *, since: int | None = None,
                 limit: int = 20) -> list[Run]:
    """Return up to `limit` runs of a segment's playbooks that were not dry runs, newest first,
    created at or after `since` when given."""
    return [_run(row) for row in connection.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE segment = ? AND dry_run = 0 AND created_at >= ?"
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        (segment, since if since is not None else -1, limit),
    )]


def health_rows(
    connection: sqlite3.Connection,
    settings: Settings,
    reporting: ReportSettings,
    *,
    now: int,
    stale_after_ms: int | None = None,
    history_days: int = 30,
    segments: Iterable[str] | None = None,
) -> list[HealthRow]:
    """Return one row per seed segment (or per name in `segments`): population, changes over
    24 hours and 7 days, daily trend, freshness, and the latest run of its playbooks with its
    performance and outcome against holdout."""
    wanted = set(segments) if segments is not None else None
    rows = []
    for row in segment_rows(connection, history_days):
        if wanted is not None and row.name not in wanted:
            continue
        snapshot_at = connection.execute(
            "SELECT MAX(taken_at) FROM snapshots WHERE segment = ?", (row.name,)).fetchone()[0]
        old = stale_after_ms is not None and snapshot_at is not None and now - snapshot_at > stale_after_ms
        latest = segment_runs(connection, row.name, limit=1)
        rows.append(HealthRow(
            segment=row.name, kind=row.kind, entity=row.entity, population=row.population,
            change_24h=row.change_24h, change_7d=row.change_7d, history=row.history,
            snapshot_at=snapshot_at, stale=row.stale or old,
            latest=run_report(connection, latest[0].id, settings, reporting, now=now) if latest else None,
        ))
    return rows


# --- performance ---------------------------------------------------------------------------------


def performance(connection: sqlite3.Connection, run_ids: list[int], reporting: ReportSettings) -> Performance:
    """Return the intervention performance of these runs taken together, by the join rule of the
    module's documentation. Users are counted once per run."""
    ids = _json(run_ids)
    sent = connection.execute(
        "SELECT COUNT(*) FROM actions WHERE run_id IN (SELECT value FROM json_each(?)) AND status = 'sent'",
        (ids,)).fetchone()[0]
    users = [row[0] for row in connection.execute(
        "SELECT DISTINCT user_id FROM actions WHERE run_id IN (SELECT value FROM json_each(?))", (ids,))]

    wanted = set(run_ids)
    window = reporting.cta_window_ms
    first_delivery: dict[tuple[int, str], int] = {}
    opened: set[tuple[int, str]] = set()
    clicks: dict[tuple[int, str], list[int]] = {}
    for run_id, user_id, event, at in _attributed_email_events(connection, users, reporting):
        if run_id not in wanted:
            continue
        key = (run_id, user_id)
        if event == DELIVERED_EVENT:
            first_delivery[key] = min(at, first_delivery.get(key, at))
        if event == OPENED_EVENT:
            opened.add(key)
        if event == reporting.cta_event:
            clicks.setdefault(key, []).append(at)

    completed = sum(
        1 for key, delivered_at in first_delivery.items()
        if any(delivered_at <= at <= delivered_at + window for at in clicks.get(key, ()))
    )
    return Performance(sent, len(first_delivery), len(opened), len(clicks), completed)


def _attributed_email_events(
    connection: sqlite3.Connection, user_ids: list[str], reporting: ReportSettings
) -> Iterable[tuple[int, str, str, int]]:
    """Yield (run id, user id, event, time) for each delivered, opened or CTA event of these users
    that belongs to a run by the join rule."""
    users = _json(user_ids)
    owner: dict[int, tuple[int, str]] = {}
    runs_of_user: set[tuple[int, str]] = set()
    # Per user: the (sent_at, run_id) of their sent email actions, by time, for rule 3.
    sent_emails: dict[str, list[tuple[int, int]]] = {}
    for action_id, run_id, user_id, status, channel, sent_at in connection.execute(
        "SELECT id, run_id, user_id, status, channel, sent_at FROM actions"
        " WHERE user_id IN (SELECT value FROM json_each(?))", (users,)
    ):
        owner[action_id] = (run_id, user_id)
        runs_of_user.add((run_id, user_id))
        if status == "sent" and channel == "email" and sent_at is not None:
            sent_emails.setdefault(user_id, []).append((sent_at, run_id))
    for emails in sent_emails.values():
        emails.sort()

    window = reporting.cta_window_ms
    events = _json([DELIVERED_EVENT, OPENED_EVENT, reporting.cta_event])
    for user_id, event, at, action_ref, run_ref in connection.execute(
        "SELECT user_key, event, event_time, json_extract(payload, '$.properties.action_id'),"
        " json_extract(payload, '$.properties.run_id') FROM messages"
        " WHERE user_key IN (SELECT value FROM json_each(?)) AND type = 'track'"
        " AND event IN (SELECT value FROM json_each(?))",
        (users, events),
    ):
        run_id = _join(user_id, at, _as_id(action_ref), _as_id(run_ref), action_ref is None and run_ref is None,
                       owner, runs_of_user, sent_emails.get(user_id, []), window)
        if run_id is not None:
            yield run_id, user_id, event, at


def _join(
    user_id: str,
    at: int,
    action_id: int | None,
    run_id: int | None,
    untagged: bool,
    owner: Mapping[int, tuple[int, str]],
    runs_of_user: set[tuple[int, str]],
    sent_emails: list[tuple[int, int]],
    window_ms: int,
) -> int | None:
    """Return the run an email event belongs to by the join rule, or None."""
    if action_id is not None and owner.get(action_id, (None, None))[1] == user_id:
        return owner[action_id][0]
    if run_id is not None and (run_id, user_id) in runs_of_user:
        return run_id
    if not untagged:
        return None
    # The latest email sent at or before the event, if it is inside the window.
    index = bisect.bisect_right(sent_emails, (at, math.inf)) - 1
    if index >= 0 and at - sent_emails[index][0] <= window_ms:
        return sent_emails[index][1]
    return None


def _as_id(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


# --- outcome against holdout ---------------------------------------------------------------------


def outcome_comparison(
    connection: sqlite3.Connection,
    run_ids: list[int],
    rule: OutcomeRule,
    settings: Settings,
    reporting: ReportSettings,
    *,
    now: int,
) -> OutcomeComparison:
    """Return the outcome rates of the treated and held-out users of these runs, their difference
    and its 95% confidence interval, or "too few users" below `min_users_per_arm` in an arm.

    A user in two runs counts in each, from each run's own action time.
    """
    ids = _json(run_ids)
    treated = connection.execute(
        "SELECT user_id, MAX(account_id), MIN(sent_at) FROM actions WHERE run_id IN (SELECT value FROM json_each(?))"
        " AND status = 'sent' AND sent_at IS NOT NULL GROUP BY run_id, user_id", (ids,)).fetchall()
    held_out = connection.execute(
        "SELECT user_id, MAX(account_id), MIN(due_at) FROM actions WHERE run_id IN (SELECT value FROM json_each(?))"
        " AND held_out = 1 GROUP BY run_id, user_id", (ids,)).fetchall()
    arms = (Arm(len(treated), _reached(connection, treated, rule, settings)),
            Arm(len(held_out), _reached(connection, held_out, rule, settings)))

    closes = max((row[2] + rule.to_ms for row in treated + held_out), default=None)
    too_few = min(arms[0].users, arms[1].users) < reporting.min_users_per_arm
    difference = ci = None
    if not too_few:
        value, low, high = newcombe_interval(arms[0].reached, arms[0].users, arms[1].reached, arms[1].users)
        difference, ci = 100 * value, (100 * low, 100 * high)
    return OutcomeComparison(
        outcome=rule.describe(settings.taxonomy),
        treated=arms[0],
        held_out=arms[1],
        too_few_users=too_few,
        difference_pp=difference,
        ci_pp=ci,
        window_open_until=closes if closes is not None and closes > now else None,
    )


def _reached(connection: sqlite3.Connection, arm: list[tuple], rule: OutcomeRule, settings: Settings) -> int:
    """Count the arm's (user, account, t0) rows whose outcome is true in its window."""
    if not arm:
        return 0
    condition, parameters = _outcome_condition(rule, settings)
    parameters.update(arm=_json([list(row) for row in arm]), start=rule.from_ms, end=rule.to_ms)
    return connection.execute(
        "WITH arm (user_id, account_id, t0) AS (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
        " json_extract(value, '$[2]') FROM json_each(:arm))"
        f" SELECT COUNT(*) FROM arm AS a WHERE {condition}",
        parameters,
    ).fetchone()[0]


# The window (t0 + from, t0 + to] of message m, in the arm row a.
_IN_WINDOW = "m.event_time > a.t0 + :start AND m.event_time <= a.t0 + :end"


def _outcome_condition(rule: OutcomeRule, settings: Settings) -> tuple[str, dict]:
    """Return the SQL condition on arm row `a` that is true when the rule is met, and its parameters."""
    taxonomy = settings.taxonomy
    if rule.kind == "activated":
        first = ("(SELECT MIN(m.event_time) FROM messages AS m WHERE m.user_key = a.user_id AND m.type = 'track'"
                 " AND m.event IN (SELECT value FROM json_each(:activation)))")
        return f"{first} > a.t0 + :start AND {first} <= a.t0 + :end", {
            "activation": _json(taxonomy.activation_events)}

    if rule.kind == "active_in_days":
        return (
            f"EXISTS (SELECT 1 FROM messages AS m WHERE m.user_key = a.user_id AND {_IN_WINDOW}"
            " AND (m.type IN ('page', 'screen') OR (m.type = 'track'"
            " AND m.event NOT IN (SELECT value FROM json_each(:inactive)))))",
            {"inactive": _json(taxonomy.non_activity_events())},
        )

    if rule.kind == "new_feature":
        return (
            f"EXISTS (SELECT 1 FROM messages AS m WHERE m.user_key = a.user_id AND {_IN_WINDOW}"
            " AND m.type = 'track' AND m.event IN (SELECT value FROM json_each(:features))"
            " AND NOT EXISTS (SELECT 1 FROM messages AS p WHERE p.user_key = a.user_id AND p.type = 'track'"
            " AND p.event = m.event AND p.event_time > a.t0 - :feature_window AND p.event_time <= a.t0))",
            {"features": _json(taxonomy.core_feature_events),
             "feature_window": settings.thresholds.feature_window_days * DAY_MS},
        )

    parts = []
    events = " AND m.type = 'track' AND m.event IN (SELECT value FROM json_each(:events))"
    if rule.events:
        parts.append(f"EXISTS (SELECT 1 FROM messages AS m WHERE m.user_key = a.user_id AND {_IN_WINDOW}{events})")
        if rule.account:
            parts.append(f"EXISTS (SELECT 1 FROM messages AS m WHERE m.group_id = a.account_id AND {_IN_WINDOW}"
                         f"{events})")
    if rule.account_trait:
        # A value set in the window that differs from the value in effect at t0 (or from none).
        value_at_t0 = ("(SELECT p_t.value FROM messages AS p JOIN trait_updates AS p_t ON p_t.seq = p.seq"
                       " WHERE p.group_id = a.account_id AND p_t.scope = 'account' AND p_t.key = :trait"
                       " AND p.event_time <= a.t0 ORDER BY p.event_time DESC, p.seq DESC LIMIT 1)")
        parts.append(
            "EXISTS (SELECT 1 FROM messages AS m JOIN trait_updates AS t ON t.seq = m.seq"
            f" WHERE m.group_id = a.account_id AND t.scope = 'account' AND t.key = :trait AND {_IN_WINDOW}"
            f" AND t.value IS NOT {value_at_t0})"
        )
    return "(" + " OR ".join(parts) + ")", {"events": _json(rule.events), "trait": rule.account_trait}


def population_series(
    connection: sqlite3.Connection, segment: str, *, since: int, until: int, buckets: int = 200
) -> list[tuple[int, int]]:
    """Return the segment's population over (since, until] as (snapshot time, population), oldest
    first: the latest snapshot in each of `buckets` equal spans, so that a chart stays small
    whatever the number of snapshots. Stale snapshots are left out, as in the trends."""
    size = max(1, (until - since) // buckets)
    # SQLite takes the bare column `population` from the row holding MAX(taken_at) of each group.
    return [
        (taken_at, population)
        for _bucket, taken_at, population in connection.execute(
            "SELECT (taken_at - :since) / :size AS bucket, MAX(taken_at), population FROM snapshots"
            " WHERE segment = :segment AND stale = 0 AND taken_at > :since AND taken_at <= :until"
            " GROUP BY bucket ORDER BY bucket",
            {"since": since, "until": until, "size": size, "segment": segment},
        )
    ]


# --- formatting helpers --------------------------------------------------------------------------


def percent(rate: float | None) -> str:
    """Format a fraction as a percentage with one decimal, or "–" for None."""
    return "–" if rate is None else f"{100 * rate:.1f}%"


def _json(values: Iterable) -> str:
    return orjson.dumps(list(values)).decode()


def _or(names: Iterable[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _window_words(start_ms: int, end_ms: int) -> str:
    if start_ms == 0:
        return f"within {span_words(end_ms)}"
    # The largest unit in which both ends are whole, else minutes.
    unit, size = next(((unit, size) for unit, size in (("days", DAY_MS), ("hours", _HOUR_MS))
                       if start_ms % size == 0 and end_ms % size == 0), ("minutes", _MINUTE_MS))
    return f"in {unit} {_number(start_ms / size)}-{_number(end_ms / size)}"


def span_words(ms: int) -> str:
    """Format a duration as "7 days", "12 hours" or "10 minutes"."""
    for unit, size in (("day", DAY_MS), ("hour", _HOUR_MS), ("minute", _MINUTE_MS)):
        if ms >= size and (ms % size == 0 or unit == "minute"):
            value = _number(ms / size)
            return f"{value} {unit}" + ("" if value == "1" else "s")
    return f"{ms / 1000:g} seconds"


def _number(value: float) -> str:
    return f"{value:g}"
