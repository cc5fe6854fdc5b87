"""Read-only, bounded queries for the console and the command line.

Every query that lists entities takes a limit; member pages use keyset paging, so no segment is
ever loaded whole. Times are epoch ms, UTC.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import orjson

from store import segments as seg
from store.settings import DAY_MS
from store.timeparse import now_ms

# Sortable member columns: name -> (SQL expression, fallback for NULL so that keyset comparisons work).
USER_SORTS = {
    "id": ("m.entity_id", None),
    "email": ("f.email", "''"),
    "lifecycle": ("f.lifecycle", "''"),
    "last_active_at": ("f.last_active_at", "-1"),
    "usage_score": ("f.usage_score", "-1"),
    "features_30": ("f.features_30", "-1"),
    "signup_at": ("f.signup_at", "-1"),
    "since": ("m.since", "-1"),
}
ACCOUNT_SORTS = {
    "id": ("m.entity_id", None),
    "name": ("a.name", "''"),
    "plan": ("a.plan", "''"),
    "seats_used": ("a.seats_used", "-1"),
    "teams": ("a.teams", "-1"),
    "since": ("m.since", "-1"),
}


@dataclass
class SegmentRow:
    """One segment on the dashboard: population now, changes, and its snapshot history."""

    name: str
    kind: str
    entity: str
    population: int
    previous: int | None
    change_24h: int | None
    change_7d: int | None
    history: list[int]
    stale: bool


@dataclass
class SourceStatus:
    """A source's sync state."""

    name: str
    cursor: str | None
    last_attempt_at: int | None
    last_success_at: int | None
    last_error: str | None
    read: int
    stored: int
    duplicates: int
    quarantined: int


@dataclass
class CacheStatus:
    """The counts and freshness on the dashboard's status line."""

    messages: int
    quarantined: int
    duplicates: int
    latest_received_at: int | None
    latest_event_at: int | None
    evaluated_at: int | None
    sources: list[SourceStatus] = field(default_factory=list)


@dataclass
class MemberPage:
    """One page of a segment's members; `after` continues after the page's last row."""

    columns: list[str]
    rows: list[dict]
    after: tuple | None


def segment_rows(connection: sqlite3.Connection, history_days: int = 30) -> list[SegmentRow]:
    """Return every seed segment with its population from the latest snapshot and its trend.

    `history` has one point per UTC day (the day's last snapshot that is not stale) over the last
    `history_days` days, ending with the latest snapshot.
    """
    latest = connection.execute("SELECT MAX(taken_at) FROM snapshots").fetchone()[0]
    rows = []
    for definition in seg.ALL_SEGMENTS:
        history = connection.execute(
            "SELECT taken_at, population, stale FROM snapshots WHERE segment = ?"
            " ORDER BY taken_at DESC LIMIT 2",
            (definition.name,),
        ).fetchall()[::-1]
        if latest is None or not history:
            population = connection.execute(
                "SELECT COUNT(*) FROM memberships WHERE segment = ?", (definition.name,)
            ).fetchone()[0]
            rows.append(SegmentRow(definition.name, definition.kind, definition.entity, population,
                                   None, None, None, [], False))
            continue
        taken_at, population, stale = history[-1]
        previous = history[-2][1] if len(history) > 1 else None
        rows.append(SegmentRow(
            name=definition.name,
            kind=definition.kind,
            entity=definition.entity,
            population=population,
            previous=previous,
            change_24h=_change_since(connection, definition.name, taken_at, population, DAY_MS),
            change_7d=_change_since(connection, definition.name, taken_at, population, 7 * DAY_MS),
            history=_daily_history(connection, definition.name, taken_at, history_days) + [population],
            stale=bool(stale),
        ))
    return rows


