"""Persistence of an evaluation: facts, memberships, transitions and snapshots."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import sqlite_utils

from store import segments as seg
from store.engine import Evaluation, Verdict, evaluate, evaluate_user, expansion_ready
from store.settings import DAY_MS, Settings
from store.timeparse import now_ms


def refresh(
    db: sqlite_utils.Database, settings: Settings, t: int | None = None, *, stale: bool = False
) -> Evaluation:
    """Evaluate every segment at `t` (default now) and store the result in one transaction.

    Memberships are replaced; each entry and exit becomes a transition with its reason; a snapshot
    of every population is written at `t`, marked stale when `stale` is true.
    """
    t = now_ms() if t is None else t
    started = time.perf_counter()
    started_at = now_ms()
    evaluation = evaluate(db.conn, settings, t)
    record(db, evaluation, stale=stale, started_at=started_at,
           duration_ms=int((time.perf_counter() - started) * 1000))
    return evaluation


def record(
    db: sqlite_utils.Database,
    evaluation: Evaluation,
    *,
    stale: bool = False,
    started_at: int | None = None,
    duration_ms: int = 0,
) -> None:
    """Store an evaluation's facts, memberships, transitions and snapshot in one transaction."""
    connection = db.conn
    t = evaluation.t
    connection.execute("BEGIN IMMEDIATE")
    try:
        # The first evaluation of a cache records no transitions: nobody entered, they were found.
        first = connection.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 0
        previous: dict[str, dict[str, int]] = {}
        for segment, entity_id, since in connection.execute("SELECT segment, entity_id, since FROM memberships"):
            previous.setdefault(segment, {})[entity_id] = since

        rows = []
        transitions = []
        for definition in seg.ALL_SEGMENTS:
            before = previous.get(definition.name, {})
            now_members = evaluation.members.get(definition.name, [])
            current = set(now_members)
            for entity_id in now_members:
                rows.append((definition.name, entity_id, before.get(entity_id, t)))
                if entity_id not in before and not first:
                    verdict = _verdict(evaluation, definition.name, entity_id)
                    transitions.append((definition.name, entity_id, 1, t, _reason(verdict, entered=True)))
            for entity_id in before.keys() - current:
                verdict = _verdict(evaluation, definition.name, entity_id)
                transitions.append((definition.name, entity_id, 0, t, _reason(verdict, entered=False)))

        if first:
            transitions = []
        connection.execute("DELETE FROM memberships")
        connection.executemany("INSERT INTO memberships (segment, entity_id, since) VALUES (?, ?, ?)", rows)
        connection.executemany(
            "INSERT INTO transitions (segment, entity_id, entered, at, reason) VALUES (?, ?, ?, ?, ?)",
            transitions,
        )
        _store_facts(connection, evaluation)
        connection.executemany(
            "INSERT OR REPLACE INTO snapshots (taken_at, segment, population, stale) VALUES (?, ?, ?, ?)",
            [(t, name, population, int(stale)) for name, population in evaluation.populations().items()],
        )
        max_seq = connection.execute("SELECT COALESCE(MAX(seq), 0) FROM messages").fetchone()[0]
        connection.execute(
            "INSERT INTO evaluations (evaluated_at, started_at, duration_ms, users, accounts, max_seq)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (t, started_at or now_ms(), duration_ms, len(evaluation.users), len(evaluation.accounts), max_seq),
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def backfill(
    db: sqlite_utils.Database,
    settings: Settings,
    days: int,
    now: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write a snapshot of every population at the end of each of the last `days` UTC days before
    `now`, evaluated from the cached messages, so that trends are meaningful at once.

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
    pending = [end for end in ends if end // DAY_MS not in covered]
    for done, end in enumerate(pending, 1):
        populations = evaluate(db.conn, settings, end).populations()
        db.conn.execute("BEGIN IMMEDIATE")
        db.conn.executemany(
            "INSERT OR REPLACE INTO snapshots (taken_at, segment, population, stale) VALUES (?, ?, ?, 0)",
            [(end, name, population) for name, population in populations.items()],
        )
        db.conn.execute("COMMIT")
        if progress is not None:
            progress(done, len(pending))
    return len(pending)


def _verdict(evaluation: Evaluation, segment: str, entity_id: str) -> Verdict | None:
    context = evaluation.context
    if segment == seg.EXPANSION_READY:
        account = evaluation.accounts.get(entity_id)
        return expansion_ready(account, context) if account is not None else None
    user = evaluation.users.get(entity_id)
    if user is None:
        return None
    return evaluate_user(user, context)[1][segment]


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
    connection.execute("DELETE FROM user_facts")
    connection.executemany(
        "INSERT INTO user_facts (user_id, email, name, account_id, lifecycle, signup_at, activated_at,"
        " last_active_at, active_days_30, features_30, usage_score, cancelled_at, nps)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                user.user_id, user.email, user.name, user.account_id, evaluation.stages[user.user_id],
                user.signup_at, user.activated_at, user.last_active_at, user.active_days_30,
                user.features_30, user.usage_score, user.cancelled_at,
                None if user.nps_score is None else int(user.nps_score),
            )
            for user in evaluation.users.values()
        ],
    )
    connection.execute("DELETE FROM account_facts")
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
