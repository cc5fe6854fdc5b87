"""Persistence of an evaluation: facts, memberships, transitions and snapshots."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import sqlite_utils

from store import segments as seg
from store.db import write_transaction
from store.engine import (
    Context,
    Evaluation,
    Verdict,
    classify,
    due_at,
    evaluate,
    evaluate_entities,
    evaluate_user,
    expansion_ready,
    top_share_threshold,
)
from store.facts import AccountFacts, UserFacts, load_account_facts, load_user_facts
from store.settings import DAY_MS, Settings
from store.timeparse import now_ms


def refresh(
    db: sqlite_utils.Database, settings: Settings, t: int | None = None, *, stale: bool = False
) -> Evaluation:
    """Evaluate every segment over the whole cache at `t` (default now) and store the result in
    one transaction.

    Memberships are replaced, and each entry and exit becomes a transition with its reason. A
    snapshot of every population is written at `t`, marked stale when `stale` is true.
    """
    t = now_ms() if t is None else t
    started = time.perf_counter()
    started_at = now_ms()
    covered_seq = _max_seq(db.conn)
    evaluation = evaluate(db.conn, settings, t)
    _store(db, evaluation, None, covered_seq, stale=stale, started_at=started_at, started=started)
    return evaluation


def refresh_incremental(
    db: sqlite_utils.Database, settings: Settings, t: int | None = None, *, stale: bool = False
) -> Evaluation:
    """Re-evaluate only what can have changed since the last stored evaluation, and store it.

    The pass re-evaluates the users that new messages touched and the users whose due time has
    come (an event leaving a window, an idle or age threshold passing). It adds the users with a
    message that became visible since the last evaluation, and the users whose Power Users
    membership the new threshold can flip.
    Accounts: those that new messages touched and those of the re-evaluated users. The result
    equals a full `refresh` at `t`. Falls back to a full refresh when there is no earlier
    evaluation or `t` is before it. Returns the partial evaluation (only re-evaluated entities).
    """
    t = now_ms() if t is None else t
    started = time.perf_counter()
    started_at = now_ms()
    connection = db.conn
    last = connection.execute(
        "SELECT evaluated_at, power_threshold FROM evaluations ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if last is None or t < last[0]:
        return refresh(db, settings, t, stale=stale)
    previous_t, previous_threshold = last

    covered_seq = _max_seq(connection)
    dirty_accounts = _dirty_accounts(connection)
    candidates = _changed_users(connection, previous_t, t)
    users = load_user_facts(connection, settings, t, sorted(candidates))
    context = _incremental_context(connection, settings, t, users)
    if context.power_threshold != previous_threshold:
        crossing = _threshold_crossers(connection, settings, t, previous_threshold, context.power_threshold)
        extra = sorted(crossing - users.keys())
        users.update(load_user_facts(connection, settings, t, extra))
        candidates |= crossing

    account_ids = dirty_accounts | _accounts_of(connection, users, previous_t, t)
    accounts = _load_accounts(connection, settings, t, users, account_ids)
    evaluation = evaluate_entities(context, users, accounts)
    _store(db, evaluation, (candidates, account_ids), covered_seq, stale=stale, started_at=started_at,
           started=started)
    return evaluation


def _max_seq(connection) -> int:
    return connection.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]


def _changed_users(connection, previous_t: int, t: int) -> set[str]:
    changed = {row[0] for row in connection.execute("SELECT user_id FROM dirty_users")}
    changed.update(row[0] for row in connection.execute("SELECT user_id FROM user_facts WHERE due_at <= ?", (t,)))
    changed.update(row[0] for row in connection.execute(
        "SELECT DISTINCT user_key FROM messages WHERE event_time > ? AND event_time <= ? AND user_key IS NOT NULL",
        (previous_t, t),
    ))
    changed.update(row[0] for row in connection.execute(
        "SELECT DISTINCT user_key FROM messages WHERE linked_at > ? AND linked_at <= ?", (previous_t, t)
    ))
    return changed


def _incremental_context(connection, settings: Settings, t: int, users: dict[str, UserFacts]) -> Context:
    """Build the context at `t` with the Power Users threshold over every active user: the fresh
    facts of `users` and the stored facts of the others, which cannot have changed."""
    since = t - settings.thresholds.power_window_days * DAY_MS
    scores = [
        score
        for user_id, score in connection.execute(
            "SELECT user_id, usage_score FROM user_facts WHERE last_active_at > ?", (since,)
        )
        if user_id not in users
    ]
    scores += [user.usage_score for user in users.values() if user.last_active_at is not None and user.last_active_at > since]
    threshold, active = top_share_threshold(scores, settings)
    return Context(t=t, settings=settings, power_threshold=threshold, active_users=active)


def _threshold_crossers(connection, settings: Settings, t: int, old: int | None, new: int | None) -> set[str]:
    """Return the active users whose Power Users membership a threshold change can flip."""
    since = t - settings.thresholds.power_window_days * DAY_MS
    bounds = [value for value in (old, new) if value is not None]
    low = min(bounds)
    high = max(bounds) if len(bounds) == 2 else None
    query = "SELECT user_id FROM user_facts WHERE last_active_at > ? AND usage_score >= ?"
    parameters: tuple = (since, low)
    if high is not None:
        query += " AND usage_score <= ?"
        parameters += (high,)
    return {row[0] for row in connection.execute(query, parameters)}


def _dirty_accounts(connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT account_id FROM dirty_accounts")}


def _accounts_of(connection, users: dict[str, UserFacts], previous_t: int, t: int) -> set[str]:
    """Return the accounts linked to `users` and those with a message that became visible in
    (previous_t, t]."""
    account_ids = {row[0] for row in connection.execute(
        "SELECT DISTINCT group_id FROM messages INDEXED BY messages_time"
        " WHERE event_time > ? AND event_time <= ? AND group_id IS NOT NULL",
        (previous_t, t),
    )}
    if users:
        account_ids.update(row[0] for row in connection.execute(
            "SELECT DISTINCT group_id FROM messages WHERE group_id IS NOT NULL"
            " AND user_key IN (SELECT value FROM json_each(?))",
            (orjson.dumps(list(users)).decode(),),
        ))
    return account_ids


def _load_accounts(connection, settings: Settings, t: int, users: dict[str, UserFacts],
                   account_ids: set[str]) -> dict[str, AccountFacts]:
    """Load the facts of `account_ids`; teams of linked users not in `users` come from their
    stored facts, which cannot have changed."""
    if not account_ids:
        return {}
    linked = {
        row[0] for row in connection.execute(
            "SELECT DISTINCT user_key FROM messages WHERE user_key IS NOT NULL"
            " AND group_id IN (SELECT value FROM json_each(?))",
            (orjson.dumps(sorted(account_ids)).decode(),),
        )
    } - users.keys()
    teams: dict[str, UserFacts] = dict(users)
    for user_id, team in connection.execute(
        "SELECT user_id, team FROM user_facts WHERE user_id IN (SELECT value FROM json_each(?))",
        (orjson.dumps(sorted(linked)).decode(),),
    ):
        teams[user_id] = UserFacts(user_id=user_id, first_seen_at=0, team=team)
    return load_account_facts(connection, settings, t, teams, sorted(account_ids))


def _store(
    db: sqlite_utils.Database,
    evaluation: Evaluation,
    scope: tuple[set[str], set[str]] | None,
    covered_seq: int,
    *,
    stale: bool,
    started_at: int,
    started: float,
) -> None:
    """Store an evaluation in one transaction. `scope` is None for a full evaluation, else the
    (user ids, account ids) it re-evaluated: only their rows change. `covered_seq` is the last
    message seq that existed when the evaluation started: entities that later messages touched
    stay dirty for the next pass."""
    connection = db.conn
    t = evaluation.t
    with write_transaction(connection):
        # The first evaluation of a cache records no transitions, because its members were found,
        # not seen entering.
        first = connection.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 0
        previous = _previous_memberships(connection, scope)
        rows, transitions = _diff(evaluation, previous, scope, first)
        if scope is None:
            connection.execute("DELETE FROM memberships")
            connection.execute("DELETE FROM user_facts")
            connection.execute("DELETE FROM account_facts")
            # Building the secondary indexes once after a bulk insert is several times faster
            # than maintaining them row by row; the transaction makes the swap invisible.
            dropped = _drop_indexes(connection, ("memberships", "user_facts"))
        else:
            users, accounts = scope
            _delete_entities(connection, users, accounts)
            dropped = []
        connection.executemany("INSERT INTO memberships (segment, entity_id, since) VALUES (?, ?, ?)", rows)
        connection.executemany(
            "INSERT INTO transitions (segment, entity_id, entered, at, reason) VALUES (?, ?, ?, ?, ?)",
            transitions,
        )
        _store_facts(connection, evaluation)
        for statement in dropped:
            connection.execute(statement)
        _clear_dirty(connection, scope, covered_seq)
        populations = _populations(connection, scope, previous, evaluation)
        connection.executemany(
            "INSERT OR REPLACE INTO snapshots (taken_at, segment, population, stale) VALUES (?, ?, ?, ?)",
            [(t, definition.name, populations.get(definition.name, 0), int(stale))
             for definition in seg.ALL_SEGMENTS],
        )
        connection.execute(
            "INSERT INTO evaluations (evaluated_at, started_at, duration_ms, users, accounts, max_seq,"
            " power_threshold, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (t, started_at, int((time.perf_counter() - started) * 1000), len(evaluation.users),
             len(evaluation.accounts), covered_seq, evaluation.context.power_threshold,
             "full" if scope is None else "incremental"),
        )


def _populations(connection, scope, previous: dict[str, dict[str, int]], evaluation: Evaluation) -> dict[str, int]:
    """Return every segment's population after this evaluation's memberships were written.

    An incremental pass adds its changes to the populations of the last evaluation's snapshot
    instead of counting millions of membership rows again.
    """
    last = None
    if scope is not None:
        last = connection.execute(
            "SELECT evaluated_at FROM evaluations ORDER BY id DESC LIMIT 1"
        ).fetchone()
    if last is None:
        return dict(connection.execute("SELECT segment, COUNT(*) FROM memberships GROUP BY segment"))
    populations = dict(connection.execute(
        "SELECT segment, population FROM snapshots WHERE taken_at = ?", (last[0],)
    ))
    for definition in seg.ALL_SEGMENTS:
        name = definition.name
        change = len(evaluation.members.get(name, ())) - len(previous.get(name, {}))
        populations[name] = populations.get(name, 0) + change
    return populations


def _drop_indexes(connection, tables: tuple[str, ...]) -> list[str]:
    """Drop the secondary indexes of `tables` and return the statements that recreate them."""
    statements = []
    for table in tables:
        for name, sql in connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (table,),
        ).fetchall():
            connection.execute(f'DROP INDEX "{name}"')
            statements.append(sql)
    return statements


def _previous_memberships(connection, scope) -> dict[str, dict[str, int]]:
    previous: dict[str, dict[str, int]] = {}
    if scope is None:
        rows = connection.execute("SELECT segment, entity_id, since FROM memberships")
    else:
        users, accounts = scope
        rows = connection.execute(
            "SELECT segment, entity_id, since FROM memberships WHERE"
            " (segment != :account_segment AND entity_id IN (SELECT value FROM json_each(:users)))"
            " OR (segment = :account_segment AND entity_id IN (SELECT value FROM json_each(:accounts)))",
            {"account_segment": seg.EXPANSION_READY, "users": orjson.dumps(sorted(users)).decode(),
             "accounts": orjson.dumps(sorted(accounts)).decode()},
        )
    for segment, entity_id, since in rows:
        previous.setdefault(segment, {})[entity_id] = since
    return previous


def _diff(evaluation: Evaluation, previous: dict[str, dict[str, int]], scope, first: bool):
    rows = []
    transitions = []
    t = evaluation.t
    explained: dict[str, dict[str, Verdict]] = {}

    def verdict_of(segment: str, entity_id: str) -> Verdict | None:
        if segment == seg.EXPANSION_READY:
            account = evaluation.accounts.get(entity_id)
            return expansion_ready(account, evaluation.context) if account is not None else None
        user = evaluation.users.get(entity_id)
        if user is None:
            return None
        if entity_id not in explained:
            explained[entity_id] = evaluate_user(user, evaluation.context)[1]
        return explained[entity_id][segment]

    for definition in seg.ALL_SEGMENTS:
        before = previous.get(definition.name, {})
        now_members = evaluation.members.get(definition.name, [])
        for entity_id in now_members:
            rows.append((definition.name, entity_id, before.get(entity_id, t)))
            if entity_id not in before and not first:
                verdict = verdict_of(definition.name, entity_id)
                transitions.append((definition.name, entity_id, 1, t, _reason(verdict, entered=True)))
        for entity_id in before.keys() - set(now_members):
            verdict = verdict_of(definition.name, entity_id)
            transitions.append((definition.name, entity_id, 0, t, _reason(verdict, entered=False)))
    return rows, transitions


def _delete_entities(connection, users: set[str], accounts: set[str]) -> None:
    user_list = orjson.dumps(sorted(users)).decode()
    account_list = orjson.dumps(sorted(accounts)).decode()
    connection.execute(
        "DELETE FROM memberships WHERE segment != ? AND entity_id IN (SELECT value FROM json_each(?))",
        (seg.EXPANSION_READY, user_list),
    )
    connection.execute(
        "DELETE FROM memberships WHERE segment = ? AND entity_id IN (SELECT value FROM json_each(?))",
        (seg.EXPANSION_READY, account_list),
    )
    connection.execute("DELETE FROM user_facts WHERE user_id IN (SELECT value FROM json_each(?))", (user_list,))
    connection.execute("DELETE FROM account_facts WHERE account_id IN (SELECT value FROM json_each(?))",
                       (account_list,))


def _clear_dirty(connection, scope, covered_seq: int) -> None:
    """Mark the evaluated entities clean, except those touched by messages stored after the
    evaluation started (another process may ingest meanwhile)."""
    late = " AND {column} NOT IN (SELECT {source} FROM messages WHERE seq > :seq AND {source} IS NOT NULL)"
    users_late = late.format(column="user_id", source="user_key")
    accounts_late = late.format(column="account_id", source="group_id")
    if scope is None:
        connection.execute(f"DELETE FROM dirty_users WHERE 1 {users_late}", {"seq": covered_seq})
        connection.execute(f"DELETE FROM dirty_accounts WHERE 1 {accounts_late}", {"seq": covered_seq})
        return
    users, accounts = scope
    connection.execute(
        f"DELETE FROM dirty_users WHERE user_id IN (SELECT value FROM json_each(:ids)) {users_late}",
        {"ids": orjson.dumps(sorted(users)).decode(), "seq": covered_seq},
    )
    connection.execute(
        f"DELETE FROM dirty_accounts WHERE account_id IN (SELECT value FROM json_each(:ids)) {accounts_late}",
        {"ids": orjson.dumps(sorted(accounts)).decode(), "seq": covered_seq},
    )


def backfill(
    db: sqlite_utils.Database,
    settings: Settings,
    days: int,
    now: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write a snapshot of every population at the end of each of the last `days` UTC days before
    `now`, newest first, evaluated from the cached messages, so that trends are meaningful at once.

    Only snapshots are written: memberships and transitions keep following real syncs. Days that
    already have a snapshot that is not stale are skipped. `progress(done, total)` follows each
    day. Returns the number of days evaluated.
    """
    now = now_ms() if now is None else now
    today = now - now % DAY_MS
    ends = [today - (offset - 1) * DAY_MS - 1 for offset in range(days, 0, -1)]
    covered = {
        day for (day,) in db.conn.execute(
            "SELECT DISTINCT taken_at / ? FROM snapshots WHERE stale = 0", (DAY_MS,)
        )
    }
    # Newest first, so that the changes over 24 hours and 7 days are right after the first days.
    pending = [end for end in reversed(ends) if end // DAY_MS not in covered]
    for done, end in enumerate(pending, 1):
        populations = evaluate(db.conn, settings, end).populations()
        with write_transaction(db.conn):
            db.conn.executemany(
                "INSERT OR REPLACE INTO snapshots (taken_at, segment, population, stale) VALUES (?, ?, ?, 0)",
                [(end, name, population) for name, population in populations.items()],
            )
        if progress is not None:
            progress(done, len(pending))
    return len(pending)


def _reason(verdict: Verdict | None, *, entered: bool) -> str:
    """Describe a transition by the conditions that decided it."""
    if verdict is None:
        return "no longer in the cache at this time"
    if entered:
        chosen = [condition for condition in verdict.conditions if condition.passed]
    elif verdict.combine == "all":
        chosen = [condition for condition in verdict.conditions if not condition.passed]
    else:
        chosen = verdict.conditions
    return "; ".join(f"{condition.name}: {_show(condition.value)} ({condition.threshold})" for condition in chosen)


def _show(value: object) -> str:
    if value is None:
        return "none"
    return str(value)


def _store_facts(connection, evaluation: Evaluation) -> None:
    """Insert the facts of the evaluated users and accounts (their old rows are already gone)."""
    context = evaluation.context
    connection.executemany(
        "INSERT INTO user_facts (user_id, email, name, account_id, lifecycle, signup_at, activated_at,"
        " last_active_at, active_days_30, features_30, usage_score, cancelled_at, nps, team, due_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                user.user_id, user.email, user.name, user.account_id, evaluation.stages[user.user_id],
                user.signup_at, user.activated_at, user.last_active_at, user.active_days_30,
                user.features_30, user.usage_score, user.cancelled_at,
                None if user.nps_score is None else int(user.nps_score), user.team, due_at(user, context),
            )
            for user in evaluation.users.values()
        ],
    )
    settings: Settings = evaluation.context.settings
    rows = []
    for account in evaluation.accounts.values():
        plan = settings.plans.get(account.plan) if account.plan else None
        limits = dict(plan.limits) if plan else {}
        seat_limit = account.seats_trait if account.seats_trait is not None else limits.get("seats")
        usage = {
            name: {"used": account.traits.get(f"{name}_used"), "limit": limit}
            for name, limit in limits.items()
            if name != "seats"
        }
        rows.append((account.account_id, account.name, account.plan, len(account.users), seat_limit,
                     len(account.teams), orjson.dumps(usage).decode()))
    connection.executemany(
        "INSERT INTO account_facts (account_id, name, plan, seats_used, seat_limit, teams, usage)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
