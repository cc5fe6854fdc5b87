"""Per-user and per-account facts derived from the cached messages at an evaluation time T.

Every query ignores messages after T, and anonymous messages whose link to a userId happened after
T, so that evaluating at a past T replays history. All times are epoch ms, UTC.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import orjson

from store.settings import DAY_MS, Settings
from store.timeparse import TimeParseError, parse_time_ms

# The rows an evaluation at :t may read.
_VISIBLE = "event_time <= :t AND (linked_at IS NULL OR linked_at <= :t)"
_VISIBLE_JOINED = "m.event_time <= :t AND (m.linked_at IS NULL OR m.linked_at <= :t)"


@dataclass(slots=True)
class UserFacts:
    """The facts the segment rules read about one user at T."""

    user_id: str
    first_seen_at: int
    signup_at: int | None = None
    signup_source: str = "first message"
    activated_at: int | None = None
    last_active_at: int | None = None
    active_days_30: int = 0
    features_30: int = 0
    # Active days in the recent and the previous decline windows, (T-14d, T] and (T-28d, T-14d].
    recent_active_days: int = 0
    previous_active_days: int = 0
    referrals_90: int = 0
    churn_signals_30: int = 0
    cancelled_at: int | None = None
    nps_score: float | None = None
    nps_at: int | None = None
    email: str | None = None
    name: str | None = None
    team: str | None = None
    account_id: str | None = None
    # The earliest event inside each window: its exit from the window is the next change of a
    # windowed count. Then the first message after T, a future-dated event or link.
    first_active_in_window: int | None = None
    first_recent_active: int | None = None
    first_previous_active: int | None = None
    first_feature_in_window: int | None = None
    first_referral_in_window: int | None = None
    first_signal_in_window: int | None = None
    next_message_at: int | None = None

    @property
    def usage_score(self) -> int:
        """Active days in the last 30 days times distinct core features used in them."""
        return self.active_days_30 * self.features_30


@dataclass(slots=True)
class AccountFacts:
    """The facts the Account Expansion Ready rule reads about one account at T."""

    account_id: str
    name: str | None = None
    plan: str | None = None
    seats_trait: float | None = None
    users: list[str] = field(default_factory=list)
    teams: set[str] = field(default_factory=set)
    # Account traits by key, for metered usage (`<limit>_used`).
    traits: dict[str, object] = field(default_factory=dict)


def _names(events: tuple[str, ...]) -> str:
    """Render event names as an SQL list literal. Names come from the configuration, not from
    messages, and quotes are doubled, so the literal is safe."""
    if not events:
        return "(NULL)"
    return "(" + ", ".join("'" + name.replace("'", "''") + "'" for name in events) + ")"


def load_user_facts(
    connection: sqlite3.Connection, settings: Settings, t: int, user_ids: list[str] | None = None
) -> dict[str, UserFacts]:
    """Return the facts of every user visible at `t`, or only of `user_ids` when given."""
    taxonomy = settings.taxonomy
    thresholds = settings.thresholds
    scope, parameters = _user_scope(user_ids)
    parameters.update(
        t=t,
        t_active=t - thresholds.power_window_days * DAY_MS,
        t_features=t - thresholds.feature_window_days * DAY_MS,
        t_recent=t - thresholds.decline_window_days * DAY_MS,
        t_previous=t - 2 * thresholds.decline_window_days * DAY_MS,
        t_referrals=t - thresholds.referral_window_days * DAY_MS,
        t_signals=t - thresholds.churn_signal_window_days * DAY_MS,
    )
    activity = (
        f"(type IN ('page', 'screen') OR (type = 'track' AND event NOT IN {_names(taxonomy.non_activity_events())}))"
    )
    day = f"event_time / {DAY_MS}"
    track = "type = 'track' AND event IN "
    rows = connection.execute(
        f"""
        SELECT user_key,
            MIN(event_time),
            MIN(CASE WHEN {track}{_names(taxonomy.signup_events)} THEN event_time END),
            MIN(CASE WHEN {track}{_names(taxonomy.activation_events)} THEN event_time END),
            MAX(CASE WHEN {activity} THEN event_time END),
            COUNT(DISTINCT CASE WHEN {activity} AND event_time > :t_active THEN {day} END),
            COUNT(DISTINCT CASE WHEN {track}{_names(taxonomy.core_feature_events)}
                AND event_time > :t_features THEN event END),
            COUNT(DISTINCT CASE WHEN {activity} AND event_time > :t_recent THEN {day} END),
            COUNT(DISTINCT CASE WHEN {activity} AND event_time > :t_previous
                AND event_time <= :t_recent THEN {day} END),
            SUM(CASE WHEN {track}{_names(taxonomy.referral_events)} AND event_time > :t_referrals
                THEN 1 ELSE 0 END),
            SUM(CASE WHEN {track}{_names(taxonomy.churn_signal_events)} AND event_time > :t_signals
                THEN 1 ELSE 0 END),
            MIN(CASE WHEN {track}{_names(taxonomy.cancellation_events)} THEN event_time END),
            MIN(CASE WHEN {activity} AND event_time > :t_active THEN event_time END),
            MIN(CASE WHEN {activity} AND event_time > :t_recent THEN event_time END),
            MIN(CASE WHEN {activity} AND event_time > :t_previous THEN event_time END),
            MIN(CASE WHEN {track}{_names(taxonomy.core_feature_events)}
                AND event_time > :t_features THEN event_time END),
            MIN(CASE WHEN {track}{_names(taxonomy.referral_events)} AND event_time > :t_referrals
                THEN event_time END),
            MIN(CASE WHEN {track}{_names(taxonomy.churn_signal_events)} AND event_time > :t_signals
                THEN event_time END)
        FROM messages
        WHERE user_key IS NOT NULL AND {_VISIBLE} {scope}
        GROUP BY user_key
        """,
        parameters,
    ).fetchall()

    users: dict[str, UserFacts] = {}
    for row in rows:
        facts = UserFacts(
            user_id=row[0],
            first_seen_at=row[1],
            signup_at=row[2],
            activated_at=row[3],
            last_active_at=row[4],
            active_days_30=row[5],
            features_30=row[6],
            recent_active_days=row[7],
            previous_active_days=row[8],
            referrals_90=row[9] or 0,
            churn_signals_30=row[10] or 0,
            cancelled_at=row[11],
            first_active_in_window=row[12],
            first_recent_active=row[13],
            first_previous_active=row[14],
            first_feature_in_window=row[15],
            first_referral_in_window=row[16],
            first_signal_in_window=row[17],
        )
        if facts.signup_at is not None:
            facts.signup_source = "event"
        users[facts.user_id] = facts

    _apply_user_traits(connection, settings, users, scope, parameters)
    _apply_nps(connection, settings, users, scope, parameters)
    _apply_team_ids(connection, users, scope, parameters)
    _apply_accounts(connection, users, scope, parameters)
    _apply_next_messages(connection, users, scope, parameters)
    for facts in users.values():
        if facts.signup_at is None:
            facts.signup_at = facts.first_seen_at
    return users


def _user_scope(user_ids: list[str] | None) -> tuple[str, dict]:
    if user_ids is None:
        return "", {}
    return "AND user_key IN (SELECT value FROM json_each(:users))", {
        "users": orjson.dumps(list(user_ids)).decode()
    }


def _apply_user_traits(
    connection: sqlite3.Connection, settings: Settings, users: dict[str, UserFacts], scope: str, parameters: dict
) -> None:
    taxonomy = settings.taxonomy
    wanted = set(taxonomy.signup_traits) | {taxonomy.cancellation_trait, taxonomy.team_trait, "email", "name"}
    # The latest value of each trait at T: the update with the greatest event time, then seq.
    latest: dict[str, dict[str, tuple[object, int]]] = {}
    rows = connection.execute(
        f"""
        SELECT user_key, key, value, event_time FROM (
            SELECT m.user_key, t.key, t.value, m.event_time, ROW_NUMBER() OVER (
                PARTITION BY m.user_key, t.key ORDER BY m.event_time DESC, m.seq DESC) AS position
            FROM trait_updates AS t JOIN messages AS m ON m.seq = t.seq
            WHERE t.scope = 'user' AND m.user_key IS NOT NULL AND {_VISIBLE_JOINED}
                {scope.replace('user_key', 'm.user_key')}
                AND t.key IN (SELECT value FROM json_each(:keys))
        ) WHERE position = 1
        """,
        {**parameters, "keys": orjson.dumps(sorted(wanted)).decode()},
    )
    for user_id, key, value, at in rows:
        latest.setdefault(user_id, {})[key] = (orjson.loads(value), at)

    for user_id, traits in latest.items():
        facts = users.get(user_id)
        if facts is None:
            continue
        facts.email = _text(traits.get("email", (None, 0))[0])
        facts.name = _text(traits.get("name", (None, 0))[0])
        facts.team = _text(traits.get(taxonomy.team_trait, (None, 0))[0])
        status = traits.get(taxonomy.cancellation_trait)
        if status is not None and _text(status[0]) is not None:
            if _text(status[0]).strip().lower() == taxonomy.cancellation_trait_value.lower():
                facts.cancelled_at = min(facts.cancelled_at or status[1], status[1])
        if facts.signup_at is None:
            for key in taxonomy.signup_traits:
                if key not in traits:
                    continue
                try:
                    facts.signup_at = parse_time_ms(traits[key][0])
                except TimeParseError:
                    continue
                facts.signup_source = f"trait {key}"
                break


def _apply_nps(
    connection: sqlite3.Connection, settings: Settings, users: dict[str, UserFacts], scope: str, parameters: dict
) -> None:
    taxonomy = settings.taxonomy
    path = '$.properties."' + taxonomy.nps_score_property.replace('"', '') + '"'
    # A few users are read through their own index entries; the whole cache through the event index.
    rows = connection.execute(
        f"""
        SELECT user_key, event_time, json_extract(payload, :path)
        FROM messages {"INDEXED BY messages_user_time" if scope else ""}
        WHERE type = 'track' AND event IN {_names(taxonomy.nps_events)} AND user_key IS NOT NULL
            AND {_VISIBLE} {scope}
        ORDER BY event_time, seq
        """,
        {**parameters, "path": path},
    )
    for user_id, at, raw_score in rows:
        score = _score(raw_score)
        facts = users.get(user_id)
        if score is not None and facts is not None:
            facts.nps_score, facts.nps_at = score, at


def _latest_per_user(
    connection: sqlite3.Connection, column: str, scope: str, parameters: dict
) -> list[tuple[str, str]]:
    """Return (user, value) for the latest non-null `column` of each user's visible messages."""
    # SQLite takes the bare column from the row holding MAX(event_time) of each group.
    return [
        (user_id, value)
        for user_id, value, _at in connection.execute(
            f"""
            SELECT user_key, {column}, MAX(event_time) FROM messages
            WHERE {column} IS NOT NULL AND user_key IS NOT NULL AND {_VISIBLE} {scope}
            GROUP BY user_key
            """,
            parameters,
        )
    ]


