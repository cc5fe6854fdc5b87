"""Playbook runs and the action outbox.

A run is planned (who is targeted, held out, excluded) and then written with all its actions in
one transaction, before any network call. The dispatcher (`console.dispatch`) claims due actions,
sends them and records each attempt here. Times are epoch milliseconds, UTC. Nothing here does
network I/O.

Action states (`status`): queued -> sending -> sent, or back to queued for a retry, or failed.
Held-out users get rows with status `held_out` that are never sent. A held-out row may carry a
`notice` with the same queued/sending/sent/failed states: the notice that a demo destination
receives instead, so that the demo CDP can simulate the holdout's baseline.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import sqlite_utils

from store import segments as seg
from store.db import write_transaction
from store.settings import DAY_MS

TARGET_KINDS = ("user", "account", "segment")
ACTION_STATUSES = ("queued", "sending", "sent", "failed", "held_out")
# Statuses that count against a playbook's cooldown. Held-out rows count too, so that a held-out
# user is recorded once per cooldown like a treated user, and both groups keep their first time.
COOLDOWN_STATUSES = ("queued", "sending", "sent", "held_out")
DECISIONS = ("queued", "held_out", "excluded_cooldown", "excluded_rule")
AUTOMATIC_PAUSED_FLAG = "automatic_paused"

_MINUTE_MS = 60_000
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class RunError(ValueError):
    """A run that cannot be planned: an unknown user, account or segment, or a bad target kind."""


class StepLike(Protocol):
    """One step of a playbook, as `console.playbooks.catalog.Step` provides it."""

    channel: str
    destination: str
    content: str
    delay_minutes: int


class PlaybookLike(Protocol):
    """The parts of a playbook that planning reads, as `console.playbooks.catalog.Playbook` has them."""

    id: str
    segment: str
    steps: Sequence[StepLike]
    holdout_share: float
    cooldown_days: int
    exclude_segments: Sequence[str]


@dataclass(frozen=True)
class Target:
    """The recipients of a run: one user, every user of an account, or every member of a segment."""

    kind: str
    id: str

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise RunError(f"invalid target kind {self.kind!r}; expected one of {', '.join(TARGET_KINDS)}")
        if not self.id:
            raise RunError(f"the {self.kind} target needs an id")


@dataclass
class RunCounts:
    """Users of a run by decision: targeted = held_out + excluded_cooldown + excluded_rule + queued."""

    targeted: int = 0
    held_out: int = 0
    excluded_cooldown: int = 0
    excluded_rule: int = 0
    queued: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Recipient:
    """One targeted user and what the run does with them (one of `DECISIONS`)."""

    user_id: str
    email: str | None
    account_id: str | None
    lifecycle: str | None
    decision: str


@dataclass
class RunPlan:
    """The outcome a run would have, computed without writing anything.

    `preview` contains the first `preview_limit` recipients by user id; `decisions` maps every
    targeted user to its decision.
    """

    playbook: str
    segment: str
    target: Target
    planned_at: int
    counts: RunCounts
    preview: list[Recipient]
    warnings: list[str]
    decisions: dict[str, str] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class Run:
    """A recorded run (`runs` row)."""

    id: int
    playbook: str
    segment: str
    operator: str
    target_kind: str
    target_id: str
    created_at: int
    dry_run: bool
    counts: RunCounts

    def as_dict(self) -> dict:
        record = asdict(self)
        record["counts"] = self.counts.as_dict()
        return record


@dataclass(frozen=True)
class Action:
    """One outbox row: one step of a playbook for one user. `segment` comes from its run."""

    id: int
    run_id: int
    playbook: str
    segment: str
    user_id: str
    email: str | None
    account_id: str | None
    step: int
    channel: str
    destination: str
    content: str
    idempotency_key: str
    held_out: bool
    status: str
    notice: str | None
    created_at: int
    due_at: int
    next_attempt_at: int | None
    claimed_at: int | None
    claimed_by: str | None
    attempts: int
    sent_at: int | None
    last_error: str | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Attempt:
    """One request the dispatcher made for an action. `status_code` is None when no response came."""

    id: int
    action_id: int
    at: int
    duration_ms: int
    status_code: int | None
    response_excerpt: str | None
    error: str | None

    def as_dict(self) -> dict:
        return asdict(self)


# --- holdout and keys ----------------------------------------------------------------------------


def holdout_fraction(playbook_id: str, user_id: str) -> float:
    """Return a number in [0, 1) fixed by (playbook, user): the first 8 bytes of the SHA-256 of
    both ids. A user is held out of a playbook when this is below its holdout share, so the same
    user is always in or always out of that playbook's holdout, on every machine and run."""
    digest = hashlib.sha256(f"{playbook_id}\n{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_held_out(playbook_id: str, user_id: str, share: float) -> bool:
    """Return whether the user is in the playbook's holdout at this holdout share (0 to 1)."""
    return holdout_fraction(playbook_id, user_id) < share


def new_idempotency_key(at_ms: int) -> str:
    """Return a new ULID (26 Crockford base32 characters: 48 bits of time in ms, 80 random
    bits). ULIDs are unique, sort by time, and are what Customer.io takes as an event id."""
    value = (at_ms & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


# --- planning ------------------------------------------------------------------------------------


def plan_run(
    db: sqlite_utils.Database,
    playbook: PlaybookLike,
    target: Target,
    *,
    now: int,
    users: Iterable[str] | None = None,
    preview_limit: int = 20,
) -> RunPlan:
    """Compute what triggering `playbook` on `target` at `now` would do, without writing.

    Users come from the latest stored evaluation (`user_facts` and `memberships`), or are the
    given `users`. Each is excluded by rule (a current member of an excluded segment), else
    excluded by cooldown (an action of this playbook in the last `cooldown_days`), else held out,
    else queued. Raises `RunError` when the target's user, account or segment does not exist.
    """
    return _plan(db.conn, playbook, target, now, users, preview_limit)


def _plan(
    connection: sqlite3.Connection,
    playbook: PlaybookLike,
    target: Target,
    now: int,
    users: Iterable[str] | None,
    preview_limit: int,
) -> RunPlan:
    warnings: list[str] = []
    target = _canonical(target)
    if users is None:
        user_ids = _resolve_target(connection, playbook, target, warnings)
    else:
        user_ids = sorted(set(users))
    excluded = _excluded_users(connection, playbook.exclude_segments, user_ids)
    cooling = _cooling_users(connection, playbook, now, user_ids)

    counts = RunCounts(targeted=len(user_ids))
    decisions: dict[str, str] = {}
    for user_id in user_ids:
        if user_id in excluded:
            decision = "excluded_rule"
        elif user_id in cooling:
            decision = "excluded_cooldown"
        elif is_held_out(playbook.id, user_id, playbook.holdout_share):
            decision = "held_out"
        else:
            decision = "queued"
        decisions[user_id] = decision
        setattr(counts, decision, getattr(counts, decision) + 1)

    preview = _recipients(connection, user_ids[:preview_limit], decisions)
    return RunPlan(playbook.id, playbook.segment, target, now, counts, preview, warnings, decisions)


def _canonical(target: Target) -> Target:
    """Spell a segment target as the segment's name ("power-users" becomes "Power Users")."""
    definition = seg.find_segment(target.id) if target.kind == "segment" else None
    return target if definition is None else Target("segment", definition.name)


def _resolve_target(
    connection: sqlite3.Connection, playbook: PlaybookLike, target: Target, warnings: list[str]
) -> list[str]:
    """Return the sorted user ids that a target means. For a playbook of an account segment, an
    account means one contact: its user with the highest usage score."""
    per_account = _entity_of(playbook.segment) == "account"
    if target.kind == "user":
        if connection.execute("SELECT 1 FROM user_facts WHERE user_id = ?", (target.id,)).fetchone() is None:
            raise RunError(f"no user {target.id!r} in the cache; check the id, or run `segops evaluate` "
                           "if the user arrived after the last evaluation")
        return [target.id]

    if target.kind == "account":
        known = connection.execute(
            "SELECT 1 FROM account_facts WHERE account_id = ? UNION ALL "
            "SELECT 1 FROM user_facts WHERE account_id = ? LIMIT 1",
            (target.id, target.id),
        ).fetchone()
        if known is None:
            raise RunError(f"no account {target.id!r} in the cache")
        users = _contacts(connection, [target.id]) if per_account else _account_users(connection, [target.id])
        if not users:
            warnings.append(f"account {target.id} has no users")
        return sorted(users)

    definition = seg.find_segment(target.id)
    if definition is None:
        names = ", ".join(d.name for d in seg.ALL_SEGMENTS)
        raise RunError(f"unknown segment {target.id!r}; segments: {names}")
    if connection.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0] == 0:
        warnings.append("the segments have not been evaluated yet: run `segops evaluate` or a sync first")
    members = [row[0] for row in connection.execute(
        "SELECT entity_id FROM memberships WHERE segment = ?", (definition.name,))]
    if definition.entity == "account":
        members = _contacts(connection, members) if per_account else _account_users(connection, members)
    elif per_account:
        warnings.append(f"{playbook.id} is an account playbook; it is sent to each member of "
                        f"{definition.name} directly")
    if definition.name != playbook.segment:
        warnings.append(f"{definition.name} is not the playbook's segment ({playbook.segment})")
    return sorted(set(members))


def _entity_of(segment_name: str) -> str:
    definition = seg.BY_NAME.get(segment_name)
    return definition.entity if definition else "user"


def _account_users(connection: sqlite3.Connection, account_ids: Sequence[str]) -> list[str]:
    users: list[str] = []
    for chunk in _chunks(account_ids):
        marks = ",".join("?" * len(chunk))
        users += [row[0] for row in connection.execute(
            f"SELECT user_id FROM user_facts WHERE account_id IN ({marks})", chunk)]
    return users


def _contacts(connection: sqlite3.Connection, account_ids: Sequence[str]) -> list[str]:
    """Return each account's user with the highest usage score (ties: the lowest user id)."""
    users: list[str] = []
    for chunk in _chunks(account_ids):
        marks = ",".join("?" * len(chunk))
        users += [row[0] for row in connection.execute(
            "SELECT user_id FROM (SELECT user_id, ROW_NUMBER() OVER ("
            "PARTITION BY account_id ORDER BY usage_score DESC, user_id) AS rank "
            f"FROM user_facts WHERE account_id IN ({marks})) WHERE rank = 1",
            chunk,
        )]
    return users


def _excluded_users(connection: sqlite3.Connection, segment_names: Sequence[str], user_ids: Sequence[str]) -> set[str]:
    """Return those of `user_ids` that are members of an excluded segment now (for an account
    segment, whose account is a member)."""
    excluded: set[str] = set()
    for name in segment_names:
        if _entity_of(name) == "account":
            query = ("SELECT user_id FROM user_facts WHERE user_id IN ({marks}) AND account_id IN "
                     "(SELECT entity_id FROM memberships WHERE segment = ?)")
        else:
            query = "SELECT entity_id FROM memberships WHERE entity_id IN ({marks}) AND segment = ?"
        for chunk in _chunks(user_ids):
            excluded.update(row[0] for row in connection.execute(
                query.format(marks=",".join("?" * len(chunk))), (*chunk, name)))
    return excluded


def _cooling_users(
    connection: sqlite3.Connection, playbook: PlaybookLike, now: int, user_ids: Sequence[str]
) -> set[str]:
    """Return those of `user_ids` with an action of this playbook in the cooldown window."""
    if playbook.cooldown_days <= 0:
        return set()
    statuses = ",".join("?" * len(COOLDOWN_STATUSES))
    cooling: set[str] = set()
    for chunk in _chunks(user_ids):
        cooling.update(row[0] for row in connection.execute(
            f"SELECT DISTINCT user_id FROM actions WHERE user_id IN ({','.join('?' * len(chunk))})"
            f" AND playbook = ? AND created_at > ? AND status IN ({statuses})",
            (*chunk, playbook.id, now - playbook.cooldown_days * DAY_MS, *COOLDOWN_STATUSES),
        ))
    return cooling


def _recipients(connection: sqlite3.Connection, user_ids: Sequence[str], decisions: dict[str, str]) -> list[Recipient]:
    facts: dict[str, tuple] = {}
    for chunk in _chunks(user_ids):
        marks = ",".join("?" * len(chunk))
        for user_id, email, account_id, lifecycle in connection.execute(
            f"SELECT user_id, email, account_id, lifecycle FROM user_facts WHERE user_id IN ({marks})", chunk
        ):
            facts[user_id] = (email, account_id, lifecycle)
    return [Recipient(user_id, *facts.get(user_id, (None, None, None)), decisions[user_id]) for user_id in user_ids]


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[list[str]]:
    # SQLite limits the number of parameters of one statement (999 in older builds).
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


# --- writing a run -------------------------------------------------------------------------------


def create_run(
    db: sqlite_utils.Database,
    playbook: PlaybookLike,
    target: Target,
    *,
    operator: str,
    now: int,
    dry_run: bool = False,
    notice_destinations: Iterable[str] = (),
    users: Iterable[str] | None = None,
) -> Run:
    """Plan the run and write it with all its actions in one transaction; return the run.

    Treated users get one `queued` action per step, due `delay_minutes` after `now`. Held-out
    users get `held_out` rows that are never sent; the first of their steps whose destination is
    in `notice_destinations` gets a queued notice. A dry run records the run and its counts and
    writes no action. `users`, when given, replaces the target's users. Raises `RunError` like
    `plan_run`.
    """
    connection = db.conn
    with write_transaction(connection):
        # Planning inside the write transaction keeps two concurrent runs from both passing the
        # same user's cooldown.
        run = _insert_run(connection, playbook, target, operator, now, dry_run, set(notice_destinations), users)
    return run


def create_entry_run(
    db: sqlite_utils.Database,
    playbook: PlaybookLike,
    since: int,
    *,
    operator: str,
    now: int,
    notice_destinations: Iterable[str] = (),
) -> tuple[Run | None, int]:
    """Run `playbook` for the users who entered its segment at or after `since`, counting only
    entries that no run of this playbook has handled. Return the run (None when there was no such
    entry) and the number of entries. The entries are marked handled in the same transaction, so
    each one triggers the playbook once."""
    connection = db.conn
    with write_transaction(connection):
        transition_ids, users = _pending_entries(connection, playbook, since)
        run = None
        if transition_ids:
            run = _insert_run(connection, playbook, Target("segment", playbook.segment), operator, now, False,
                              set(notice_destinations), users)
            connection.executemany(
                "INSERT INTO entry_triggers (playbook, transition_id, run_id) VALUES (?, ?, ?)",
                [(playbook.id, transition_id, run.id) for transition_id in transition_ids],
            )
    return run, len(transition_ids)


def _insert_run(
    connection: sqlite3.Connection,
    playbook: PlaybookLike,
    target: Target,
    operator: str,
    now: int,
    dry_run: bool,
    notice_destinations: set[str],
    users: Iterable[str] | None,
) -> Run:
    plan = _plan(connection, playbook, target, now, users, preview_limit=0)
    counts, target = plan.counts, plan.target
    cursor = connection.execute(
        "INSERT INTO runs (playbook, segment, operator, target_kind, target_id, created_at, dry_run,"
        " targeted, held_out, excluded_cooldown, excluded_rule, queued)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (playbook.id, playbook.segment, operator, target.kind, target.id, now, int(dry_run),
         counts.targeted, counts.held_out, counts.excluded_cooldown, counts.excluded_rule, counts.queued),
    )
    run_id = cursor.lastrowid
    if not dry_run:
        connection.executemany(
            "INSERT INTO actions (run_id, playbook, user_id, email, account_id, step, channel, destination,"
            " content, idempotency_key, held_out, status, notice, created_at, due_at, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _action_rows(connection, playbook, plan.decisions, run_id, now, notice_destinations),
        )
    return Run(run_id, playbook.id, playbook.segment, operator, target.kind, target.id, now, dry_run, counts)


