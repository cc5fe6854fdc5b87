"""The segment engine: the seed rules over user and account facts at an evaluation time T.

Each rule returns a `Verdict`: membership and the conditions that decided it, each with the actual
value, the threshold and whether it held. Membership is computed from those same conditions, so a
membership and its explanation cannot disagree.

Exact meanings: "in the last N days" is the window (T - N days, T]; "no activity for N days" is
`last_active_at` <= T - N days or no activity at all; an active day is a distinct UTC date.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from store import segments as seg
from store.facts import AccountFacts, UserFacts, load_account_facts, load_user_facts, number
from store.settings import DAY_MS, Settings
from store.timeparse import format_ms

# Tolerance for "usage >= 80% of the limit" so that float rounding (0.8 * 3 = 2.4000000000000004)
# never decides a boundary case.
_EPSILON = 1e-9


class Condition(NamedTuple):
    """One condition of a rule: what was measured, against what, and whether it held."""

    name: str
    value: object
    threshold: str
    passed: bool


@dataclass(slots=True)
class Verdict:
    """Membership of one entity in one segment, with the conditions behind it."""

    member: bool
    conditions: list[Condition]
    # "all": every condition must hold; "any": one is enough.
    combine: str = "all"

    def as_dict(self) -> dict:
        """Return the verdict as JSON-ready data."""
        return {
            "member": self.member,
            "combine": self.combine,
            "conditions": [condition._asdict() for condition in self.conditions],
        }


def _all(conditions: list[Condition]) -> Verdict:
    return Verdict(all(condition.passed for condition in conditions), conditions, "all")


def _any(conditions: list[Condition]) -> Verdict:
    return Verdict(any(condition.passed for condition in conditions), conditions, "any")


@dataclass(slots=True)
class Context:
    """What every rule needs besides the entity: T, the settings and the Power Users threshold."""

    t: int
    settings: Settings
    # The k-th highest usage score among active users; None when no user is active.
    power_threshold: int | None = None
    active_users: int = 0

    def ago(self, days: int) -> int:
        """Return T minus `days` days, in epoch ms."""
        return self.t - days * DAY_MS


def days_since(t: int, moment: int | None) -> float | None:
    """Return the days from `moment` to T, rounded to 0.1, or None when there is no moment."""
    if moment is None:
        return None
    return round((t - moment) / DAY_MS, 1)


def power_threshold(facts: list[UserFacts], settings: Settings, t: int) -> tuple[int | None, int]:
    """Return the Power Users score threshold and the number of active users it was taken from.

    Among the n users active in the window, k = ceil(share x n) and the threshold is the k-th
    highest usage score. The share is taken as an exact decimal so that ceil(0.1 x 30) is 3.
    """
    since = t - settings.thresholds.power_window_days * DAY_MS
    return top_share_threshold(
        [user.usage_score for user in facts if user.last_active_at is not None and user.last_active_at > since],
        settings,
    )


def top_share_threshold(scores: list[int], settings: Settings) -> tuple[int | None, int]:
    """Return the k-th highest of the active users' `scores`, k = ceil(share x n), and n."""
    if not scores:
        return None, 0
    ordered = sorted(scores, reverse=True)
    k = math.ceil(Fraction(str(settings.thresholds.power_top_share)) * len(ordered))
    k = min(max(k, 1), len(ordered))
    return ordered[k - 1], len(ordered)


# --- user rules ---------------------------------------------------------------------------------


def _cancelled(user: UserFacts) -> Condition:
    return Condition("cancelled", format_ms(user.cancelled_at) or None, "cancellation event or status trait",
                     user.cancelled_at is not None)


def _not_cancelled(user: UserFacts) -> Condition:
    return Condition("not cancelled", format_ms(user.cancelled_at) or None, "no cancellation",
                     user.cancelled_at is None)


def _idle_for(user: UserFacts, context: Context, days: int) -> Condition:
    """No activity for `days` days: last activity at or before T - days, or none at all."""
    last = user.last_active_at
    passed = last is None or last <= context.ago(days)
    return Condition("days since last activity", days_since(context.t, last), f">= {days} (or never active)",
                     passed)


def _active_within(user: UserFacts, context: Context, days: int) -> Condition:
    last = user.last_active_at
    passed = last is not None and last > context.ago(days)
    return Condition("days since last activity", days_since(context.t, last), f"< {days}", passed)