def _apply_team_ids(
    connection: sqlite3.Connection, users: dict[str, UserFacts], scope: str, parameters: dict
) -> None:
    """Set the team of users without a team trait: the latest `team_id` event property."""
    for user_id, team_id in _latest_per_user(connection, "team_id", scope, parameters):
        facts = users.get(user_id)
        if facts is not None and not facts.team:
            facts.team = team_id


def _apply_next_messages(
    connection: sqlite3.Connection, users: dict[str, UserFacts], scope: str, parameters: dict
) -> None:
    """Set the time of each user's first message that T does not see yet: one dated after T, or
    one whose anonymous link happens after T."""
    rows = connection.execute(
        f"""
        SELECT user_key, MIN(CASE WHEN event_time > :t THEN event_time ELSE linked_at END)
        FROM messages
        WHERE user_key IS NOT NULL AND (event_time > :t OR linked_at > :t) {scope}
        GROUP BY user_key
        """,
        parameters,
    )
    for user_id, at in rows:
        facts = users.get(user_id)
        if facts is not None:
            facts.next_message_at = at


def _apply_accounts(
    connection: sqlite3.Connection, users: dict[str, UserFacts], scope: str, parameters: dict
) -> None:
    """Set each user's account: the group of its latest group call or context.groupId."""
    for user_id, group_id in _latest_per_user(connection, "group_id", scope, parameters):
        facts = users.get(user_id)
        if facts is not None:
            facts.account_id = group_id


