"""Ingest of message batches into the cache: dedupe, identity linking, traits and quarantine."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import orjson
import sqlite_utils

from store.db import write_transaction
from store.normalize import Normalized, Rejection, fingerprint, normalize
from store.settings import Settings
from store.timeparse import now_ms

# Marks "leave the source's cursor as it is" for `ingest_batch`.
KEEP_CURSOR = object()


@dataclass
class IngestResult:
    """Counts of one ingest. Every message read is stored, a duplicate, or quarantined."""

    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    # Duplicates whose payload differs from the stored message (kept in duplicate_conflicts).
    conflicts: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: IngestResult) -> None:
        """Add another result's counts to this one."""
        self.read += other.read
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.conflicts += other.conflicts
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict:
        """Return the counts as plain JSON-ready data."""
        return {
            "read": self.read,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "conflicts": self.conflicts,
            "reasons": dict(sorted(self.reasons.items())),
        }


def ingest_batch(
    db: sqlite_utils.Database,
    items: Iterable[tuple[str, object]],
    *,
    source: str,
    cursor: object = KEEP_CURSOR,
    settings: Settings | None = None,
    received_at: int | None = None,
) -> IngestResult:
    """Store one batch of `(location, value)` items from `source` in a single transaction.

    Valid messages are stored once by messageId. A messageId already cached is counted as a
    duplicate, and also kept in `duplicate_conflicts` when its payload differs, because the first
    payload stays authoritative as in Segment's own dedupe. Invalid messages go to the quarantine
    with a reason.
    When `cursor` is given, the source's cursor is committed in the same transaction, so a crash
    never separates the messages from the cursor that covers them.

    `received_at` (epoch ms, default now) is the ingest time, also the event time of messages that
    carry no time field. Raises `sqlite3.Error` only for database failures; the transaction is
    rolled back then.
    """
    settings = settings or Settings()
    received_at = now_ms() if received_at is None else received_at
    result = IngestResult()
    valid: dict[str, tuple[str, Normalized]] = {}
    rejected: list[tuple[str, Rejection]] = []
    repeats: list[tuple[str, Normalized]] = []

    for location, value in items:
        result.read += 1
        outcome = normalize(value, received_at, settings.max_message_bytes)
        if isinstance(outcome, Rejection):
            rejected.append((location, outcome))
        elif outcome.message_id in valid:
            repeats.append((location, outcome))
        else:
            valid[outcome.message_id] = (location, outcome)

    connection = db.conn
    with write_transaction(connection):
        stored_fingerprints = _stored_fingerprints(connection, list(valid))
        for message_id in stored_fingerprints:
            repeats.append(valid.pop(message_id))
        fingerprints = dict(stored_fingerprints)
        for _, message in repeats:
            if message.message_id in valid and message.message_id not in fingerprints:
                fingerprints[message.message_id] = fingerprint(valid[message.message_id][1].value)

        _insert_messages(connection, [message for _, message in valid.values()], source, received_at)
        result.stored = len(valid)
        result.duplicates = len(repeats)
        result.conflicts = _record_conflicts(connection, repeats, fingerprints, source, received_at)
        _quarantine(connection, rejected, source, received_at)
        result.quarantined = len(rejected)
        result.reasons.update(rejection.reason for _, rejection in rejected)
        _update_source(connection, source, result, cursor, received_at)
    return result


def ingest_stream(
    db: sqlite_utils.Database,
    items: Iterable[tuple[str, object]],
    *,
    source: str,
    settings: Settings | None = None,
    batch_size: int = 20_000,
    progress: Callable[[IngestResult], None] | None = None,
) -> IngestResult:
    """Ingest an unbounded stream (a file import) in transactions of `batch_size` messages.

    `progress` is called with the running totals after each batch.
    """
    total = IngestResult()
    iterator: Iterator[tuple[str, object]] = iter(items)
    while batch := list(islice(iterator, batch_size)):
        total.add(ingest_batch(db, batch, source=source, settings=settings))
        if progress is not None:
            progress(total)
    return total


def _stored_fingerprints(connection: sqlite3.Connection, message_ids: list[str]) -> dict[str, bytes]:
    if not message_ids:
        return {}
    rows = connection.execute(
        "SELECT message_id, payload FROM messages WHERE message_id IN (SELECT value FROM json_each(?))",
        (orjson.dumps(message_ids).decode(),),
    ).fetchall()
    return {message_id: fingerprint(orjson.loads(payload)) for message_id, payload in rows}