def _action_rows(
    connection: sqlite3.Connection,
    playbook: PlaybookLike,
    decisions: dict[str, str],
    run_id: int,
    now: int,
    notice_destinations: set[str],
) -> Iterable[tuple]:
    chosen = [user_id for user_id, decision in decisions.items() if decision in ("queued", "held_out")]
    facts = {recipient.user_id: recipient for recipient in _recipients(connection, chosen, decisions)}
    notice_step = next(
        (index for index, step in enumerate(playbook.steps) if step.destination in notice_destinations), None
    )
    for user_id in chosen:
        recipient = facts[user_id]
        held_out = decisions[user_id] == "held_out"
        for index, step in enumerate(playbook.steps):
            due_at = now + step.delay_minutes * _MINUTE_MS
            if held_out:
                notice = "queued" if index == notice_step else None
                status, next_attempt_at = "held_out", due_at if notice else None
            else:
                notice, status, next_attempt_at = None, "queued", due_at
            yield (run_id, playbook.id, user_id, recipient.email, recipient.account_id, index, step.channel,
                   step.destination, step.content, new_idempotency_key(now), int(held_out), status, notice,
                   now, due_at, next_attempt_at)


# --- the dispatcher's side -----------------------------------------------------------------------

_ACTION_COLUMNS = (
    "a.id, a.run_id, a.playbook, r.segment, a.user_id, a.email, a.account_id, a.step, a.channel,"
    " a.destination, a.content, a.idempotency_key, a.held_out, a.status, a.notice, a.created_at,"
    " a.due_at, a.next_attempt_at, a.claimed_at, a.claimed_by, a.attempts, a.sent_at, a.last_error"
)
_ACTION_FROM = "actions AS a JOIN runs AS r ON r.id = a.run_id"
# The pending condition, written as in the partial index actions_pending so that it is used.
_PENDING = "(a.status IN ('queued', 'sending') OR a.notice IN ('queued', 'sending'))"