def load_account_facts(
    connection: sqlite3.Connection,
    settings: Settings,
    t: int,
    users: dict[str, UserFacts],
    account_ids: list[str] | None = None,
) -> dict[str, AccountFacts]:
    """Return the facts of every account visible at `t` (or only `account_ids`).

    `users` must hold the facts of every user linked to those accounts: their teams count.
    """
    taxonomy = settings.taxonomy
    if account_ids is None:
        scope, parameters = "", {"t": t}
    else:
        scope = "AND group_id IN (SELECT value FROM json_each(:accounts))"
        parameters = {"t": t, "accounts": orjson.dumps(list(account_ids)).decode()}

    accounts: dict[str, AccountFacts] = {}
    rows = connection.execute(
        f"SELECT DISTINCT group_id FROM messages WHERE group_id IS NOT NULL AND event_time <= :t {scope}",
        parameters,
    )
    for (group_id,) in rows:
        accounts[group_id] = AccountFacts(group_id)

    rows = connection.execute(
        f"""
        SELECT DISTINCT group_id, user_key FROM messages
        WHERE group_id IS NOT NULL AND user_key IS NOT NULL AND {_VISIBLE} {scope}
        ORDER BY group_id, user_key
        """,
        parameters,
    )
    for group_id, user_id in rows:
        account = accounts[group_id]
        account.users.append(user_id)
        facts = users.get(user_id)
        if facts is not None and facts.team:
            account.teams.add(facts.team)

    rows = connection.execute(
        f"""
        SELECT group_id, key, value FROM (
            SELECT m.group_id, t.key, t.value, ROW_NUMBER() OVER (
                PARTITION BY m.group_id, t.key ORDER BY m.event_time DESC, m.seq DESC) AS position
            FROM trait_updates AS t JOIN messages AS m ON m.seq = t.seq
            WHERE t.scope = 'account' AND m.event_time <= :t {scope.replace('group_id', 'm.group_id')}
        ) WHERE position = 1
        """,
        parameters,
    )
    for group_id, key, value in rows:
        accounts[group_id].traits[key] = orjson.loads(value)

    for account in accounts.values():
        account.name = _text(account.traits.get("name"))
        plan = _text(account.traits.get(taxonomy.plan_trait))
        account.plan = plan.strip().lower() if plan else None
        account.seats_trait = number(account.traits.get(taxonomy.seats_trait))
    return accounts


def number(value: object) -> float | None:
    """Return a trait value as a number: numbers and numeric strings; anything else is None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _score(value: object) -> float | None:
    score = number(value)
    if score is None or not 0 <= score <= 10:
        return None
    return score


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text if text.strip() else None