def _insert_messages(
    connection: sqlite3.Connection, messages: list[Normalized], source: str, received_at: int
) -> None:
    if not messages:
        return
    first_seq = connection.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages").fetchone()[0]
    rows = []
    traits = []
    links = []
    for offset, message in enumerate(messages):
        seq = first_seq + offset
        rows.append(
            (
                seq,
                message.message_id,
                message.type,
                message.user_id,
                message.anonymous_id,
                message.user_id,
                message.event,
                message.group_id,
                message.event_time,
                message.time_field,
                received_at,
                source,
                message.team_id,
                message.payload,
            )
        )
        for scope, values in (("user", message.user_traits), ("account", message.account_traits)):
            if values:
                traits.extend((seq, scope, key, orjson.dumps(item).decode()) for key, item in values.items())
        if message.type == "identify" and message.user_id and message.anonymous_id:
            links.append((message.anonymous_id, message.user_id, message.event_time, message.message_id))
        elif message.type == "alias" and message.user_id and message.previous_id:
            links.append((message.previous_id, message.user_id, message.event_time, message.message_id))

    connection.executemany(
        "INSERT INTO messages (seq, message_id, type, user_id, anonymous_id, user_key, event,"
        " group_id, event_time, time_field, received_at, source, team_id, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    connection.executemany("INSERT INTO trait_updates (seq, scope, key, value) VALUES (?, ?, ?, ?)", traits)

    # Anonymous-only messages of this batch follow the links already known.
    connection.execute(
        "UPDATE messages SET user_key = link.user_id, linked_at = link.linked_at"
        " FROM identity_links AS link"
        " WHERE messages.seq >= ? AND messages.user_id IS NULL"
        " AND messages.anonymous_id = link.anonymous_id",
        (first_seq,),
    )
    for link in links:
        _link(connection, *link)
    connection.execute(
        "INSERT OR IGNORE INTO dirty_users (user_id)"
        " SELECT DISTINCT user_key FROM messages WHERE seq >= ? AND user_key IS NOT NULL",
        (first_seq,),
    )
    connection.execute(
        "INSERT OR IGNORE INTO dirty_accounts (account_id)"
        " SELECT DISTINCT group_id FROM messages WHERE seq >= ? AND group_id IS NOT NULL",
        (first_seq,),
    )


def _link(connection: sqlite3.Connection, anonymous_id: str, user_id: str, linked_at: int, message_id: str) -> None:
    """Link an anonymousId (or an alias's previousId) to a userId. The earliest link by event time
    wins, so re-reading history in another order gives the same attribution."""
    if anonymous_id == user_id:
        return
    existing = connection.execute(
        "SELECT user_id, linked_at FROM identity_links WHERE anonymous_id = ?", (anonymous_id,)
    ).fetchone()
    if existing is not None and existing[1] <= linked_at:
        return
    if existing is not None:
        # The anonymous messages move to another user: the previous one must be re-evaluated.
        connection.execute("INSERT OR IGNORE INTO dirty_users (user_id) VALUES (?)", (existing[0],))
    connection.execute(
        "INSERT INTO identity_links (anonymous_id, user_id, linked_at, message_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (anonymous_id) DO UPDATE SET user_id = excluded.user_id,"
        " linked_at = excluded.linked_at, message_id = excluded.message_id",
        (anonymous_id, user_id, linked_at, message_id),
    )
    connection.execute(
        "UPDATE messages SET user_key = ?, linked_at = ? WHERE anonymous_id = ? AND user_id IS NULL",
        (user_id, linked_at, anonymous_id),
    )


def _record_conflicts(
    connection: sqlite3.Connection,
    repeats: list[tuple[str, Normalized]],
    fingerprints: dict[str, bytes],
    source: str,
    received_at: int,
) -> int:
    conflicts = [
        (message.message_id, source, location, received_at, message.payload)
        for location, message in repeats
        if fingerprints.get(message.message_id) != fingerprint(message.value)
    ]
    connection.executemany(
        "INSERT INTO duplicate_conflicts (message_id, source, location, received_at, payload)"
        " VALUES (?, ?, ?, ?, ?)",
        conflicts,
    )
    return len(conflicts)


def _quarantine(
    connection: sqlite3.Connection, rejected: list[tuple[str, Rejection]], source: str, received_at: int
) -> None:
    connection.executemany(
        "INSERT INTO quarantine (source, location, reason, detail, received_at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (source, location, rejection.reason, rejection.detail, received_at, rejection.payload)
            for location, rejection in rejected
        ],
    )


def _update_source(
    connection: sqlite3.Connection, source: str, result: IngestResult, cursor: object, at: int
) -> None:
    connection.execute(
        "INSERT INTO sources (name, read, stored, duplicates, quarantined, last_attempt_at, last_success_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET read = read + excluded.read,"
        " stored = stored + excluded.stored, duplicates = duplicates + excluded.duplicates,"
        " quarantined = quarantined + excluded.quarantined,"
        " last_attempt_at = excluded.last_attempt_at, last_success_at = excluded.last_success_at,"
        " last_error = NULL",
        (source, result.read, result.stored, result.duplicates, result.quarantined, at, at),
    )
    if cursor is not KEEP_CURSOR:
        connection.execute("UPDATE sources SET cursor = ? WHERE name = ?", (cursor, source))
