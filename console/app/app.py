"""The Textual app: screens, the background sync worker and the command palette."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from console.app.screens.account import AccountScreen
from console.app.screens.dashboard import DashboardScreen
from console.app.screens.flow import FlowScreen
from console.app.screens.help import HelpScreen
from console.app.screens.quarantine import QuarantineScreen
from console.app.screens.segment import SegmentScreen
from console.app.screens.user import UserScreen
from console.app.widgets.status import SyncState
from console.app.widgets.text import clean
from console.sources import SourceError
from console.sources.http import HttpSource, backoff_delays
from console.sync import SyncReport, sync_once
from store import segments as seg
from store.db import open_cache
from store.memberships import backfill
from store.queries import find_entities
from store.settings import Settings
from store.timeparse import now_ms

logger = logging.getLogger(__name__)

# A source that rejects the write key or has no feed is retried at this delay at the earliest, in
# seconds, as `console.sync.follow` does: the operator may fix it without restarting the console.
NOT_RETRYABLE_DELAY = 60.0


class SyncProgressed(Message):
    """The sync worker committed one more page."""

    def __init__(self, pages: int, read: int) -> None:
        super().__init__()
        self.pages = pages
        self.read = read


class SyncFinished(Message):
    """The sync worker pulled every page and evaluated the segments.

    `backfilling` is true when the worker goes on to compute past daily snapshots, so the next
    sync waits for `BackfillFinished`.
    """

    def __init__(self, report: SyncReport, *, backfilling: bool = False) -> None:
        super().__init__()
        self.report = report
        self.backfilling = backfilling


class SyncFailed(Message):
    """The sync worker stopped on an error. `error` is the message to show."""

    def __init__(self, error: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__()
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after


class BackfillProgressed(Message):
    """The sync worker computed the snapshot of one more past day."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total


class BackfillFinished(Message):
    """The sync worker computed every missing past daily snapshot."""

    def __init__(self, days: int) -> None:
        super().__init__()
        self.days = days


class _Stopped(Exception):
    """Raised from a progress callback to end a backfill when the app exits."""


def display_url(url: str | None) -> str | None:
    """Return `url` without the user name and password, where a write key may be."""
    if url is None:
        return None
    try:
        return str(httpx.URL(url).copy_with(username=None, password=None))
    except (httpx.InvalidURL, TypeError):
        return "(invalid URL)"


# Palette entries that open a screen: label, `jump_to` kind and help text.
SCREEN_COMMANDS = (
    ("Lifecycle flow", "flow", "Users per stage 7 or 30 days ago and stage now"),
    ("Quarantine", "quarantine", "Messages the cache rejected, per reason, with their payloads"),
)


class SegopsCommands(Provider):
    """Command palette entries: the flow and quarantine screens, every segment, and users and
    accounts by id, email or name."""

    app: SegopsApp

    def _fixed_commands(self) -> Iterator[tuple[str, Callable, str]]:
        for label, kind, help_text in SCREEN_COMMANDS:
            yield label, partial(self.app.jump_to, kind), help_text
        for definition in seg.ALL_SEGMENTS:
            yield f"Segment: {definition.name}", partial(self.app.jump_to, "segment", definition.name), definition.rule

    async def discover(self) -> Hits:
        for label, command, help_text in self._fixed_commands():
            yield DiscoveryHit(label, command, text=label, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, command, help_text in self._fixed_commands():
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), command, text=label, help=help_text)

        text = query.strip()
        if not text:
            return
        # find_entities may scan the facts tables, so it runs on a thread with its own connection.
        found = await asyncio.to_thread(self._find, text)
        for kind, entity_id, label in found:
            prompt = Text.assemble((f"{kind.capitalize()}: ", "bold"), clean(entity_id))
            if label:
                prompt.append(f"  {clean(label)}", style="dim")
            exact = text.lower() in (entity_id.lower(), (label or "").lower())
            yield Hit(1.0 if exact else 0.5, prompt, partial(self.app.jump_to, kind, entity_id),
                      text=clean(entity_id))

    def _find(self, text: str) -> list[tuple[str, str, str]]:
        with self.app.reader() as connection:
            return find_entities(connection, text)


