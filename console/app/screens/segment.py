"""The segment screen: a segment's members, paged from the cache, sortable and filterable, and
who entered or left it lately."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from console.app.screens.base import ConsoleScreen, TriggerTarget
from console.app.widgets.columns import last_column_width
from console.app.widgets.text import change, clean, moment, number, plain
from store import segments as seg
from store.queries import ACCOUNT_SORTS, USER_SORTS, MemberPage, member_count, members_page, segment_movers
from store.db import open_cache
from store.settings import DAY_MS
from store.timeparse import format_ms

PAGE_SIZE = 100
# Pages kept in the table at once: the table is a window on the segment, never a copy of it.
MAX_PAGES = 3
# The next (or previous) page loads when the cursor comes this many rows near the window's edge.
LOAD_MARGIN = 20
# Typing in the filter applies it after this pause, in seconds, instead of a query per keystroke.
FILTER_DELAY = 0.3
# Movers listed per direction: the latest entries and the latest exits of the last 7 days.
MOVER_LIMIT = 50
# Width in cells of the movers' id column at most, so that the reason keeps most of the width.
MOVER_ID_WIDTH = 24
# Cells taken by the movers table's vertical scrollbar.
SCROLLBAR_WIDTH = 2

# Column key -> header label, for each entity.
USER_COLUMNS = {
    "id": "User", "email": "Email", "name": "Name", "lifecycle": "Lifecycle", "account_id": "Account",
    "last_active_at": "Last active", "usage_score": "Usage score", "features_30": "Features 30d",
    "signup_at": "Signed up", "since": "Member since",
}
ACCOUNT_COLUMNS = {
    "id": "Account", "name": "Name", "plan": "Plan", "seats_used": "Seats used", "seat_limit": "Seat limit",
    "teams": "Teams", "since": "Member since",
}
# Widths in cells of the columns whose values can be long. The others fit their content.
COLUMN_WIDTHS = {"email": 30, "name": 18}
TIME_COLUMNS = {"last_active_at"}
DATE_COLUMNS = {"signup_at", "since"}
NUMBER_COLUMNS = {"usage_score", "features_30", "seats_used", "seat_limit", "teams"}


class MembersLoaded(Message):
    """A page of members arrived from a worker thread."""

    def __init__(self, generation: int, index: int, page: MemberPage, population: int | None) -> None:
        super().__init__()
        self.generation = generation
        self.index = index
        self.page = page
        self.population = population


class PopulationCounted(Message):
    """The segment's population, counted again on a worker thread after a sync."""

    def __init__(self, population: int) -> None:
        super().__init__()
        self.population = population


class MoversLoaded(Message):
    """The segment's movers of the last 24 hours and of the last 7 days, from a worker thread."""

    def __init__(self, day: dict, week: dict) -> None:
        super().__init__()
        self.day = day
        self.week = week


@dataclass
class LoadedPage:
    """A page on screen and its position in the segment's current order, counted from 0."""

    index: int
    page: MemberPage


class FilterInput(Input):
    """The `/` filter. Enter applies it, Esc closes it and keeps what it applied."""

    BINDINGS = [Binding("escape", "close", "Close filter", id="segment.filter.close")]

    class Closed(Message):
        """The operator closed the filter input."""

    def action_close(self) -> None:
        self.post_message(self.Closed())