def _action(row: tuple) -> Action:
    values = list(row)
    values[12] = bool(values[12])
    return Action(*values)


def recover_stale_claims(
    db: sqlite_utils.Database,
    *,
    now: int,
    lease_ms: int,
    claimant_alive: Callable[[str], bool],
    max_attempts: int,
) -> list[int]:
    """Put back the actions that a dispatcher claimed and never resolved; return their ids.

    A claim is stale when it is older than `lease_ms`, or when `claimant_alive(claimed_by)` is
    false (its process is gone). The request may or may not have reached the destination, so it
    counts as an attempt, is recorded as interrupted, and is due again at once with the same
    idempotency key. An action that reaches `max_attempts` this way fails.
    """
    connection = db.conn
    with write_transaction(connection):
        rows = connection.execute(
            f"SELECT a.id, a.claimed_at, a.claimed_by FROM {_ACTION_FROM} WHERE {_PENDING}"
            " AND (a.status = 'sending' OR a.notice = 'sending')"
        ).fetchall()
        stale = [action_id for action_id, claimed_at, claimed_by in rows
                 if claimed_at is None or claimed_at <= now - lease_ms or not claimant_alive(claimed_by or "")]
        for action_id in stale:
            _resolve(connection, action_id, at=now, duration_ms=0, status_code=None, response_excerpt=None,
                     error="interrupted: the dispatcher stopped before the response was recorded",
                     outcome="retry" if _attempts(connection, action_id) + 1 < max_attempts else "failed",
                     next_attempt_at=now)
    return stale