class SegopsApp(App[None]):
    """The segops console. With a source URL it syncs in the background, and without one it only
    reads the cache.

    Raises `store.db.CacheError` when the cache cannot be opened.
    """

    CSS_PATH = "segops.tcss"
    TITLE = "segops"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("f1,question_mark", "help", "Help", id="app.help", key_display="F1/?"),
        Binding("ctrl+p", "command_palette", "Jump to", id="app.palette", priority=True,
                tooltip="Open the command palette: jump to a segment, a user or an account"),
    ]
    COMMANDS = App.COMMANDS | {SegopsCommands}

    def __init__(
        self,
        cache_path: Path,
        settings: Settings,
        source_url: str | None,
        write_key: str | None,
        sync_interval: float = 5.0,
        title_note: str | None = None,
        *,
        stale_after: float = 900.0,
        backfill_days: int = 90,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__()
        self.cache_path = Path(cache_path)
        self.settings = settings
        self.source_url = source_url
        self.write_key = write_key
        self.sync_interval = sync_interval
        # Seconds without a new message after which a sync marks its snapshot stale.
        self.stale_after = stale_after
        # Past UTC days whose snapshots the first sync of a cache computes, for the trends.
        self.backfill_days = backfill_days
        # Epoch ms "now" for the status line, the sync and the explanations. Tests pass a fixed clock.
        self.clock = clock
        if title_note:
            self.title = f"segops · {clean(title_note)}"
        # For bounded queries on the UI thread only, because workers open their own connections.
        self.db = open_cache(self.cache_path)
        self.sync_state = SyncState(source=display_url(source_url))
        self._delays = backoff_delays()
        self._sync_timer: Timer | None = None

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """Open a new connection to the cache for the calling thread, and close it on exit."""
        db = open_cache(self.cache_path)
        try:
            yield db.conn
        finally:
            db.conn.close()

    def get_default_screen(self) -> Screen:
        return DashboardScreen()

    def on_mount(self) -> None:
        if self.source_url is not None:
            self.start_sync()

    def on_unmount(self) -> None:
        self.db.conn.close()

    # Navigation.

    def open_segment(self, name: str, crumbs: tuple[str, ...]) -> None:
        self.push_screen(SegmentScreen(name, crumbs))

    def open_user(self, user_id: str, crumbs: tuple[str, ...]) -> None:
        self.push_screen(UserScreen(user_id, crumbs))

    def open_account(self, account_id: str, crumbs: tuple[str, ...]) -> None:
        self.push_screen(AccountScreen(account_id, crumbs))

    def open_flow(self, crumbs: tuple[str, ...]) -> None:
        self.push_screen(FlowScreen(crumbs))

    def open_quarantine(self, crumbs: tuple[str, ...]) -> None:
        self.push_screen(QuarantineScreen(crumbs))

    async def jump_to(self, kind: str, key: str | None = None) -> None:
        """Go back to the dashboard and open from there a segment, a user or an account named by
        `key`, or the flow or quarantine screen."""
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        crumbs = ("Dashboard",)
        if kind == "flow":
            self.open_flow(crumbs)
        elif kind == "quarantine":
            self.open_quarantine(crumbs)
        else:
            opener = {"segment": self.open_segment, "user": self.open_user, "account": self.open_account}[kind]
            opener(key, crumbs)

    def action_help(self) -> None:
        """Show the keys of the screen under the help, with their descriptions."""
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    # The background sync.

    def start_sync(self) -> None:
        """Start one sync on a worker thread. The next one is scheduled when this one ends."""
        self._sync_timer = None
        self.sync_state.running = True
        self.sync_state.pages = self.sync_state.read = 0
        self._dashboard_sync_changed(ended=False)
        self._sync()

    def sync_now(self) -> bool:
        """Start a sync at once unless one is running. Return False when there is no source."""
        if self.source_url is None:
            return False
        if not self.sync_state.running:
            if self._sync_timer is not None:
                self._sync_timer.stop()
            self.start_sync()
        return True

    @work(thread=True, exclusive=True, group="sync", exit_on_error=False, name="sync")
    def _sync(self) -> None:
        worker = get_current_worker()
        db = None
        try:
            db = open_cache(self.cache_path)
            with HttpSource(self.source_url, self.write_key or "") as source:
                report = sync_once(
                    db, source, self.settings,
                    progress=lambda report: self.post_message(SyncProgressed(report.pages, report.result.read)),
                    clock=self.clock,
                    # Set when the app exits, so that the worker stops after the current page.
                    stop=worker.cancelled_event,
                    stale_after_ms=int(self.stale_after * 1000),
                )
            backfilling = report.first and self.backfill_days > 0 and not worker.is_cancelled
            self.post_message(SyncFinished(report, backfilling=backfilling))
            if backfilling:
                self._backfill(db, worker)
        except SourceError as error:
            self.post_message(SyncFailed(
                str(error), retryable=error.retryable, retry_after=getattr(error, "retry_after", None)))
        except _Stopped:
            logger.info("backfill stopped because the console exits")
        except Exception as error:
            # A cache or database failure must reach the status line too, not end the worker silently.
            logger.exception("sync of %s failed", self.sync_state.source)
            self.post_message(SyncFailed(f"{type(error).__name__}: {error}", retryable=True))
        finally:
            if db is not None:
                db.conn.close()

    def _backfill(self, db, worker: Worker) -> None:
        def on_day(done: int, total: int) -> None:
            if worker.is_cancelled:
                raise _Stopped
            self.post_message(BackfillProgressed(done, total))

        days = backfill(db, self.settings, self.backfill_days, now=self.clock(), progress=on_day)
        self.post_message(BackfillFinished(days))

    def on_sync_progressed(self, message: SyncProgressed) -> None:
        self.sync_state.pages = message.pages
        self.sync_state.read = message.read
        self._dashboard_sync_changed(ended=False)

    def on_sync_finished(self, message: SyncFinished) -> None:
        state = self.sync_state
        state.report = message.report
        state.finished_at = self.clock()
        state.error = state.failed_at = state.retry_at = None
        self._delays = backoff_delays()
        if message.backfilling:
            state.backfill = (0, self.backfill_days)
        else:
            state.running = False
            self._schedule_sync(self.sync_interval)
        self._dashboard_sync_changed(ended=True)

    def on_backfill_progressed(self, message: BackfillProgressed) -> None:
        self.sync_state.backfill = (message.done, message.total)
        self._dashboard_sync_changed(ended=False)

    def on_backfill_finished(self, message: BackfillFinished) -> None:
        state = self.sync_state
        state.running = False
        state.backfill = None
        logger.info("backfilled %d days of snapshots", message.days)
        self._schedule_sync(self.sync_interval)
        self._dashboard_sync_changed(ended=True)

    def on_sync_failed(self, message: SyncFailed) -> None:
        delay = next(self._delays)
        if message.retry_after is not None:
            delay = max(delay, message.retry_after)
        if not message.retryable:
            delay = max(delay, NOT_RETRYABLE_DELAY)
        state = self.sync_state
        state.running = False
        state.backfill = None
        state.error = message.error
        state.failed_at = self.clock()
        state.retry_at = state.failed_at + int(delay * 1000)
        logger.warning("sync failed, next attempt in %.1f s: %s", delay, message.error)
        self._schedule_sync(delay)
        self._dashboard_sync_changed(ended=True)

    def _schedule_sync(self, delay: float) -> None:
        if self._sync_timer is not None:
            self._sync_timer.stop()
        self._sync_timer = self.set_timer(delay, self.start_sync, name="next sync")

    def _dashboard_sync_changed(self, ended: bool) -> None:
        dashboard = self.screen_stack[0] if self.screen_stack else None
        if isinstance(dashboard, DashboardScreen) and dashboard.is_mounted:
            dashboard.sync_changed(ended)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.show_worker_error(event.worker)

    def show_worker_error(self, worker: Worker) -> None:
        """Log a worker's unexpected failure and show it as an error notification."""
        error = worker.error
        logger.error("worker %s failed", worker.name, exc_info=error)
        self.notify(f"{type(error).__name__}: {clean(error)}", title=f"{worker.name} failed",
                    severity="error", markup=False, timeout=10)