def _daily_history(connection: sqlite3.Connection, segment: str, latest: int, days: int) -> list[int]:
    """Return the last non-stale population of each UTC day before the latest snapshot's day."""
    today = latest // DAY_MS
    # SQLite takes the bare column `population` from the row holding MAX(taken_at) of each group.
    return [
        population
        for _day, population, _taken_at in connection.execute(
            "SELECT taken_at / :day AS day, population, MAX(taken_at) FROM snapshots"
            " WHERE segment = :segment AND stale = 0 AND taken_at >= :since AND taken_at < :today"
            " GROUP BY day ORDER BY day",
            {"day": DAY_MS, "segment": segment, "since": (today - days) * DAY_MS, "today": today * DAY_MS},
        )
    ]


def _change_since(connection: sqlite3.Connection, segment: str, taken_at: int, population: int,
                  span_ms: int) -> int | None:
    row = connection.execute(
        "SELECT population FROM snapshots WHERE segment = ? AND taken_at <= ? AND stale = 0"
        " ORDER BY taken_at DESC LIMIT 1",
        (segment, taken_at - span_ms),
    ).fetchone()
    return None if row is None else population - row[0]


def cache_status(connection: sqlite3.Connection) -> CacheStatus:
    """Return message and quarantine counts, freshness and every source's state."""
    messages, latest_received, latest_event = connection.execute(
        "SELECT COUNT(*), MAX(received_at), MAX(event_time) FROM messages"
    ).fetchone()
    quarantined = connection.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
    duplicates = connection.execute("SELECT COALESCE(SUM(duplicates), 0) FROM sources").fetchone()[0]
    evaluated_at = connection.execute("SELECT MAX(evaluated_at) FROM evaluations").fetchone()[0]
    sources = [
        SourceStatus(*row)
        for row in connection.execute(
            "SELECT name, cursor, last_attempt_at, last_success_at, last_error, read, stored,"
            " duplicates, quarantined FROM sources ORDER BY last_attempt_at DESC"
        )
    ]
    return CacheStatus(messages, quarantined, duplicates, latest_received, latest_event, evaluated_at, sources)


def members_page(
    connection: sqlite3.Connection,
    segment: str,
    *,
    sort: str = "id",
    descending: bool = False,
    after: tuple | None = None,
    limit: int = 100,
    text: str | None = None,
) -> MemberPage:
    """Return one page of a segment's members from the latest stored evaluation.

    Rows are ordered by `sort` then id; `after` is the previous page's `after`. `text` keeps rows
    whose id, email or name (account name for accounts) contains it, ignoring case.
    Raises `KeyError` for an unknown segment or sort column.
    """
    definition = seg.BY_NAME[segment]
    if definition.entity == "account":
        sorts = ACCOUNT_SORTS
        columns = ["id", "name", "plan", "seats_used", "seat_limit", "teams", "since"]
        select = ("m.entity_id AS id, a.name, a.plan, a.seats_used, a.seat_limit, a.teams, m.since")
        join = "LEFT JOIN account_facts AS a ON a.account_id = m.entity_id"
        text_columns = ("m.entity_id", "a.name")
    else:
        sorts = USER_SORTS
        columns = ["id", "email", "name", "lifecycle", "account_id", "last_active_at", "usage_score",
                   "features_30", "signup_at", "since"]
        select = ("m.entity_id AS id, f.email, f.name, f.lifecycle, f.account_id, f.last_active_at,"
                  " f.usage_score, f.features_30, f.signup_at, m.since")
        join = "LEFT JOIN user_facts AS f ON f.user_id = m.entity_id"
        text_columns = ("m.entity_id", "f.email", "f.name")
    column, fallback = sorts[sort]
    key = column if fallback is None else f"COALESCE({column}, {fallback})"
    direction = "DESC" if descending else "ASC"
    comparison = "<" if descending else ">"

    where = ["m.segment = :segment"]
    parameters: dict[str, object] = {"segment": segment, "limit": limit}
    if text:
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        parameters["text"] = f"%{escaped}%"
        where.append("(" + " OR ".join(f"LOWER({name}) LIKE :text ESCAPE '\\'" for name in text_columns) + ")")
    if after is not None:
        parameters["after_key"], parameters["after_id"] = after
        where.append(f"({key}, m.entity_id) {comparison} (:after_key, :after_id)")
    rows = connection.execute(
        f"SELECT {select}, {key} AS sort_key FROM memberships AS m {join}"
        f" WHERE {' AND '.join(where)} ORDER BY {key} {direction}, m.entity_id {direction} LIMIT :limit",
        parameters,
    ).fetchall()
    records = [dict(zip(columns, row[:-1])) for row in rows]
    next_after = (rows[-1][-1], rows[-1][0]) if len(rows) == limit else None
    return MemberPage(columns, records, next_after)