def claim_due(
    db: sqlite_utils.Database,
    *,
    now: int,
    claimant: str,
    limit: int,
    skip_destinations: Iterable[str] = (),
) -> list[Action]:
    """Claim up to `limit` due actions and notices (next attempt at or before `now`), oldest due
    first: mark them `sending` with the claim time and `claimant`, and return them.

    The claim is committed before the caller sends anything, so a crash after it leaves a stale
    claim that `recover_stale_claims` puts back.
    """
    skip = sorted(set(skip_destinations))
    marks = ",".join("?" * len(skip))
    connection = db.conn
    with write_transaction(connection):
        rows = connection.execute(
            f"SELECT {_ACTION_COLUMNS} FROM {_ACTION_FROM} WHERE {_PENDING}"
            " AND (a.status = 'queued' OR a.notice = 'queued') AND a.next_attempt_at <= ?"
            f" AND a.destination NOT IN ({marks}) ORDER BY a.next_attempt_at, a.id LIMIT ?",
            (now, *skip, limit),
        ).fetchall()
        ids = [row[0] for row in rows]
        connection.executemany(
            "UPDATE actions SET status = CASE WHEN held_out THEN status ELSE 'sending' END,"
            " notice = CASE WHEN held_out THEN 'sending' ELSE notice END, claimed_at = ?, claimed_by = ?"
            " WHERE id = ?",
            [(now, claimant, action_id) for action_id in ids],
        )
    return [_action(row) for row in connection.execute(
        f"SELECT {_ACTION_COLUMNS} FROM {_ACTION_FROM} WHERE a.id IN ({','.join('?' * len(ids))})"
        " ORDER BY a.next_attempt_at, a.id", ids)] if ids else []


