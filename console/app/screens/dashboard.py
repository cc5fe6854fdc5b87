"""The dashboard: every segment's population and trend, and the status of the sync."""

from __future__ import annotations

import time

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from console.app.screens.base import ConsoleScreen
from console.app.widgets.sparkline import sparkline
from console.app.widgets.status import StatusLine, feed_is_stale
from console.app.widgets.text import change, count, number
from store import segments as seg
from store.queries import CacheStatus, SegmentRow, cache_status, segment_rows
from store.runs import automatic_paused

# Daily points shown in the trend column, one cell each.
TREND_WIDTH = 30
# During a long sync, the cache counts are re-read at most this often, in seconds.
PROGRESS_RELOAD_SECONDS = 3.0
# Column key, header label and width in cells of both segment panels.
COLUMNS = (
    ("segment", "Segment", 26),
    ("population", "Population", 14),
    ("prev", "Δ prev", 9),
    ("day", "Δ 24h", 9),
    ("week", "Δ 7d", 9),
    ("trend", "Trend", TREND_WIDTH),
    ("entity", "Entity", 8),
)


class DashboardLoaded(Message):
    """The dashboard's queries finished on a worker thread."""

    def __init__(self, rows: list[SegmentRow], status: CacheStatus, paused: bool) -> None:
        super().__init__()
        self.rows = rows
        self.status = status
        # The pause switch of automatic playbooks, which `segops` commands can set too.
        self.paused = paused


class SegmentTable(DataTable):
    """One panel of segments. Enter opens the highlighted segment."""

    BINDINGS = [Binding("enter", "select_cursor", "Open segment", id="dashboard.open")]

    def __init__(self, definitions: tuple[seg.SegmentDefinition, ...], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.definitions = definitions

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)
        for definition in self.definitions:
            self.add_row(
                Text(definition.name, style="bold"), Text("…", style="dim"), "", "", "", "",
                Text(f"{definition.entity}s", style="dim"), key=definition.name,
            )

    def show(self, rows: dict[str, SegmentRow], stale: bool, evaluated: bool) -> None:
        """Update the population cells in place, so the cursor stays where it is.

        Before the first evaluation, a count of 0 would read as an empty segment, so it is not shown.
        """
        for definition in self.definitions:
            row = rows.get(definition.name)
            if row is None:
                continue
            population = _population(row, stale) if evaluated else Text("not evaluated", style="dim")
            self.update_cell(definition.name, "population", population)
            self.update_cell(definition.name, "prev", change(
                None if row.previous is None else row.population - row.previous))
            self.update_cell(definition.name, "day", change(row.change_24h))
            self.update_cell(definition.name, "week", change(row.change_7d))
            self.update_cell(definition.name, "trend", Text(
                sparkline(row.history, TREND_WIDTH), style="dim" if stale or row.stale else "cyan"))


def _population(row: SegmentRow, stale: bool) -> Text:
    if stale or row.stale:
        return Text.assemble((number(row.population), "dim"), (" stale", "dim italic yellow"))
    return Text(number(row.population), style="bold")


