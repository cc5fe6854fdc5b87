"""The dashboard's status line: source, last sync and its result, lag, cache counts, and the state
of the dispatcher and of automatic playbooks."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from console.app.widgets.text import age, clean, count, moment, number
from console.dispatch import DispatchReport
from console.sync import SyncReport
from store.queries import CacheStatus, lag_ms


@dataclass
class SyncState:
    """The state of the app's own sync worker. Times are epoch ms of the app's clock."""

    # The source's URL without credentials, or None when the console only reads the cache.
    source: str | None
    running: bool = False
    pages: int = 0
    read: int = 0
    finished_at: int | None = None
    report: SyncReport | None = None
    error: str | None = None
    failed_at: int | None = None
    retry_at: int | None = None
    # (days done, days to do) while the first sync of a cache computes past daily snapshots.
    backfill: tuple[int, int] | None = None

    @property
    def failed(self) -> bool:
        """Whether the latest sync attempt of this app failed."""
        return self.error is not None


@dataclass
class DispatchState:
    """The state of the app's dispatcher worker. Times are epoch ms of the app's clock; the totals
    count every pass since the console started."""

    running: bool = False
    finished_at: int | None = None
    report: DispatchReport | None = None
    sent: int = 0
    notices: int = 0
    retried: int = 0
    failed: int = 0
    error: str | None = None
    failed_at: int | None = None
    retry_at: int | None = None

    def add(self, report: DispatchReport) -> None:
        """Count a finished pass in the totals."""
        self.report = report
        self.sent += report.sent
        self.notices += report.notices
        self.retried += report.retried
        self.failed += report.failed


@dataclass
class PlaybookState:
    """The playbook facts of the status line: read-only mode, the pause switch of automatic
    playbooks, and how many playbooks trigger on entry."""

    read_only: bool = False
    automatic_paused: bool = False
    on_entry: int = 0


def feed_is_stale(state: SyncState, status: CacheStatus | None) -> bool:
    """Return whether the populations on screen may be out of date: the latest sync failed.

    Before the app's first sync ends, the latest attempt stored in the cache decides.
    """
    if state.failed:
        return True
    if state.finished_at is not None or status is None or not status.sources:
        return False
    return status.sources[0].last_error is not None


class StatusLine(Static):
    """Three lines at the bottom of the dashboard, refreshed by `show` every second."""

    def show(self, state: SyncState, status: CacheStatus | None, now: int,
             dispatch: DispatchState | None = None, playbooks: PlaybookState | None = None) -> None:
        """Render the status from the app's sync state, the latest cache status, and the state of
        the dispatcher and of playbooks."""
        lines = [self._sync_line(state, status, now), self._cache_line(status, now)]
        if playbooks is not None:
            lines.append(self._playbook_line(dispatch or DispatchState(), playbooks, now))
        self.update(Text("\n").join(lines))

    def _sync_line(self, state: SyncState, status: CacheStatus | None, now: int) -> Text:
        line = Text(no_wrap=False, end="")
        line.append("source ", style="dim")
        if state.source is None:
            line.append("no source configured", style="yellow")
            line.append(" (reading the cache only)", style="dim")
        else:
            line.append(clean(state.source), style="bold")
            if state.running:
                line.append("  ⟳ backfilling" if state.backfill is not None else "  ⟳ syncing", style="yellow")
        line.append("  │  ", style="dim")

        if state.failed:
            line.append("last sync failed", style="bold red")
            line.append(f" {moment(state.failed_at)} ({age(now - state.failed_at)} ago): ", style="red")
            line.append(clean(state.error), style="red")
            if state.retry_at is not None and not state.running:
                line.append(f"  retry in {age(max(0, state.retry_at - now))}", style="dim")
        elif state.report is not None:
            report = state.report
            result = report.result
            line.append("last sync ", style="dim")
            line.append(f"{moment(state.finished_at)} ({age(now - state.finished_at)} ago)")
            line.append(" ok", style="green")
            line.append(f" in {report.seconds:.1f} s: {count(report.pages, 'page')}, {result.read:,} read,"
                        f" {result.stored:,} new")
            # The cache line counts both over all syncs, so here they show only when this sync had some.
            for total, label in ((result.duplicates, "duplicates"), (result.quarantined, "quarantined")):
                if total:
                    line.append(f", {total:,} {label}", style="yellow")
        else:
            line.append_text(self._stored_sync(status, now))
        return line

    @staticmethod
    def _stored_sync(status: CacheStatus | None, now: int) -> Text:
        """Describe the latest sync recorded in the cache, by this app or by `segops sync`."""
        if status is None:
            return Text("reading the cache…", style="dim")
        if not status.sources:
            return Text("never synced", style="dim")
        source = status.sources[0]
        text = Text()
        if source.last_error is not None:
            text.append("last sync failed", style="bold red")
            text.append(f" {moment(source.last_attempt_at)} ({clean(source.name)}): ", style="red")
            text.append(clean(source.last_error), style="red")
        elif source.last_success_at is not None:
            text.append("last sync ", style="dim")
            text.append(f"{moment(source.last_success_at)} ({age(now - source.last_success_at)} ago)")
            text.append(f" from {clean(source.name)}", style="dim")
        else:
            text.append("never synced", style="dim")
        return text

    @staticmethod
    def _cache_line(status: CacheStatus | None, now: int) -> Text:
        line = Text(end="")
        if status is None:
            return line
        lag = lag_ms(status, now)
        line.append("lag ", style="dim")
        line.append("no messages yet" if lag is None else age(lag))
        for label, total in (
            ("messages cached", status.messages),
            ("quarantined", status.quarantined),
            ("duplicates", status.duplicates),
        ):
            line.append("  │  ", style="dim")
            style = "yellow" if label == "quarantined" and total else ""
            line.append(number(total), style=style or "bold")
            line.append(f" {label}", style="dim")
        if status.evaluated_at is not None:
            line.append("  │  ", style="dim")
            line.append("segments evaluated ", style="dim")
            line.append(moment(status.evaluated_at))
        return line

    @staticmethod
    def _playbook_line(dispatch: DispatchState, playbooks: PlaybookState, now: int) -> Text:
        line = Text(end="")
        if playbooks.read_only:
            line.append("read-only", style="bold yellow")
            line.append(": no trigger, no dispatcher, no automatic playbooks", style="dim")
            return line

        line.append("dispatcher ", style="dim")
        if dispatch.error is not None:
            line.append("failed", style="bold red")
            line.append(f" {moment(dispatch.failed_at)} ({age(now - dispatch.failed_at)} ago): ", style="red")
            line.append(clean(dispatch.error), style="red")
            if dispatch.retry_at is not None and not dispatch.running:
                line.append(f"  retry in {age(max(0, dispatch.retry_at - now))}", style="dim")
        elif dispatch.finished_at is None:
            line.append("⟳ first pass" if dispatch.running else "not started", style="dim")
        else:
            line.append("⟳ sending" if dispatch.running else "idle", style="yellow" if dispatch.running else "")
            line.append(f", last pass {age(now - dispatch.finished_at)} ago", style="dim")
            line.append("  │  since start ", style="dim")
            line.append(f"{dispatch.sent:,} sent, {count(dispatch.notices, 'held-out notice')}, "
                        f"{dispatch.retried:,} retried, ")
            line.append(f"{dispatch.failed:,} failed", style="red" if dispatch.failed else "")
            report = dispatch.report
            for name, reason in (report.not_configured.items() if report is not None else ()):
                line.append(f"  not sent to {clean(name)}: ", style="yellow")
                line.append(clean(reason), style="yellow")

        line.append("  │  ", style="dim")
        line.append("automatic playbooks ", style="dim")
        if playbooks.automatic_paused:
            line.append("paused", style="bold yellow")
        elif playbooks.on_entry:
            line.append(f"on ({count(playbooks.on_entry, 'playbook')} on entry)", style="green")
        else:
            line.append("none on entry", style="dim")
        return line
