"""The Textual app: screens, the background sync and dispatcher workers, playbook triggers and the
command palette."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import sqlite_utils
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
from console.app.screens.actions_log import ActionsLogScreen
from console.app.screens.base import WRITE_ACTIONS, ConsoleScreen, TriggerTarget
from console.app.screens.dashboard import DashboardScreen
from console.app.screens.flow import FlowScreen
from console.app.screens.health import HealthScreen
from console.app.screens.help import HelpScreen
from console.app.screens.playbook_chooser import PlaybookChooserScreen
from console.app.screens.quarantine import QuarantineScreen
from console.app.screens.run_confirm import RunConfirmScreen
from console.app.screens.segment import SegmentScreen
from console.app.screens.user import UserScreen
from console.app.widgets.status import DispatchState, PlaybookState, SyncState
from console.app.widgets.text import clean
from console.config import Config
from console.dispatch import DispatchReport, dispatch_once
from console.playbooks import operator_name
from console.playbooks.automatic import queue_entries
from console.playbooks.catalog import Playbook
from console.sources import SourceError
from console.sources.http import HttpSource, backoff_delays
from console.sync import SyncReport, sync_once
from store import runs
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


class AutomaticRunsQueued(Message):
    """The sync worker queued runs of automatic playbooks for the users who entered their segments."""

    def __init__(self, created: list[runs.Run]) -> None:
        super().__init__()
        self.created = created


class DispatchFinished(Message):
    """The dispatcher worker finished a pass over the outbox."""

    def __init__(self, report: DispatchReport) -> None:
        super().__init__()
        self.report = report


class DispatchFailed(Message):
    """A dispatcher pass stopped on an error, such as a locked cache. `error` is the message to show."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class AutomaticPauseChanged(Message):
    """The pause switch of automatic playbooks was written (`paused`), or read from the cache."""

    def __init__(self, paused: bool, *, switched: bool) -> None:
        super().__init__()
        self.paused = paused
        # False when the state was only read, so no toast is shown.
        self.switched = switched


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
    ("Actions log", "actions", "Playbook runs newest first, and each run's actions with their attempts"),
    ("Health", "health", "Every segment's population, trend and freshness, with its latest run's performance and "
                         "outcome against holdout"),
)