class DashboardScreen(ConsoleScreen):
    """The first screen: lifecycle and behavioral panels over the status line."""

    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="dashboard.refresh"),
        Binding("f", "open_flow", "Lifecycle flow", id="dashboard.flow"),
        Binding("x", "open_quarantine", "Quarantine", id="dashboard.quarantine"),
        Binding("A", "open_actions_log", "Actions log", id="dashboard.actions"),
        Binding("h", "open_health", "Health", id="dashboard.health"),
        Binding("p", "toggle_automatic", "Pause/resume automatic", id="dashboard.automatic",
                tooltip="Pause or resume every playbook that triggers on entry; recorded in the audit log"),
    ]

    def __init__(self) -> None:
        super().__init__(("Dashboard",))
        self.status: CacheStatus | None = None
        # When the latest load started, in time.monotonic() seconds.
        self._loaded_at = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="panels"):
            lifecycle = SegmentTable(seg.LIFECYCLE, id="lifecycle")
            lifecycle.border_title = "Lifecycle (each user in exactly one stage)"
            yield lifecycle
            behavioral = SegmentTable(seg.BEHAVIORAL, id="behavioral")
            behavioral.border_title = "Behavioral (users may be in several)"
            yield behavioral
            yield Static(id="segment-detail")
        yield Static(id="sync-progress")
        yield StatusLine(id="status-line")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#sync-progress").display = False
        self.show_status()
        self.load()
        # Once a second, so that the lag and "ago" times move with the clock.
        self.set_interval(1.0, self.show_status)

    def action_refresh(self) -> None:
        """Sync now when a source is configured and idle, else re-read the cache."""
        if not self.app.sync_now():
            self.load()

    def action_open_flow(self) -> None:
        self.app.open_flow(self.crumbs)

    def action_open_health(self) -> None:
        self.app.open_health(self.crumbs)

    def action_open_quarantine(self) -> None:
        self.app.open_quarantine(self.crumbs)

    def action_open_actions_log(self) -> None:
        self.app.open_actions_log(self.crumbs)

    def load(self) -> None:
        """Re-read the segments and the cache status."""
        self._loaded_at = time.monotonic()
        self._query()

    @work(thread=True, exclusive=True, group="dashboard", exit_on_error=False, name="dashboard query")
    def _query(self) -> None:
        # cache_status counts every message, too slow for the UI thread on a large cache.
        with self.app.database() as db:
            rows = segment_rows(db.conn)
            status = cache_status(db.conn)
            paused = automatic_paused(db)
        self.post_message(DashboardLoaded(rows, status, paused))

    def on_dashboard_loaded(self, message: DashboardLoaded) -> None:
        self.status = message.status
        self.app.automatic_pause_read(message.paused)
        self.show_populations(message.rows)
        self.show_status()

    def show_populations(self, rows: list[SegmentRow]) -> None:
        by_name = {row.name: row for row in rows}
        stale = feed_is_stale(self.app.sync_state, self.status)
        evaluated = self.status is not None and self.status.evaluated_at is not None
        for table in self.query(SegmentTable):
            table.show(by_name, stale, evaluated)

    def show_status(self) -> None:
        """Render the status line and the sync progress from the app's sync state."""
        state = self.app.sync_state
        self.query_one(StatusLine).show(state, self.status, self.app.clock(), self.app.dispatch_state,
                                        self.app.playbook_state)
        progress = self.query_one("#sync-progress", Static)
        # A sync of one page is the usual case every few seconds, and the status line marks it.
        # The progress line is for the first sync, for catching up after a pause and for the backfill.
        progress.display = state.running and (state.report is None or state.pages > 1 or state.backfill is not None)
        if state.backfill is not None:
            done, total = state.backfill
            progress.update(Text.assemble(
                ("⟳ computing past daily snapshots for the trends ", "bold"), f"{done:,} of {total:,} days"))
        elif progress.display:
            progress.update(Text.assemble(
                ("⟳ syncing ", "bold"), f"{count(state.pages, 'page')}, {count(state.read, 'message')} read so far"))

    def cache_changed(self, what: str) -> None:
        if what == "pause":
            self.show_status()

    def sync_changed(self, ended: bool) -> None:
        """Show a new sync state, and re-read the cache when a sync ended, failed or not.

        During a long sync, the cache counts are re-read at most every few seconds as pages arrive.
        """
        self.show_status()
        if ended or time.monotonic() - self._loaded_at >= PROGRESS_RELOAD_SECONDS:
            self.load()

    @on(DataTable.RowHighlighted)
    def table_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.has_focus:
            self.show_detail(event.data_table)

    @on(events.DescendantFocus)
    def table_focused(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, SegmentTable):
            self.show_detail(event.widget)

    def show_detail(self, table: DataTable) -> None:
        """Describe the segment under the cursor of `table`: its rule and intervention."""
        if table.row_count == 0:
            return
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        definition = seg.BY_NAME[str(row_key.value)]
        self.query_one("#segment-detail", Static).update(Text.assemble(
            (definition.name, "bold"), (f"  {definition.kind} segment of {definition.entity}s\n", "dim"),
            ("rule ", "dim"), definition.rule, ("\nintervention ", "dim"), definition.intervention,
        ))

    @on(DataTable.RowSelected)
    def open_segment(self, event: DataTable.RowSelected) -> None:
        self.app.open_segment(str(event.row_key.value), crumbs=("Dashboard",))