def member_count(connection: sqlite3.Connection, segment: str) -> int:
    """Return the stored population of a segment."""
    return connection.execute("SELECT COUNT(*) FROM memberships WHERE segment = ?", (segment,)).fetchone()[0]


def latest_traits(connection: sqlite3.Connection, scope: str, entity_id: str) -> dict[str, object]:
    """Return an entity's current traits: the latest value of each key, by event time.

    `scope` is "user" or "account".
    """
    column = "user_key" if scope == "user" else "group_id"
    traits: dict[str, object] = {}
    for key, value in connection.execute(
        f"SELECT t.key, t.value FROM trait_updates AS t JOIN messages AS m ON m.seq = t.seq"
        f" WHERE t.scope = ? AND m.{column} = ? ORDER BY m.event_time, m.seq",
        (scope, entity_id),
    ):
        traits[key] = orjson.loads(value)
    return traits


def user_detail(connection: sqlite3.Connection, user_id: str) -> dict | None:
    """Return a user's stored facts, traits and segments, or None when the user is unknown."""
    connection.row_factory = sqlite3.Row
    try:
        facts = connection.execute("SELECT * FROM user_facts WHERE user_id = ?", (user_id,)).fetchone()
    finally:
        connection.row_factory = None
    if facts is None:
        known = connection.execute("SELECT 1 FROM messages WHERE user_key = ? LIMIT 1", (user_id,)).fetchone()
        if known is None:
            return None
    segments = [
        row[0]
        for row in connection.execute(
            "SELECT segment FROM memberships WHERE entity_id = ? ORDER BY segment", (user_id,)
        )
    ]
    return {
        "id": user_id,
        "facts": dict(facts) if facts is not None else None,
        "traits": latest_traits(connection, "user", user_id),
        "segments": [name for name in (d.name for d in seg.ALL_SEGMENTS) if name in segments],
    }


def user_events(connection: sqlite3.Connection, user_id: str, limit: int = 50) -> list[dict]:
    """Return a user's latest messages, newest first, at most `limit`."""
    return [
        {"event_time": event_time, "type": kind, "event": event, "message_id": message_id, "payload": payload}
        for event_time, kind, event, message_id, payload in connection.execute(
            "SELECT event_time, type, event, message_id, payload FROM messages WHERE user_key = ?"
            " ORDER BY event_time DESC, seq DESC LIMIT ?",
            (user_id, limit),
        )
    ]


def user_transitions(connection: sqlite3.Connection, entity_id: str, limit: int = 50) -> list[dict]:
    """Return an entity's latest segment entries and exits, newest first."""
    return [
        {"segment": segment, "entered": bool(entered), "at": at, "reason": reason}
        for segment, entered, at, reason in connection.execute(
            "SELECT segment, entered, at, reason FROM transitions WHERE entity_id = ?"
            " ORDER BY at DESC, id DESC LIMIT ?",
            (entity_id, limit),
        )
    ]