def release_claims(db: sqlite_utils.Database, action_ids: Sequence[int]) -> None:
    """Put claimed actions back as they were, without an attempt: for actions that were not sent
    because their destination is not configured."""
    db.conn.executemany(
        "UPDATE actions SET status = CASE WHEN status = 'sending' THEN 'queued' ELSE status END,"
        " notice = CASE WHEN notice = 'sending' THEN 'queued' ELSE notice END,"
        " claimed_at = NULL, claimed_by = NULL WHERE id = ?",
        [(action_id,) for action_id in action_ids],
    )


def record_attempt(
    db: sqlite_utils.Database,
    action_id: int,
    *,
    at: int,
    duration_ms: int,
    status_code: int | None,
    response_excerpt: str | None,
    error: str | None,
    outcome: str,
    next_attempt_at: int | None = None,
) -> None:
    """Record one attempt and resolve the claimed action in one transaction.

    `outcome` is "sent" (the destination accepted it), "retry" (due again at `next_attempt_at`)
    or "failed" (given up: an audit entry names it). Raises `ValueError` for another outcome.
    """
    connection = db.conn
    with write_transaction(connection):
        _resolve(connection, action_id, at=at, duration_ms=duration_ms, status_code=status_code,
                 response_excerpt=response_excerpt, error=error, outcome=outcome,
                 next_attempt_at=next_attempt_at)


