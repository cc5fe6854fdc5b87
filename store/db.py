"""Opening and migrating the cache database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from store.migrations import MIGRATIONS

# A console reading while a sync writes waits at most this long for a lock, in milliseconds.
BUSY_TIMEOUT_MS = 5_000


class CacheError(Exception):
    """The cache file cannot be opened or migrated."""


def open_cache(path: str | Path) -> sqlite_utils.Database:
    """Open (creating if needed) the cache at `path`, in WAL mode with a busy timeout, and apply
    pending migrations. `":memory:"` opens a private in-memory cache.

    Raises `CacheError` when the file is not a SQLite database, cannot be created, or was written by
    a newer segops.
    """
    if str(path) != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CacheError(f"cannot create the folder of cache {path}: {error.strerror}") from None
    try:
        # isolation_level=None: transactions are explicit (BEGIN ... COMMIT) in the ingest and the
        # engine, so that a cursor and the messages it covers commit together.
        connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = OFF")
        _migrate(connection, path)
    except sqlite3.DatabaseError as error:
        raise CacheError(f"cannot open cache {path}: {error}") from None
    return sqlite_utils.Database(connection)


@contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one write transaction: BEGIN IMMEDIATE takes the write lock at once (so a
    concurrent writer waits for the busy timeout instead of failing at COMMIT), COMMIT at the end,
    ROLLBACK on any exception, which is re-raised."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def schema_version(connection: sqlite3.Connection) -> int:
    """Return the number of the last migration applied."""
    return connection.execute("PRAGMA user_version").fetchone()[0]


def _migrate(connection: sqlite3.Connection, path: str | Path) -> None:
    current = schema_version(connection)
    latest = MIGRATIONS[-1][0]
    if current > latest:
        raise CacheError(
            f"cache {path} has schema version {current}, newer than this segops supports "
            f"({latest}); upgrade segops or use another --cache"
        )
    for number, script in MIGRATIONS:
        if number <= current:
            continue
        # executescript commits any open transaction first, so the version bump is in the script.
        connection.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
