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

    def near_miss(self) -> tuple[str, Condition] | None:
        """Return ("enter", condition) when a non-member fails only that condition of an all-of
        rule, ("leave", condition) when a member holds only that condition of an any-of rule, and
        None otherwise, or when that condition cannot change back (see `_final`)."""
        failed = [condition for condition in self.conditions if not condition.passed]
        held = [condition for condition in self.conditions if condition.passed]
        if not self.member and self.combine == "all" and len(failed) == 1 and len(self.conditions) > 1:
            return None if _final(failed[0]) else ("enter", failed[0])
        if self.member and self.combine == "any" and len(held) == 1:
            return None if _final(held[0]) else ("leave", held[0])
        return None

    def as_dict(self) -> dict:
        """Return the verdict as JSON-ready data."""
        miss = self.near_miss()
        return {
            "member": self.member,
            "combine": self.combine,
            "conditions": [condition._asdict() for condition in self.conditions],
            "near_miss": None if miss is None else {"direction": miss[0], "condition": miss[1].name},
        }


def _final(condition: Condition) -> bool:
    """Tell whether a condition's current result can never change back: an activation or a
    cancellation stays, and an earlier lifecycle stage is not a condition the user can meet."""
    if condition.name == "earlier lifecycle stage":
        return True
    if condition.name == "activated" and condition.threshold == "never":
        return not condition.passed
    if condition.name in ("not cancelled", "cancelled"):
        return condition.value is not None
    return False


def _any(conditions: list[Condition]) -> Verdict:
    return Verdict(any(condition.passed for condition in conditions), conditions, "any")


@dataclass(slots=True)
class Context:
    """The inputs every rule reads besides the entity: T, the settings and the Power Users threshold."""

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


@dataclass(slots=True)
class Signals:
    """Every condition of the user rules for one user at T, each computed once.

    Membership (`classify`) and explanation (`evaluate_user`) both read these same booleans, so a
    membership and its explanation cannot disagree.
    """

    cancelled: bool
    signed_up: bool
    activated: bool
    # No activity in the retention window: last activity at or before T - 14 days, or none.
    idle_retention: bool
    active_power_window: bool
    power_score: bool
    few_features: bool
    # No activity for the churn window, counted from signup when never active.
    churn_idle: bool
    idle_after_activation: bool
    declining: bool
    low_nps: bool
    churn_signal: bool
    advocate: bool
    new: bool
    established: bool


def signals(user: UserFacts, context: Context) -> Signals:
    """Compute every condition of the user rules for one user."""
    thresholds = context.settings.thresholds
    t = context.t
    day = DAY_MS
    last = user.last_active_at
    signup = user.signup_at
    score = user.usage_score
    threshold = context.power_threshold
    previous = user.previous_active_days
    nps_at = user.nps_at
    nps = user.nps_score

    if last is None:
        churn_idle = signup is not None and signup <= t - thresholds.churn_idle_days * day
    else:
        churn_idle = last <= t - thresholds.churn_idle_days * day
    low_nps = (nps_at is not None and nps_at > t - thresholds.at_risk_nps_window_days * day
               and nps <= thresholds.at_risk_nps_max)
    high_nps = (nps_at is not None and nps_at > t - thresholds.champion_nps_window_days * day
                and nps >= thresholds.champion_nps_min)

    return Signals(
        cancelled=user.cancelled_at is not None,
        signed_up=signup is not None,
        activated=user.activated_at is not None,
        idle_retention=last is None or last <= t - thresholds.retention_idle_days * day,
        active_power_window=last is not None and last > t - thresholds.power_window_days * day,
        power_score=threshold is not None and score >= threshold and score > 0,
        few_features=user.features_30 < thresholds.below_threshold_features,
        churn_idle=churn_idle,
        idle_after_activation=(
            user.activated_at is not None and last is not None
            and t - thresholds.churn_idle_days * day < last <= t - thresholds.at_risk_idle_days * day
        ),
        declining=(previous >= thresholds.decline_min_days
                   and user.recent_active_days < thresholds.decline_ratio * previous),
        low_nps=low_nps,
        churn_signal=user.churn_signals_30 >= 1,
        advocate=high_nps or user.referrals_90 >= thresholds.champion_referrals,
        new=signup is not None and signup > t - thresholds.new_days * day,
        established=(signup is not None
                     and t - thresholds.established_days * day < signup <= t - thresholds.new_days * day),
    )


def _is_power_user(s: Signals) -> bool:
    return s.active_power_window and s.power_score