def _attempts(connection: sqlite3.Connection, action_id: int) -> int:
    return connection.execute("SELECT attempts FROM actions WHERE id = ?", (action_id,)).fetchone()[0]


def _resolve(
    connection: sqlite3.Connection,
    action_id: int,
    *,
    at: int,
    duration_ms: int,
    status_code: int | None,
    response_excerpt: str | None,
    error: str | None,
    outcome: str,
    next_attempt_at: int | None,
) -> None:
    if outcome not in ("sent", "retry", "failed"):
        raise ValueError(f"invalid outcome {outcome!r}; expected sent, retry or failed")
    connection.execute(
        "INSERT INTO attempts (action_id, at, duration_ms, status_code, response_excerpt, error)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (action_id, at, duration_ms, status_code, response_excerpt, error),
    )
    state = {"sent": "sent", "retry": "queued", "failed": "failed"}[outcome]
    connection.execute(
        "UPDATE actions SET status = CASE WHEN held_out THEN status ELSE ? END,"
        " notice = CASE WHEN held_out THEN ? ELSE notice END,"
        " attempts = attempts + 1, claimed_at = NULL, claimed_by = NULL,"
        " next_attempt_at = ?, sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END, last_error = ?"
        " WHERE id = ?",
        (state, state, next_attempt_at if outcome == "retry" else None, outcome, at,
         None if outcome == "sent" else error or f"HTTP {status_code}", action_id),
    )
    if outcome == "failed":
        run_id = connection.execute("SELECT run_id FROM actions WHERE id = ?", (action_id,)).fetchone()[0]
        connection.execute(
            "INSERT INTO audit (at, operator, event, run_id, detail) VALUES (?, 'dispatcher', 'action_failed', ?, ?)",
            (at, run_id, f"action {action_id}: {error or f'HTTP {status_code}'}"),
        )


# --- reading the audit log -----------------------------------------------------------------------

_RUN_COLUMNS = (
    "id, playbook, segment, operator, target_kind, target_id, created_at, dry_run,"
    " targeted, held_out, excluded_cooldown, excluded_rule, queued"
)


def _run(row: tuple) -> Run:
    return Run(*row[:7], bool(row[7]), RunCounts(*row[8:]))


def get_run(db: sqlite_utils.Database, run_id: int) -> Run | None:
    """Return the run with this id, or None."""
    row = db.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else _run(row)