class SegopsCommands(Provider):
    """Command palette entries: the flow, quarantine and actions log screens, every segment, users
    and accounts by id, email or name, and, unless the console is read-only, the playbook trigger of
    the current screen and the pause switch of automatic playbooks."""

    app: SegopsApp

    def _fixed_commands(self) -> Iterator[tuple[str, Callable, str]]:
        for label, kind, help_text in SCREEN_COMMANDS:
            yield label, partial(self.app.jump_to, kind), help_text
        if not self.app.config.read_only:
            screen = self.screen
            if isinstance(screen, ConsoleScreen) and screen.trigger_target() is not None:
                target = screen.trigger_target()
                yield (f"Trigger a playbook for {target.describe()}", screen.action_trigger,
                       "Choose a playbook, see its counts and preview, and confirm")
            verb = "Resume" if self.app.playbook_state.automatic_paused else "Pause"
            yield (f"{verb} automatic playbooks", self.app.action_toggle_automatic,
                   "The switch of every playbook that triggers on entry into its segment; recorded in the audit log")
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
    """The segops console over the cache at `cache_path`, set up by `config`. With a source URL it
    syncs in the background, and without one it only reads the cache. Unless the configuration is
    read-only, a dispatcher worker sends the outbox's due actions.

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
        config: Config,
        title_note: str | None = None,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__()
        self.cache_path = Path(cache_path)
        self.config = config
        # Epoch ms "now" for the status line, the sync, the runs and the explanations. Tests pass
        # a fixed clock.
        self.clock = clock
        if title_note:
            self.title = f"segops · {clean(title_note)}"
        # For bounded queries on the UI thread only, because workers open their own connections.
        self.db = open_cache(self.cache_path)
        self.sync_state = SyncState(source=display_url(config.source_url))
        self.dispatch_state = DispatchState()
        self.playbook_state = PlaybookState(
            read_only=config.read_only,
            automatic_paused=runs.automatic_paused(self.db),
            on_entry=sum(1 for playbook in config.playbooks.values() if playbook.on_entry),
        )
        self._delays = backoff_delays()
        self._sync_timer: Timer | None = None
        self._dispatch_timer: Timer | None = None
        self._dispatch_delay = config.dispatch.interval_seconds
        # Set when a pass is wanted while one runs, such as after a trigger: the next starts at once.
        self._dispatch_again = False

    @property
    def settings(self) -> Settings:
        """The taxonomy, thresholds and plans of the configuration."""
        return self.config.settings

    @property
    def stale_after(self) -> float:
        """Seconds without a new message after which a sync marks its snapshot stale."""
        return self.config.stale_after

    @contextmanager
    def database(self) -> Iterator[sqlite_utils.Database]:
        """Open a new connection to the cache for the calling thread, and close it on exit."""
        db = open_cache(self.cache_path)
        try:
            yield db
        finally:
            db.conn.close()

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """Open a new connection to the cache for the calling thread, and close it on exit."""
        with self.database() as db:
            yield db.conn

    def get_default_screen(self) -> Screen:
        return DashboardScreen()

    def on_mount(self) -> None:
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
        if self.config.source_url is not None:
            self.start_sync()
        if not self.config.read_only:
            self.start_dispatch()

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

    def open_actions_log(self, crumbs: tuple[str, ...]) -> None:
        self.push_screen(ActionsLogScreen(crumbs))

    def open_health(self, crumbs: tuple[str, ...]) -> None:
        self.push_screen(HealthScreen(self.config.reporting, crumbs))

    async def jump_to(self, kind: str, key: str | None = None) -> None:
        """Go back to the dashboard and open from there a segment, a user or an account named by
        `key`, or the flow, quarantine, actions log or health screen."""
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        crumbs = ("Dashboard",)
        if kind == "flow":
            self.open_flow(crumbs)
        elif kind == "quarantine":
            self.open_quarantine(crumbs)
        elif kind == "actions":
            self.open_actions_log(crumbs)
        elif kind == "health":
            self.open_health(crumbs)
        else:
            opener = {"segment": self.open_segment, "user": self.open_user, "account": self.open_account}[kind]
            opener(key, crumbs)

    def action_help(self) -> None:
        """Show the keys of the screen under the help, with their descriptions."""
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    # Playbook triggers.

    def choose_playbook(self, target: TriggerTarget) -> None:
        """Open the playbook chooser for `target`, then the confirmation of the chosen playbook.
        Does nothing in read-only mode."""
        if self.config.read_only:
            return
        playbooks = list(self.config.playbooks.values())
        if not playbooks:
            self.notify("No playbook is configured: add a [playbooks.<id>] table to the configuration.",
                        severity="warning")
            return

        def chosen(playbook: Playbook | None) -> None:
            if playbook is not None:
                self.push_screen(RunConfirmScreen(playbook, target), self.run_written)

        self.push_screen(PlaybookChooserScreen(target, playbooks, self.config.destinations), chosen)

    def run_written(self, run: runs.Run | None) -> None:
        """Announce a run that the confirmation screen wrote, and send its actions soon."""
        if run is None:
            return
        counts = run.counts
        what = "Dry run" if run.dry_run else "Run"
        excluded = counts.excluded_cooldown + counts.excluded_rule
        self.notify(
            f"{counts.targeted:,} targeted, {counts.held_out:,} held out, {excluded:,} excluded, "
            f"{counts.queued:,} {'would be sent' if run.dry_run else 'to send'}",
            title=f"{what} {run.id} of {run.playbook} recorded", markup=False, timeout=8,
        )
        self.cache_changed("run")
        if not run.dry_run:
            self.dispatch_now()

    def action_toggle_automatic(self) -> None:
        """Pause automatic playbooks, or resume them. Does nothing in read-only mode."""
        if self.config.read_only:
            return
        self._switch_automatic(not self.playbook_state.automatic_paused)

    @work(thread=True, exclusive=True, group="pause", exit_on_error=False, name="pause switch")
    def _switch_automatic(self, paused: bool) -> None:
        with self.database() as db:
            runs.set_automatic_paused(db, paused, operator=operator_name(self.config), now=self.clock())
        self.post_message(AutomaticPauseChanged(paused, switched=True))

    def on_automatic_pause_changed(self, message: AutomaticPauseChanged) -> None:
        changed = message.paused != self.playbook_state.automatic_paused
        self.playbook_state.automatic_paused = message.paused
        if message.switched:
            state = "paused: no entry into a segment queues a run" if message.paused else "resumed"
            self.notify(f"Automatic playbooks {state}.", title="Audit log entry written", timeout=6)
        if changed or message.switched:
            self.refresh_bindings()
            self.cache_changed("pause")

    def automatic_pause_read(self, paused: bool) -> None:
        """Take the pause switch as a screen read it from the cache, where `segops` commands may
        have changed it."""
        if paused != self.playbook_state.automatic_paused:
            self.post_message(AutomaticPauseChanged(paused, switched=False))

    def on_automatic_runs_queued(self, message: AutomaticRunsQueued) -> None:
        for run in message.created:
            self.notify(f"{run.counts.queued:,} to send, {run.counts.held_out:,} held out",
                        title=f"Automatic run {run.id} of {run.playbook}", markup=False, timeout=6)
        self.cache_changed("run")
        self.dispatch_now()

    def cache_changed(self, what: str) -> None:
        """Tell every open screen that the cache changed: "sync" (a sync ended), "dispatch" (a
        dispatcher pass sent or failed something), "run" (a run was written) or "pause"."""
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen) and screen.is_mounted:
                screen.cache_changed(what)

    # The dispatcher.

    def start_dispatch(self) -> None:
        """Start one dispatcher pass on a worker thread. The next one is scheduled when it ends."""
        self._dispatch_timer = None
        self._dispatch_again = False
        self.dispatch_state.running = True
        self._dispatch()

    def dispatch_now(self) -> None:
        """Start a dispatcher pass at once, or right after the one that is running."""
        if self.config.read_only:
            return
        if self.dispatch_state.running:
            self._dispatch_again = True
            return
        if self._dispatch_timer is not None:
            self._dispatch_timer.stop()
        self.start_dispatch()

    @work(thread=True, exclusive=True, group="dispatch", exit_on_error=False, name="dispatcher")
    def _dispatch(self) -> None:
        worker = get_current_worker()
        try:
            with self.database() as db:
                # Set when the app exits, so that the pass stops after the current action.
                report = dispatch_once(db, self.config, clock=self.clock, stop=worker.cancelled_event)
        except Exception as error:
            # A locked or unreadable cache must reach the status line, not end the worker silently.
            logger.exception("dispatcher pass failed")
            self.post_message(DispatchFailed(f"{type(error).__name__}: {error}"))
        else:
            self.post_message(DispatchFinished(report))

    def on_dispatch_finished(self, message: DispatchFinished) -> None:
        state = self.dispatch_state
        state.running = False
        state.finished_at = self.clock()
        state.error = state.failed_at = state.retry_at = None
        state.add(message.report)
        self._dispatch_delay = self.config.dispatch.interval_seconds
        self._schedule_dispatch(0 if self._dispatch_again else self._dispatch_delay)
        if message.report.attempted or message.report.recovered:
            self.cache_changed("dispatch")
        self._dashboard_status()

    def on_dispatch_failed(self, message: DispatchFailed) -> None:
        # Each failure in a row doubles the wait, up to the dispatcher's longest backoff.
        settings = self.config.dispatch
        self._dispatch_delay = min(max(self._dispatch_delay * 2, settings.interval_seconds),
                                   settings.backoff_max_seconds)
        state = self.dispatch_state
        state.running = False
        state.error = message.error
        state.failed_at = self.clock()
        state.retry_at = state.failed_at + int(self._dispatch_delay * 1000)
        logger.warning("dispatcher pass failed, next in %.1f s: %s", self._dispatch_delay, message.error)
        self._schedule_dispatch(self._dispatch_delay)
        self._dashboard_status()

    def _schedule_dispatch(self, delay: float) -> None:
        if self._dispatch_timer is not None:
            self._dispatch_timer.stop()
        self._dispatch_timer = self.set_timer(delay, self.start_dispatch, name="next dispatcher pass")

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
        if self.config.source_url is None:
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
            with HttpSource(self.config.source_url, self.config.write_key or "") as source:
                report = sync_once(
                    db, source, self.settings,
                    progress=lambda report: self.post_message(SyncProgressed(report.pages, report.result.read)),
                    clock=self.clock,
                    # Set when the app exits, so that the worker stops after the current page.
                    stop=worker.cancelled_event,
                    stale_after_ms=int(self.stale_after * 1000),
                    after_evaluation=self._queue_automatic,
                )
            backfilling = report.first and self.config.backfill_days > 0 and not worker.is_cancelled
            self.post_message(SyncFinished(report, backfilling=backfilling))
        except SourceError as error:
            self.post_message(SyncFailed(
                str(error), retryable=error.retryable, retry_after=getattr(error, "retry_after", None)))
        except Exception as error:
            # A cache or database failure must reach the status line too, not end the worker silently.
            logger.exception("sync of %s failed", self.sync_state.source)
            self.post_message(SyncFailed(f"{type(error).__name__}: {error}", retryable=True))
        finally:
            if db is not None:
                db.conn.close()

    def _queue_automatic(self, db: sqlite_utils.Database, report: SyncReport, previous_evaluated_at: int | None) -> None:
        """Queue the runs of automatic playbooks for the entries of this sync's evaluation. Runs on
        the sync worker's thread, with its connection."""
        if previous_evaluated_at is None:
            return  # A first evaluation finds its members: no entry to react to.
        created = queue_entries(db, self.config, previous_evaluated_at, stale=report.stale, now=self.clock())
        if created:
            self.post_message(AutomaticRunsQueued(created))

    @work(thread=True, exclusive=True, group="backfill", exit_on_error=False, name="backfill")
    def _backfill(self) -> None:
        """Compute the past daily snapshots on a worker of its own, so that syncs go on meanwhile."""
        worker = get_current_worker()

        def on_day(done: int, total: int) -> None:
            if worker.is_cancelled:
                raise _Stopped
            self.post_message(BackfillProgressed(done, total))

        db = open_cache(self.cache_path)
        try:
            days = backfill(db, self.settings, self.config.backfill_days, now=self.clock(), progress=on_day)
            self.post_message(BackfillFinished(days))
        except _Stopped:
            logger.info("backfill stopped because the console exits")
        finally:
            db.conn.close()

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
            state.backfill = (0, self.config.backfill_days)
            self._backfill()
        state.running = False
        self._schedule_sync(self.config.sync_interval)
        self._dashboard_sync_changed(ended=True)
        self.cache_changed("sync")

    def on_backfill_progressed(self, message: BackfillProgressed) -> None:
        self.sync_state.backfill = (message.done, message.total)
        self._dashboard_sync_changed(ended=False)

    def on_backfill_finished(self, message: BackfillFinished) -> None:
        self.sync_state.backfill = None
        logger.info("backfilled %d days of snapshots", message.days)
        self._dashboard_sync_changed(ended=True)
        # New snapshots change the trends the way a sync does.
        self.cache_changed("sync")

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

    def _dashboard_status(self) -> None:
        dashboard = self.screen_stack[0] if self.screen_stack else None
        if isinstance(dashboard, DashboardScreen) and dashboard.is_mounted:
            dashboard.show_status()

    def _dashboard_sync_changed(self, ended: bool) -> None:
        dashboard = self.screen_stack[0] if self.screen_stack else None
        if isinstance(dashboard, DashboardScreen) and dashboard.is_mounted:
            dashboard.sync_changed(ended)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Hidden, not only refused: in read-only mode no key, help line or palette entry offers it.
        if action in WRITE_ACTIONS and self.config.read_only:
            return False
        return True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.show_worker_error(event.worker)

    def show_worker_error(self, worker: Worker) -> None:
        """Log a worker's unexpected failure and show it as an error notification."""
        error = worker.error
        logger.error("worker %s failed", worker.name, exc_info=error)
        self.notify(f"{type(error).__name__}: {clean(error)}", title=f"{worker.name} failed",
                    severity="error", markup=False, timeout=10)