def _is_engaged(s: Signals, user: UserFacts, context: Context) -> bool:
    return _is_power_user(s) or user.active_days_30 >= context.settings.thresholds.champion_active_days


# Membership of each behavioral user segment, from the signals.
BEHAVIORAL_RULES = {
    seg.NOT_YET_ACTIVATED: lambda s: s.signed_up and not s.activated and not s.cancelled,
    seg.ACTIVATED_NOT_RETAINED: lambda s: s.activated and s.idle_retention and not s.cancelled,
    seg.POWER_USERS: _is_power_user,
    seg.BELOW_THRESHOLD: lambda s: not s.idle_retention and s.few_features,
}


def _stage(s: Signals, user: UserFacts, context: Context) -> str:
    """Return the lifecycle stage: the first of Churned, At-Risk, Champion, New, Established that
    matches, else Unstaged."""
    if s.cancelled or s.churn_idle:
        return seg.CHURNED
    if s.idle_after_activation or s.declining or s.low_nps or s.churn_signal:
        return seg.AT_RISK
    if _is_engaged(s, user, context) and s.advocate:
        return seg.CHAMPION
    if s.new:
        return seg.NEW
    if s.established:
        return seg.ESTABLISHED
    return seg.UNSTAGED


def classify(user: UserFacts, context: Context) -> tuple[str, list[str]]:
    """Return the user's lifecycle stage and the behavioral user segments it is in."""
    s = signals(user, context)
    return _stage(s, user, context), [name for name, rule in BEHAVIORAL_RULES.items() if rule(s)]


def _time(moment: int | None) -> str | None:
    return format_ms(moment) or None


def evaluate_user(user: UserFacts, context: Context) -> tuple[str, dict[str, Verdict]]:
    """Explain every user segment for one user: return the lifecycle stage and, per segment, the
    verdict with each condition's value, threshold and result.

    Membership comes from the same `signals` as `classify`. A lifecycle stage after the one that
    took the user carries a first condition naming that stage.
    """
    s = signals(user, context)
    thresholds = context.settings.thresholds
    t = context.t
    last_days = days_since(t, user.last_active_at)
    not_cancelled = Condition("not cancelled", _time(user.cancelled_at), "no cancellation", not s.cancelled)
    share = f"{thresholds.power_top_share:.0%}"
    window = thresholds.decline_window_days
    nps_low = user.nps_score if user.nps_at is not None and user.nps_at > context.ago(
        thresholds.at_risk_nps_window_days) else None
    nps_high = user.nps_score if user.nps_at is not None and user.nps_at > context.ago(
        thresholds.champion_nps_window_days) else None
    never_active = user.last_active_at is None

    conditions = {
        seg.NOT_YET_ACTIVATED: [
            Condition("signed up", _time(user.signup_at), "has a signup time", s.signed_up),
            Condition("activated", _time(user.activated_at), "never", not s.activated),
            not_cancelled,
        ],
        seg.ACTIVATED_NOT_RETAINED: [
            Condition("activated", _time(user.activated_at), "activated", s.activated),
            Condition("days since last activity", last_days,
                      f">= {thresholds.retention_idle_days} (or never active)", s.idle_retention),
            not_cancelled,
        ],
        seg.POWER_USERS: [
            Condition("days since last activity", last_days, f"< {thresholds.power_window_days}",
                      s.active_power_window),
            Condition("usage score", user.usage_score,
                      f">= {context.power_threshold} (top {share} of {context.active_users} active users) and > 0",
                      s.power_score),
        ],
        seg.BELOW_THRESHOLD: [
            Condition("days since last activity", last_days, f"< {thresholds.retention_idle_days}",
                      not s.idle_retention),
            Condition("core features used in 30 days", user.features_30,
                      f"< {thresholds.below_threshold_features}", s.few_features),
        ],
        seg.CHURNED: [
            Condition("cancelled", _time(user.cancelled_at), "cancellation event or status trait", s.cancelled),
            Condition("days since signup (never active)" if never_active else "days since last activity",
                      days_since(t, user.signup_at) if never_active else last_days,
                      f">= {thresholds.churn_idle_days}", s.churn_idle),
        ],
        seg.AT_RISK: [
            Condition("activated and days since last activity", last_days if s.activated else None,
                      f"in [{thresholds.at_risk_idle_days}, {thresholds.churn_idle_days}) after activation",
                      s.idle_after_activation),
            Condition(f"active days, last {window} vs previous {window}",
                      f"{user.recent_active_days} vs {user.previous_active_days}",
                      f"< {thresholds.decline_ratio:g} x previous, previous >= {thresholds.decline_min_days}",
                      s.declining),
            Condition(f"latest NPS in {thresholds.at_risk_nps_window_days} days", nps_low,
                      f"<= {thresholds.at_risk_nps_max}", s.low_nps),
            Condition(f"churn-signal events in {thresholds.churn_signal_window_days} days",
                      user.churn_signals_30, ">= 1", s.churn_signal),
        ],
        seg.CHAMPION: [
            Condition("Power User or active days in 30",
                      f"{'Power User, ' if _is_power_user(s) else ''}{user.active_days_30} active days",
                      f"Power User or >= {thresholds.champion_active_days}", _is_engaged(s, user, context)),
            Condition(f"NPS in {thresholds.champion_nps_window_days} days or referrals in "
                      f"{thresholds.referral_window_days}",
                      f"NPS {_format_score(nps_high)}, {user.referrals_90} referrals",
                      f"NPS >= {thresholds.champion_nps_min} or >= {thresholds.champion_referrals} referrals",
                      s.advocate),
        ],
        seg.NEW: [
            Condition("days since signup", days_since(t, user.signup_at), f"< {thresholds.new_days}", s.new),
        ],
        seg.ESTABLISHED: [
            Condition("days since signup", days_since(t, user.signup_at),
                      f"in [{thresholds.new_days}, {thresholds.established_days})", s.established),
        ],
    }
    verdicts: dict[str, Verdict] = {
        name: Verdict(rule(s), conditions[name], "all") for name, rule in BEHAVIORAL_RULES.items()
    }
    stage = _stage(s, user, context)
    for definition in seg.LIFECYCLE[:-1]:
        name = definition.name
        combine = "any" if name in (seg.CHURNED, seg.AT_RISK) else "all"
        earlier = _earlier_stage(name, stage)
        if earlier is not None:
            verdicts[name] = Verdict(False, [Condition("earlier lifecycle stage", earlier, "none", False),
                                            *conditions[name]], combine)
        else:
            verdicts[name] = Verdict(name == stage, conditions[name], combine)
    verdicts[seg.UNSTAGED] = Verdict(
        stage == seg.UNSTAGED,
        [Condition("lifecycle stage", stage if stage != seg.UNSTAGED else "none", "none of the above",
                   stage == seg.UNSTAGED)],
    )
    return stage, verdicts