def account_detail(connection: sqlite3.Connection, account_id: str) -> dict | None:
    """Return an account's stored facts, traits and segments, or None when the account is unknown."""
    row = connection.execute(
        "SELECT name, plan, seats_used, seat_limit, teams, usage FROM account_facts WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    if row is None:
        known = connection.execute("SELECT 1 FROM messages WHERE group_id = ? LIMIT 1", (account_id,)).fetchone()
        if known is None:
            return None
    segments = [
        name for (name,) in connection.execute(
            "SELECT segment FROM memberships WHERE entity_id = ? AND segment = ?", (account_id, seg.EXPANSION_READY)
        )
    ]
    facts = None
    if row is not None:
        name, plan, seats_used, seat_limit, teams, usage = row
        facts = {"name": name, "plan": plan, "seats_used": seats_used, "seat_limit": seat_limit,
                 "teams": teams, "usage": orjson.loads(usage)}
    return {"id": account_id, "facts": facts, "traits": latest_traits(connection, "account", account_id),
            "segments": segments}


def account_members(connection: sqlite3.Connection, account_id: str, limit: int = 200) -> list[dict]:
    """Return the users linked to an account, with their stored facts, at most `limit`."""
    return [
        {"id": user_id, "email": email, "name": name, "lifecycle": lifecycle, "team": team,
         "last_active_at": last_active_at}
        for user_id, email, name, lifecycle, last_active_at, team in connection.execute(
            "SELECT u.user_key, f.email, f.name, f.lifecycle, f.last_active_at,"
            " (SELECT json_extract(t.value, '$') FROM trait_updates AS t JOIN messages AS tm ON tm.seq = t.seq"
            "   WHERE tm.user_key = u.user_key AND t.scope = 'user' AND t.key = 'team'"
            "   ORDER BY tm.event_time DESC LIMIT 1)"
            " FROM (SELECT DISTINCT user_key FROM messages WHERE group_id = ? AND user_key IS NOT NULL) AS u"
            " LEFT JOIN user_facts AS f ON f.user_id = u.user_key ORDER BY u.user_key LIMIT ?",
            (account_id, limit),
        )
    ]


def find_entities(connection: sqlite3.Connection, text: str, limit: int = 20) -> list[tuple[str, str, str]]:
    """Return `(kind, id, label)` for users whose id or email starts with `text` and accounts whose
    id or name starts with it, at most `limit` of each."""
    # LIKE wildcards in the text match themselves: ids such as user_0001 are common.
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found: list[tuple[str, str, str]] = []
    for user_id, email in connection.execute(
        "SELECT user_id, email FROM user_facts WHERE user_id LIKE :p ESCAPE '\\' OR email LIKE :p ESCAPE '\\'"
        " ORDER BY user_id LIMIT :limit",
        {"p": pattern, "limit": limit},
    ):
        found.append(("user", user_id, email or ""))
    for account_id, name in connection.execute(
        "SELECT account_id, name FROM account_facts WHERE account_id LIKE :p ESCAPE '\\' OR name LIKE :p ESCAPE '\\'"
        " ORDER BY account_id LIMIT :limit",
        {"p": pattern, "limit": limit},
    ):
        found.append(("account", account_id, name or ""))
    return found


def quarantine_counts(connection: sqlite3.Connection) -> dict[str, int]:
    """Return the number of quarantined messages per reason."""
    return dict(connection.execute("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason"))


def lag_ms(status: CacheStatus, now: int | None = None) -> int | None:
    """Return how long ago the newest message was received, or None for an empty cache."""
    if status.latest_received_at is None:
        return None
    return (now_ms() if now is None else now) - status.latest_received_at


def segment_movers(connection: sqlite3.Connection, segment: str, since: int, limit: int = 100) -> dict:
    """Return who entered and who left a segment at or after `since`: counts and the latest
    `limit` transitions of each direction, newest first."""
    result: dict[str, object] = {}
    for direction, entered in (("entered", 1), ("left", 0)):
        result[f"{direction}_count"] = connection.execute(
            "SELECT COUNT(*) FROM transitions WHERE segment = ? AND entered = ? AND at >= ?",
            (segment, entered, since),
        ).fetchone()[0]
        result[direction] = [
            {"id": entity_id, "at": at, "reason": reason}
            for entity_id, at, reason in connection.execute(
                "SELECT entity_id, at, reason FROM transitions WHERE segment = ? AND entered = ? AND at >= ?"
                " ORDER BY at DESC, id DESC LIMIT ?",
                (segment, entered, since, limit),
            )
        ]
    return result
