"""The sync loop: pull pages from a source into the cache, then evaluate the segments.

One function, `sync_once`, serves the console's worker and the headless `segops sync`; `follow`
repeats it on an interval and backs off after failures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlite_utils

from console.sources import SourceError
from console.sources.http import HttpSource, backoff_delays
from store.ingest import IngestResult, ingest_batch
from store.memberships import backfill, refresh_incremental
from store.settings import Settings
from store.timeparse import now_ms

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """The outcome of one sync: pages pulled, ingest counts, and when it evaluated the segments."""

    source: str
    pages: int = 0
    result: IngestResult = field(default_factory=IngestResult)
    evaluated_at: int | None = None
    populations: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # True when the cache had no snapshot before this sync: its history wants a backfill.
    first: bool = False
    # True when the feed was stale: no message arrived for longer than the allowed gap.
    stale: bool = False


def stored_cursor(db: sqlite_utils.Database, source: str) -> str | None:
    """Return the cursor committed for `source`, or None to start from the beginning."""
    row = db.conn.execute("SELECT cursor FROM sources WHERE name = ?", (source,)).fetchone()
    return None if row is None else row[0]


def record_failure(db: sqlite_utils.Database, source: str, error: Exception) -> None:
    """Store a failed attempt on the source, so the console and `info` show it."""
    at = now_ms()
    db.conn.execute(
        "INSERT INTO sources (name, last_attempt_at, last_error) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
        " last_error = excluded.last_error",
        (source, at, str(error)),
    )


def sync_once(
    db: sqlite_utils.Database,
    source: HttpSource,
    settings: Settings,
    *,
    progress: Callable[[SyncReport], None] | None = None,
    evaluate: bool = True,
    clock: Callable[[], int] = now_ms,
    stop: threading.Event | None = None,
    stale_after_ms: int = 15 * 60 * 1000,
    after_evaluation: Callable[[sqlite_utils.Database, SyncReport, int | None], None] | None = None,
) -> SyncReport:
    """Pull every page after the committed cursor, committing each page with its cursor, then
    evaluate the segments at `clock()` (incrementally: only what can have changed) and write a
    snapshot.

    The snapshot is marked stale, and kept out of trends, when no message arrived for
    `stale_after_ms`. `progress` is called after each page. `after_evaluation(db, report,
    previous_evaluated_at)` runs after the evaluation, for automatic playbooks. Raises `SourceError` when a page cannot be fetched; the
    failure is recorded on the source first, and the pages already committed stay.
    """
    started = time.perf_counter()
    report = SyncReport(source=source.name)
    report.first = db.conn.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 0
    cursor = stored_cursor(db, source.name)
    logger.info("sync of %s started at cursor %r", source.name, cursor)
    while stop is None or not stop.is_set():
        try:
            page = source.fetch_page(cursor)
        except SourceError as error:
            record_failure(db, source.name, error)
            logger.warning("sync of %s failed at cursor %r: %s", source.name, cursor, error)
            raise
        if not page.items:
            _mark_success(db, source.name)
            break
        report.result.add(
            ingest_batch(db, page.items, source=source.name, cursor=page.next_cursor, settings=settings)
        )
        report.pages += 1
        cursor = page.next_cursor
        if progress is not None:
            progress(report)

    if evaluate and (stop is None or not stop.is_set()):
        previous = db.conn.execute("SELECT MAX(evaluated_at) FROM evaluations").fetchone()[0]
        t = clock()
        latest = db.conn.execute("SELECT MAX(received_at) FROM messages").fetchone()[0]
        report.stale = latest is None or t - latest > stale_after_ms
        evaluation = refresh_incremental(db, settings, t, stale=report.stale)
        report.evaluated_at = evaluation.t
        report.populations = evaluation.populations()
        if after_evaluation is not None:
            after_evaluation(db, report, previous)
    report.seconds = time.perf_counter() - started
    logger.info(
        "sync of %s finished: %d pages, %d read, %d stored, %d duplicates, %d quarantined in %.1f s",
        source.name, report.pages, report.result.read, report.result.stored,
        report.result.duplicates, report.result.quarantined, report.seconds,
    )
    return report


def _mark_success(db: sqlite_utils.Database, source: str) -> None:
    at = now_ms()
    db.conn.execute(
        "INSERT INTO sources (name, last_attempt_at, last_success_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET last_attempt_at = excluded.last_attempt_at,"
        " last_success_at = excluded.last_success_at, last_error = NULL",
        (source, at, at),
    )


def follow(
    db: sqlite_utils.Database,
    source: HttpSource,
    settings: Settings,
    *,
    interval: float,
    stop: threading.Event,
    on_report: Callable[[SyncReport], None] | None = None,
    on_error: Callable[[SourceError, float], None] | None = None,
    stale_after_ms: int = 15 * 60 * 1000,
    backfill_days: int = 0,
    after_evaluation: Callable[[sqlite_utils.Database, SyncReport, int | None], None] | None = None,
) -> None:
    """Sync, wait `interval` seconds, and repeat until `stop` is set.

    After a failure the next attempt waits a jittered, growing delay, or the `Retry-After` of a 429,
    instead of the interval. `on_error` receives the error and that delay. A non-retryable
    error (a rejected write key, no feed at the URL) still retries, but at the capped delay, so a
    fixed configuration resumes without a restart. After the first sync of a cache, the last
    `backfill_days` days of daily snapshots are computed.
    """
    delays = backoff_delays()
    while not stop.is_set():
        try:
            report = sync_once(db, source, settings, stop=stop, stale_after_ms=stale_after_ms,
                               after_evaluation=after_evaluation)
        except SourceError as error:
            delay = next(delays)
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if not getattr(error, "retryable", True):
                delay = max(delay, 60.0)
            if on_error is not None:
                on_error(error, delay)
            stop.wait(delay)
            continue
        delays = backoff_delays()
        if on_report is not None:
            on_report(report)
        if report.first and backfill_days:
            backfill(db, settings, backfill_days)
        stop.wait(interval)