def _earlier_stage(name: str, stage: str) -> str | None:
    """Return `stage` when it comes before `name` in the lifecycle order, else None."""
    order = [definition.name for definition in seg.LIFECYCLE]
    if stage != seg.UNSTAGED and order.index(stage) < order.index(name):
        return stage
    return None


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
    return evaluate_entities(make_context(users, settings, t), users, accounts)


def evaluate_entities(context: Context, users: dict[str, UserFacts], accounts: dict[str, AccountFacts]) -> Evaluation:
    """Classify the given users and accounts in `context`; members are listed in id order."""
    members: dict[str, list[str]] = {definition.name: [] for definition in seg.ALL_SEGMENTS}
    stages: dict[str, str] = {}
    for user_id in sorted(users):
        stage, behavioral = classify(users[user_id], context)
        stages[user_id] = stage
        members[stage].append(user_id)
        for name in behavioral:
            members[name].append(user_id)
    for account_id in sorted(accounts):
        if expansion_ready(accounts[account_id], context).member:
            members[seg.EXPANSION_READY].append(account_id)
    return Evaluation(t=context.t, users=users, accounts=accounts, stages=stages, members=members,
                      context=context)


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


def lifecycle_flow(
    connection: sqlite3.Connection, settings: Settings, t: int, days: int
) -> dict[tuple[str, str], list[str]]:
    """Return the users per (stage `days` days before `t`, stage at `t`), from two evaluations of
    the cache. Users who did not exist at the earlier time come from the stage "(new)"."""
    before = evaluate(connection, settings, t - days * DAY_MS).stages
    after = evaluate(connection, settings, t).stages
    flow: dict[tuple[str, str], list[str]] = {}
    for user_id, stage in after.items():
        flow.setdefault((before.get(user_id, NOT_YET_SEEN), stage), []).append(user_id)
    return flow


# The "from" stage of users who were not in the cache at the start of a lifecycle flow.
NOT_YET_SEEN = "(new)"