class MembersTable(DataTable):
    """The members of one segment, a few pages at a time."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", id="segment.open")]


class MoversTable(DataTable):
    """The latest entries and exits of the segment. Enter opens the mover."""

    BINDINGS = [Binding("enter", "select_cursor", "Open mover", id="segment.movers.open")]


class SegmentScreen(ConsoleScreen):
    """A segment's members. Enter opens a member: a user, or an account for account segments."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="segment.back"),
        Binding("slash", "filter", "Filter", id="segment.filter"),
        Binding("s", "cycle_sort", "Sort column", id="segment.sort"),
        Binding("S", "toggle_direction", "Sort direction", id="segment.direction"),
        Binding("r", "refresh", "Refresh", id="segment.refresh"),
        Binding("m", "switch_table", "Movers/members", id="segment.movers"),
        Binding("t", "trigger", "Trigger playbook", id="segment.trigger",
                tooltip="Trigger a playbook for every member of this segment"),
    ]

    AUTO_FOCUS = "#members"

    def __init__(self, segment: str, crumbs: tuple[str, ...]) -> None:
        super().__init__((*crumbs, segment))
        self.definition = seg.BY_NAME[segment]
        accounts = self.definition.entity == "account"
        columns = ACCOUNT_COLUMNS if accounts else USER_COLUMNS
        # Every member of a lifecycle segment has that stage, so its column would only repeat it.
        hidden = {"lifecycle"} if self.definition.kind == "lifecycle" else set()
        self.column_labels = {key: label for key, label in columns.items() if key not in hidden}
        self.sorts = [key for key in (ACCOUNT_SORTS if accounts else USER_SORTS) if key not in hidden]
        self.sort = "id"
        self.descending = False
        self.text = ""
        self.population: int | None = None
        # The `after` token that starts each page reached so far. starts[i] continues after page i - 1.
        self._starts: list[tuple | None] = [None]
        self._window: list[LoadedPage] = []
        self._generation = 0
        self._loading = False
        self._failed = False
        self._filter_timer: Timer | None = None
        # The entity id of each row of the movers table, by row index: one entity can move twice.
        self._mover_ids: list[str] = []
        # The movers of the last 7 days as segment_movers returns them, kept to redraw on a resize.
        self._movers: dict | None = None
        # Set when a sync ended while another screen, such as a run's confirmation, was on top.
        self._refresh_pending = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="segment-header")
        searched = "id or name" if self.definition.entity == "account" else "id, email or name"
        yield FilterInput(placeholder=f"filter by {searched}, ignoring case; Enter applies, Esc closes", id="filter")
        yield MembersTable(cursor_type="row", zebra_stripes=True, id="members")
        with Vertical(id="movers", classes="pane") as pane:
            pane.border_title = (
                f"Movers: the latest {MOVER_LIMIT} entries and the latest {MOVER_LIMIT} exits of the last 7 days")
            yield Static(Text("loading…", style="dim"), id="movers-counts")
            yield MoversTable(cursor_type="row", zebra_stripes=True, id="movers-table")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self._add_columns()
        self.reload()
        self.load_movers()

    # Loading.

    def reload(self) -> None:
        """Start again at the first page, after a change of sort or filter."""
        self._generation += 1
        self._starts = [None]
        self._window = []
        self._loading = True
        self._failed = False
        self._show_header()
        self._fetch(self._generation, 0, None, self._query(), count=self.population is None)

    def action_refresh(self) -> None:
        """Read the population and the first page again, after a sync changed the segment."""
        self.population = None
        self.reload()
        self.load_movers()

    def trigger_target(self) -> TriggerTarget:
        return TriggerTarget("segment", self.definition.name, frozenset({self.definition.name}))

    # The live refresh: after each sync, the population and the movers are read again. The member
    # rows stay as they are, so that the cursor does not move under the operator; `r` reloads them.

    def cache_changed(self, what: str) -> None:
        if what != "sync":
            return
        # Under a modal, such as the confirmation of a run for this segment, nothing reloads.
        if self.app.screen is not self:
            self._refresh_pending = True
            return
        self._refresh_live()

    def on_screen_resume(self) -> None:
        if self._refresh_pending:
            self._refresh_live()

    def _refresh_live(self) -> None:
        self._refresh_pending = False
        self._recount()
        self.load_movers()

    @work(thread=True, exclusive=True, group="population", exit_on_error=False, name="population count")
    def _recount(self) -> None:
        with self.app.reader() as connection:
            population = member_count(connection, self.definition.name)
        self.post_message(PopulationCounted(population))

    def on_population_counted(self, message: PopulationCounted) -> None:
        self.population = message.population
        self._show_header()

    def _request(self, index: int) -> None:
        if self._loading or index < 0 or index >= len(self._starts):
            return
        self._loading = True
        self._fetch(self._generation, index, self._starts[index], self._query(), count=False)

    def export_rows(self) -> tuple[list[str], object] | None:
        """Export the whole segment with the current sort and filter, read page by page in the
        export worker with its own connection, not just the pages loaded on screen."""
        focused = self.focused
        if isinstance(focused, DataTable) and focused.id != "members":
            return super().export_rows()
        query = self._query()
        segment = self.definition.name
        cache_path = self.app.cache_path
        columns = members_page(self.app.db.conn, segment, limit=1, **query).columns

        def rows():
            db = open_cache(cache_path)
            try:
                after = None
                while True:
                    page = members_page(db.conn, segment, after=after, limit=5_000, **query)
                    for record in page.rows:
                        yield [format_ms(record[name]) if name.endswith("_at") or name == "since" else record[name]
                               for name in columns]
                    if page.after is None:
                        return
                    after = page.after
            finally:
                db.conn.close()

        return columns, rows

    def _query(self) -> dict:
        return {"sort": self.sort, "descending": self.descending, "text": self.text or None}

    @work(thread=True, group="members", exit_on_error=False, name="member page query")
    def _fetch(self, generation: int, index: int, after: tuple | None, query: dict, count: bool) -> None:
        # A sort over a large segment can take longer than a frame, so pages load off the UI thread.
        with self.app.reader() as connection:
            page = members_page(connection, self.definition.name, after=after, limit=PAGE_SIZE, **query)
            population = member_count(connection, self.definition.name) if count else None
        self.post_message(MembersLoaded(generation, index, page, population))

    def on_members_loaded(self, message: MembersLoaded) -> None:
        if message.generation != self._generation:
            return
        self._loading = False
        if message.population is not None:
            self.population = message.population
        index = message.index
        if index + 1 == len(self._starts) and message.page.after is not None:
            self._starts.append(message.page.after)

        table = self.query_one(MembersTable)
        # Where the cursor is, and how far below the top of the view, so it stays put on screen.
        cursor_key = self._cursor_key(table)
        offset = table.cursor_row - round(table.scroll_y)
        loaded = LoadedPage(index, message.page)
        if not message.page.rows and self._window and index == self._window[-1].index + 1:
            # The last page was full, so the page after it came back empty.
            self._window[-1].page.after = None
            del self._starts[index:]
            self._show_header()
            return
        if not self._window:
            self._window = [loaded]
        elif index == self._window[-1].index + 1:
            self._window.append(loaded)
            if len(self._window) > MAX_PAGES:
                self._window.pop(0)
        elif index == self._window[0].index - 1:
            self._window.insert(0, loaded)
            if len(self._window) > MAX_PAGES:
                self._window.pop()
        else:
            return
        self._fill(table, cursor_key, offset)
        self._show_header()

    def _fill(self, table: DataTable, cursor_key: str | None, offset: int) -> None:
        # Clearing moves the cursor to the top, and that highlight must not load the previous page.
        with self.prevent(DataTable.RowHighlighted):
            self._refill(table, cursor_key, offset)

    def _refill(self, table: DataTable, cursor_key: str | None, offset: int) -> None:
        table.clear()
        keys: dict[str, int] = {}
        for loaded in self._window:
            for record in loaded.page.rows:
                # A sync between two page loads can move a member across the page boundary.
                if record["id"] in keys:
                    continue
                keys[record["id"]] = len(keys)
                table.add_row(*(self._cell(column, record.get(column)) for column in self.column_labels),
                              key=record["id"])
        row = keys.get(cursor_key, 0)
        table.move_cursor(row=row, scroll=False)
        self.call_after_refresh(table.scroll_to, y=max(0, row - max(0, offset)), animate=False)

    @staticmethod
    def _cursor_key(table: DataTable) -> str | None:
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _cell(self, column: str, value: object) -> Text:
        if value is None:
            return Text("", end="")
        if column in TIME_COLUMNS:
            return Text(moment(value)[:16], end="")
        if column in DATE_COLUMNS:
            return Text(moment(value)[:10], end="")
        if column in NUMBER_COLUMNS:
            return Text(number(value), justify="right", end="")
        return plain(value)

    @on(Worker.StateChanged)
    def page_failed(self, event: Worker.StateChanged) -> None:
        # ConsoleScreen shows the error, and the header stops saying "loading…".
        if event.state == WorkerState.ERROR and event.worker.group == "members":
            self._loading = False
            self._failed = True
            self._show_header()

    @on(DataTable.RowHighlighted, "#members")
    def load_near_edges(self, event: DataTable.RowHighlighted) -> None:
        if not self._window or self._loading:
            return
        table = event.data_table
        if event.cursor_row >= table.row_count - LOAD_MARGIN and self._window[-1].page.after is not None:
            self._request(self._window[-1].index + 1)
        elif event.cursor_row < LOAD_MARGIN and self._window[0].index > 0:
            self._request(self._window[0].index - 1)

    # Drilling down.

    @on(DataTable.RowSelected, "#members")
    def open_member(self, event: DataTable.RowSelected) -> None:
        self._open(str(event.row_key.value))

    @on(DataTable.RowSelected, "#movers-table")
    def open_mover(self, event: DataTable.RowSelected) -> None:
        self._open(self._mover_ids[event.cursor_row])

    def _open(self, entity_id: str) -> None:
        if self.definition.entity == "account":
            self.app.open_account(entity_id, self.crumbs)
        else:
            self.app.open_user(entity_id, self.crumbs)

    def action_switch_table(self) -> None:
        """Move the focus between the members and the movers."""
        movers = self.query_one(MoversTable)
        if movers.has_focus:
            self.query_one(MembersTable).focus()
        elif movers.display:
            movers.focus()
        else:
            self.notify("No one entered or left this segment in the last 7 days.")

    # Movers.

    def load_movers(self) -> None:
        """Read the entries and exits of the last 24 hours and 7 days, as of the app's clock."""
        self._query_movers(self.app.clock())

    @work(thread=True, exclusive=True, group="movers", exit_on_error=False, name="movers query")
    def _query_movers(self, now: int) -> None:
        with self.app.reader() as connection:
            day = segment_movers(connection, self.definition.name, now - DAY_MS, limit=0)
            week = segment_movers(connection, self.definition.name, now - 7 * DAY_MS, limit=MOVER_LIMIT)
        self.post_message(MoversLoaded(day, week))

    def on_movers_loaded(self, message: MoversLoaded) -> None:
        counts = Text(end="")
        for index, (label, movers) in enumerate((("last 24 hours", message.day), ("last 7 days", message.week))):
            if index:
                counts.append("  │  ", style="dim")
            counts.append(f"{label}: ", style="dim")
            counts.append_text(change(movers["entered_count"]))
            counts.append(" entered, ", style="dim")
            counts.append_text(change(-movers["left_count"]))
            counts.append(" left", style="dim")
        if not message.week["entered"] and not message.week["left"]:
            counts.append("  │  no one entered or left in the last 7 days", style="dim")
        self.query_one("#movers-counts", Static).update(counts)
        self._show_movers(message.week)

    def on_resize(self) -> None:
        if self._movers is not None:
            self._show_movers(self._movers)

    def _show_movers(self, week: dict) -> None:
        self._movers = week
        moves = [(row, True) for row in week["entered"]] + [(row, False) for row in week["left"]]
        # Entries and exits come as two lists, each newest first, so they are merged by time here.
        moves.sort(key=lambda move: move[0]["at"], reverse=True)
        table = self.query_one(MoversTable)
        table.display = bool(moves)
        table.clear(columns=True)

        entity = "Account" if self.definition.entity == "account" else "User"
        id_width = min(MOVER_ID_WIDTH, max((len(clean(row["id"])) for row, _ in moves), default=0))
        widths = {"at": 19, "change": 7, "id": max(id_width, len(entity))}
        widths["reason"] = last_column_width(table, list(widths.values()), SCROLLBAR_WIDTH)
        for key, label in (("at", "At (UTC)"), ("change", "Change"), ("id", entity), ("reason", "Reason")):
            table.add_column(label, key=key, width=widths[key])

        self._mover_ids = []
        for row, entered in moves:
            self._mover_ids.append(row["id"])
            # The reason wraps, because it is the part of a move that explains it.
            table.add_row(
                Text(moment(row["at"]), end=""),
                Text("entered", style="green", end="") if entered else Text("left", style="red", end=""),
                plain(row["id"], style="bold"),
                plain(row["reason"]),
                height=None,
            )

    # Sorting and filtering.

    def _add_columns(self) -> None:
        table = self.query_one(MembersTable)
        table.clear(columns=True)
        for key, label in self.column_labels.items():
            if key == self.sort:
                label = f"{label} {'▼' if self.descending else '▲'}"
            table.add_column(Text(label, style="bold" if key == self.sort else ""), key=key,
                             width=COLUMN_WIDTHS.get(key))

    def _resort(self) -> None:
        self._add_columns()
        self.reload()

    def action_cycle_sort(self) -> None:
        self.sort = self.sorts[(self.sorts.index(self.sort) + 1) % len(self.sorts)]
        self._resort()

    def action_toggle_direction(self) -> None:
        self.descending = not self.descending
        self._resort()

    @on(DataTable.HeaderSelected, "#members")
    def sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        if column not in self.sorts:
            self.notify(f"The {self.column_labels[column]} column cannot be sorted.", severity="warning")
            return
        if column == self.sort:
            self.descending = not self.descending
        else:
            self.sort, self.descending = column, False
        self._resort()

    def action_filter(self) -> None:
        field = self.query_one(FilterInput)
        field.add_class("-open")
        field.focus()

    @on(Input.Changed, "#filter")
    def filter_typed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, self._apply_filter)

    @on(Input.Submitted, "#filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter()
        self.query_one(MembersTable).focus()

    @on(FilterInput.Closed)
    def filter_closed(self) -> None:
        field = self.query_one(FilterInput)
        field.set_class(bool(self.text), "-open")
        self.query_one(MembersTable).focus()

    def _apply_filter(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        text = self.query_one(FilterInput).value.strip()
        if text != self.text:
            self.text = text
            self.reload()

    # The header.

    def _show_header(self) -> None:
        definition = self.definition
        header = Text(end="")
        header.append(definition.name, style="bold")
        header.append(f"  {definition.kind} segment of {definition.entity}s", style="dim")
        header.append("  │  population ", style="dim")
        header.append("…" if self.population is None else number(self.population), style="bold")
        header.append("\nrule ", style="dim")
        header.append(definition.rule)
        header.append("\nintervention ", style="dim")
        header.append(definition.intervention)
        header.append("\nsort ", style="dim")
        header.append(f"{self.column_labels[self.sort]} {'descending' if self.descending else 'ascending'}")
        header.append("  │  filter ", style="dim")
        if self.text:
            header.append_text(plain(self.text, style="bold"))
        else:
            header.append("none", style="dim")
        header.append("  │  ", style="dim")
        header.append(self._window_text())
        self.query_one("#segment-header", Static).update(header)

    def _window_text(self) -> str:
        if self._failed and not self._window:
            return "loading failed"
        if self._loading and not self._window:
            return "loading…"
        rows = sum(len(loaded.page.rows) for loaded in self._window)
        if rows == 0:
            return "no members match" if self.text else "no members"
        first = self._window[0].index * PAGE_SIZE + 1
        more = "" if self._window[-1].page.after is None else ", more below"
        return f"rows {first:,}–{first + rows - 1:,} loaded{more}"