def list_runs(db: sqlite_utils.Database, *, limit: int = 50, before_id: int | None = None,
              playbook: str | None = None) -> list[Run]:
    """Return up to `limit` runs, newest first; `before_id` pages back from an earlier page."""
    where, parameters = [], []
    if before_id is not None:
        where.append("id < ?")
        parameters.append(before_id)
    if playbook is not None:
        where.append("playbook = ?")
        parameters.append(playbook)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return [_run(row) for row in db.conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs {clause} ORDER BY id DESC LIMIT ?", (*parameters, limit))]


def list_actions(
    db: sqlite_utils.Database,
    *,
    run_id: int | None = None,
    user_id: str | None = None,
    status: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
    newest_first: bool = False,
) -> list[Action]:
    """Return up to `limit` actions, by id, of a run, a user or a status, or of all of them;
    `after_id` pages on. With `newest_first`, ids go down and `after_id` pages towards older ones."""
    where, parameters = [], []
    paging = "a.id < ?" if newest_first else "a.id > ?"
    filters = (("a.run_id = ?", run_id), ("a.user_id = ?", user_id), ("a.status = ?", status), (paging, after_id))
    for clause, value in filters:
        if value is not None:
            where.append(clause)
            parameters.append(value)
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    return [_action(row) for row in db.conn.execute(
        f"SELECT {_ACTION_COLUMNS} FROM {_ACTION_FROM} {condition} ORDER BY a.id {'DESC' if newest_first else 'ASC'}"
        " LIMIT ?", (*parameters, limit))]


def list_attempts(db: sqlite_utils.Database, action_id: int) -> list[Attempt]:
    """Return every attempt of an action, oldest first."""
    return [Attempt(*row) for row in db.conn.execute(
        "SELECT id, action_id, at, duration_ms, status_code, response_excerpt, error FROM attempts"
        " WHERE action_id = ? ORDER BY at, id", (action_id,))]


def action_status_counts(db: sqlite_utils.Database, run_id: int | None = None) -> dict[str, int]:
    """Return the number of actions by status, of one run or of the whole outbox. Held-out rows
    with a notice count under `held_out`."""
    where, parameters = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    return dict(db.conn.execute(
        f"SELECT status, COUNT(*) FROM actions {where} GROUP BY status ORDER BY status", parameters).fetchall())


def list_audit(db: sqlite_utils.Database, *, limit: int = 100) -> list[dict]:
    """Return the latest audit entries besides runs (pauses, failed actions), newest first."""
    return [
        dict(zip(("id", "at", "operator", "event", "run_id", "detail"), row))
        for row in db.conn.execute(
            "SELECT id, at, operator, event, run_id, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,))
    ]


# --- automatic playbooks -------------------------------------------------------------------------


def automatic_paused(db: sqlite_utils.Database) -> bool:
    """Return whether an operator paused automatic playbooks."""
    row = db.conn.execute("SELECT value FROM flags WHERE name = ?", (AUTOMATIC_PAUSED_FLAG,)).fetchone()
    return row is not None and row[0] == "1"


def set_automatic_paused(db: sqlite_utils.Database, paused: bool, *, operator: str, now: int) -> None:
    """Pause or resume automatic playbooks, with an audit entry naming the operator."""
    connection = db.conn
    with write_transaction(connection):
        connection.execute("INSERT OR REPLACE INTO flags (name, value) VALUES (?, ?)",
                           (AUTOMATIC_PAUSED_FLAG, "1" if paused else "0"))
        connection.execute(
            "INSERT INTO audit (at, operator, event, run_id, detail) VALUES (?, ?, ?, NULL, ?)",
            (now, operator, "automatic_paused" if paused else "automatic_resumed",
             "automatic playbooks paused" if paused else "automatic playbooks resumed"),
        )


def _pending_entries(
    connection: sqlite3.Connection, playbook: PlaybookLike, since: int
) -> tuple[list[int], list[str]]:
    """Return the entries into the playbook's segment at or after `since` that no run of this
    playbook has handled yet: their transition ids, and the users they mean (for an account
    segment, each account's contact), sorted."""
    rows = connection.execute(
        "SELECT t.id, t.entity_id FROM transitions AS t WHERE t.segment = ? AND t.entered = 1 AND t.at >= ?"
        " AND NOT EXISTS (SELECT 1 FROM entry_triggers AS e WHERE e.playbook = ? AND e.transition_id = t.id)"
        " ORDER BY t.id",
        (playbook.segment, since, playbook.id),
    ).fetchall()
    transition_ids = [row[0] for row in rows]
    entities = sorted({row[1] for row in rows})
    if _entity_of(playbook.segment) == "account":
        entities = sorted(set(_contacts(connection, entities)))
    return transition_ids, entities