def not_yet_activated(user: UserFacts, context: Context) -> Verdict:
    """Signed up, never activated, not cancelled."""
    return _all([
        Condition("signed up", format_ms(user.signup_at) or None, "has a signup time", user.signup_at is not None),
        Condition("activated", format_ms(user.activated_at) or None, "never", user.activated_at is None),
        _not_cancelled(user),
    ])


def activated_not_retained(user: UserFacts, context: Context) -> Verdict:
    """Activated, no activity in the retention window, not cancelled."""
    days = context.settings.thresholds.retention_idle_days
    return _all([
        Condition("activated", format_ms(user.activated_at) or None, "activated", user.activated_at is not None),
        _idle_for(user, context, days),
        _not_cancelled(user),
    ])


def power_user(user: UserFacts, context: Context) -> Verdict:
    """Active in the window and a usage score in the top share of active users (ties in, score > 0)."""
    thresholds = context.settings.thresholds
    threshold = context.power_threshold
    score = user.usage_score
    share = f"{thresholds.power_top_share:.0%}"
    return _all([
        _active_within(user, context, thresholds.power_window_days),
        Condition(
            "usage score",
            score,
            f">= {threshold} (top {share} of {context.active_users} active users) and > 0",
            threshold is not None and score >= threshold and score > 0,
        ),
    ])


def below_threshold(user: UserFacts, context: Context) -> Verdict:
    """Active in the recent window and fewer core features than the threshold."""
    thresholds = context.settings.thresholds
    return _all([
        _active_within(user, context, thresholds.retention_idle_days),
        Condition("core features used in 30 days", user.features_30, f"< {thresholds.below_threshold_features}",
                  user.features_30 < thresholds.below_threshold_features),
    ])


def churned(user: UserFacts, context: Context) -> Verdict:
    """Cancelled, or no activity for the churn window (from signup when never active)."""
    days = context.settings.thresholds.churn_idle_days
    if user.last_active_at is None:
        signup = user.signup_at
        idle = Condition("days since signup (never active)", days_since(context.t, signup), f">= {days}",
                         signup is not None and signup <= context.ago(days))
    else:
        idle = _idle_for(user, context, days)
    return _any([_cancelled(user), idle])


def at_risk(user: UserFacts, context: Context) -> Verdict:
    """Any churn signal: idle after activation, declining active days, low NPS, a churn-signal event."""
    thresholds = context.settings.thresholds
    last = user.last_active_at
    idle = (
        user.activated_at is not None
        and last is not None
        and context.ago(thresholds.churn_idle_days) < last <= context.ago(thresholds.at_risk_idle_days)
    )
    previous = user.previous_active_days
    recent = user.recent_active_days
    declining = previous >= thresholds.decline_min_days and recent < thresholds.decline_ratio * previous
    low_nps = _nps_within(user, context, thresholds.at_risk_nps_window_days)
    window = thresholds.decline_window_days
    return _any([
        Condition(
            "activated and days since last activity",
            days_since(context.t, last) if user.activated_at is not None else None,
            f"in [{thresholds.at_risk_idle_days}, {thresholds.churn_idle_days}) after activation",
            idle,
        ),
        Condition(
            f"active days, last {window} vs previous {window}",
            f"{recent} vs {previous}",
            f"< {thresholds.decline_ratio:g} x previous, previous >= {thresholds.decline_min_days}",
            declining,
        ),
        Condition(
            f"latest NPS in {thresholds.at_risk_nps_window_days} days",
            low_nps,
            f"<= {thresholds.at_risk_nps_max}",
            low_nps is not None and low_nps <= thresholds.at_risk_nps_max,
        ),
        Condition(
            f"churn-signal events in {thresholds.churn_signal_window_days} days",
            user.churn_signals_30,
            ">= 1",
            user.churn_signals_30 >= 1,
        ),
    ])


def champion(user: UserFacts, context: Context, is_power_user: bool) -> Verdict:
    """High engagement and advocacy: (Power User or many active days) and (high NPS or referrals)."""
    thresholds = context.settings.thresholds
    nps = _nps_within(user, context, thresholds.champion_nps_window_days)
    engaged = is_power_user or user.active_days_30 >= thresholds.champion_active_days
    advocate = (nps is not None and nps >= thresholds.champion_nps_min) or (
        user.referrals_90 >= thresholds.champion_referrals
    )
    return _all([
        Condition(
            "Power User or active days in 30",
            f"{'Power User, ' if is_power_user else ''}{user.active_days_30} active days",
            f"Power User or >= {thresholds.champion_active_days}",
            engaged,
        ),
        Condition(
            f"NPS in {thresholds.champion_nps_window_days} days or referrals in {thresholds.referral_window_days}",
            f"NPS {_format_score(nps)}, {user.referrals_90} referrals",
            f"NPS >= {thresholds.champion_nps_min} or >= {thresholds.champion_referrals} referrals",
            advocate,
        ),
    ])


def new(user: UserFacts, context: Context) -> Verdict:
    """Signed up in the last `new_days` days."""
    days = context.settings.thresholds.new_days
    signup = user.signup_at
    return _all([
        Condition("days since signup", days_since(context.t, signup), f"< {days}",
                  signup is not None and signup > context.ago(days)),
    ])


def established(user: UserFacts, context: Context) -> Verdict:
    """Signed up between `new_days` and `established_days` days ago."""
    thresholds = context.settings.thresholds
    signup = user.signup_at
    return _all([
        Condition(
            "days since signup",
            days_since(context.t, signup),
            f"in [{thresholds.new_days}, {thresholds.established_days})",
            signup is not None and context.ago(thresholds.established_days) < signup <= context.ago(thresholds.new_days),
        ),
    ])


def _nps_within(user: UserFacts, context: Context, days: int) -> float | None:
    """Return the latest NPS score when that latest answer is inside the window, else None."""
    if user.nps_at is None or user.nps_at <= context.ago(days):
        return None
    return user.nps_score


def _format_score(score: float | None) -> str:
    if score is None:
        return "none"
    return f"{score:g}"


def due_at(user: UserFacts, context: Context) -> int | None:
    """Return the earliest time after T at which the user's memberships can change with no new
    message: an event leaving a window, an idle or age threshold passing, or a message dated after
    T becoming visible. None when nothing can change with time alone.

    The Power Users threshold also moves with other users; the incremental pass handles that.
    """
    thresholds = context.settings.thresholds
    t = context.t
    day = DAY_MS
    candidates: list[int | None] = [user.next_message_at]
    if user.last_active_at is not None:
        candidates += [
            user.last_active_at + days * day
            for days in (thresholds.retention_idle_days, thresholds.at_risk_idle_days,
                         thresholds.churn_idle_days, thresholds.power_window_days)
        ]
    if user.signup_at is not None:
        candidates += [
            user.signup_at + days * day
            for days in (thresholds.new_days, thresholds.established_days, thresholds.churn_idle_days)
        ]
    if user.nps_at is not None:
        candidates += [user.nps_at + thresholds.at_risk_nps_window_days * day,
                       user.nps_at + thresholds.champion_nps_window_days * day]
    window_starts = (
        (user.first_active_in_window, thresholds.power_window_days),
        (user.first_recent_active, thresholds.decline_window_days),
        (user.first_previous_active, 2 * thresholds.decline_window_days),
        (user.first_feature_in_window, thresholds.feature_window_days),
        (user.first_referral_in_window, thresholds.referral_window_days),
        (user.first_signal_in_window, thresholds.churn_signal_window_days),
    )
    candidates += [start + days * day for start, days in window_starts if start is not None]
    future = [moment for moment in candidates if moment is not None and moment > t]
    return min(future) if future else None


def evaluate_user(user: UserFacts, context: Context) -> tuple[str, dict[str, Verdict]]:
    """Evaluate every user segment for one user: return the lifecycle stage and all verdicts.

    Lifecycle stages are tried in order and the first that matches wins; a later stage's verdict
    carries a condition naming the earlier stage that took the user.
    """
    verdicts: dict[str, Verdict] = {
        seg.NOT_YET_ACTIVATED: not_yet_activated(user, context),
        seg.ACTIVATED_NOT_RETAINED: activated_not_retained(user, context),
        seg.POWER_USERS: power_user(user, context),
        seg.BELOW_THRESHOLD: below_threshold(user, context),
    }
    stage_rules = (
        (seg.CHURNED, churned(user, context)),
        (seg.AT_RISK, at_risk(user, context)),
        (seg.CHAMPION, champion(user, context, verdicts[seg.POWER_USERS].member)),
        (seg.NEW, new(user, context)),
        (seg.ESTABLISHED, established(user, context)),
    )
    stage = seg.UNSTAGED
    for name, verdict in stage_rules:
        if stage != seg.UNSTAGED:
            verdict = Verdict(
                False,
                [Condition("earlier lifecycle stage", stage, "none", False), *verdict.conditions],
                verdict.combine,
            )
        elif verdict.member:
            stage = name
        verdicts[name] = verdict
    verdicts[seg.UNSTAGED] = Verdict(
        stage == seg.UNSTAGED,
        [Condition("lifecycle stage", stage if stage != seg.UNSTAGED else "none", "none of the above",
                   stage == seg.UNSTAGED)],
    )
    return stage, verdicts


# --- account rule -------------------------------------------------------------------------------


def expansion_ready(account: AccountFacts, context: Context) -> Verdict:
    """Seats used, or a metered usage, at or above the share of its limit, or enough teams."""
    settings = context.settings
    thresholds = settings.thresholds
    share = thresholds.expansion_usage_share
    plan = settings.plans.get(account.plan) if account.plan else None
    limits = dict(plan.limits) if plan else {}
    seat_limit = account.seats_trait if account.seats_trait is not None else limits.get("seats")
    seats_used = len(account.users)

    conditions = []
    if seat_limit:
        conditions.append(Condition(
            "seats used", seats_used, f">= {share:.0%} of {seat_limit:g} seats",
            seats_used >= share * seat_limit - _EPSILON,
        ))
    else:
        conditions.append(Condition("seats used", seats_used, "no seat limit (plan unknown or unlimited)", False))
    for limit_name, limit in sorted(limits.items()):
        if limit_name == "seats" or not limit:
            continue
        used = number(account.traits.get(f"{limit_name}_used"))
        conditions.append(Condition(
            f"{limit_name} used", used, f">= {share:.0%} of {limit:g}",
            used is not None and used >= share * limit - _EPSILON,
        ))
    conditions.append(Condition(
        "teams", len(account.teams), f">= {thresholds.expansion_min_teams}",
        len(account.teams) >= thresholds.expansion_min_teams,
    ))
    return _any(conditions)


# --- whole evaluations --------------------------------------------------------------------------


@dataclass
class Evaluation:
    """The result of evaluating every segment at T."""

    t: int
    users: dict[str, UserFacts]
    accounts: dict[str, AccountFacts]
    stages: dict[str, str]
    # Segment name -> sorted entity ids.
    members: dict[str, list[str]] = field(default_factory=dict)
    context: Context | None = None

    def populations(self) -> dict[str, int]:
        """Return the population of every seed segment, in definition order."""
        return {definition.name: len(self.members.get(definition.name, ())) for definition in seg.ALL_SEGMENTS}


def make_context(users: dict[str, UserFacts], settings: Settings, t: int) -> Context:
    """Build the evaluation context at `t`, with the Power Users threshold over `users`."""
    threshold, active = power_threshold(list(users.values()), settings, t)
    return Context(t=t, settings=settings, power_threshold=threshold, active_users=active)


def evaluate(connection: sqlite3.Connection, settings: Settings, t: int) -> Evaluation:
    """Evaluate every seed segment over the whole cache at `t` (epoch ms). Reads only."""
    users = load_user_facts(connection, settings, t)
    accounts = load_account_facts(connection, settings, t, users)
    context = make_context(users, settings, t)

    members: dict[str, list[str]] = {definition.name: [] for definition in seg.ALL_SEGMENTS}
    stages: dict[str, str] = {}
    for user_id in sorted(users):
        stage, verdicts = evaluate_user(users[user_id], context)
        stages[user_id] = stage
        for name, verdict in verdicts.items():
            if verdict.member:
                members[name].append(user_id)
    for account_id in sorted(accounts):
        if expansion_ready(accounts[account_id], context).member:
            members[seg.EXPANSION_READY].append(account_id)
    return Evaluation(t=t, users=users, accounts=accounts, stages=stages, members=members, context=context)


def explain_user(connection: sqlite3.Connection, settings: Settings, t: int, user_id: str) -> dict[str, Verdict] | None:
    """Return every user segment's verdict for one user at `t`, or None when the user is unknown.

    The Power Users threshold depends on all active users, so their facts are loaded too.
    """
    users = load_user_facts(connection, settings, t)
    if user_id not in users:
        return None
    context = make_context(users, settings, t)
    return evaluate_user(users[user_id], context)[1]


def explain_account(
    connection: sqlite3.Connection, settings: Settings, t: int, account_id: str
) -> Verdict | None:
    """Return the Account Expansion Ready verdict for one account at `t`, or None when unknown."""
    users = load_user_facts(connection, settings, t)
    accounts = load_account_facts(connection, settings, t, users, [account_id])
    if account_id not in accounts:
        return None
    return expansion_ready(accounts[account_id], make_context(users, settings, t))
