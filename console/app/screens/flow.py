"""The lifecycle flow: how many users went from each stage N days ago to each stage now."""

from __future__ import annotations

import sqlite3

import orjson
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from console.app.screens.base import ConsoleScreen
from console.app.widgets.text import count, moment, number, plain
from store import segments as seg
from store.engine import NOT_YET_SEEN, lifecycle_flow
from store.settings import DAY_MS

# The look-back windows in days; `w` switches between them.
WINDOWS = (7, 30)
# Users listed for one cell of the matrix, so that a cell of a million users stays quick.
USER_LIMIT = 500
# Key of the row and the column that add up the others.
TOTAL = "Total"
STAGES = tuple(definition.name for definition in seg.LIFECYCLE)
CELL_WIDTH = 12

Flow = dict[tuple[str, str], list[str]]


class FlowComputed(Message):
    """The lifecycle flow over `days` days up to `t`, computed on a worker thread."""

    def __init__(self, days: int, t: int, flow: Flow) -> None:
        super().__init__()
        self.days = days
        self.t = t
        self.flow = flow


def cell_users(flow: Flow, before: str, now: str) -> list[str]:
    """Return the sorted ids of the users in one cell of the matrix; TOTAL matches every stage."""
    users = [
        user_id
        for (stage_before, stage_now), ids in flow.items()
        if before in (TOTAL, stage_before) and now in (TOTAL, stage_now)
        for user_id in ids
    ]
    return sorted(users)


def user_rows(connection: sqlite3.Connection, user_ids: list[str]) -> list[dict]:
    """Return each user's email, name and last activity from the latest evaluation, in the order of
    `user_ids`. A user the latest evaluation did not cover gets empty fields."""
    found = {
        row[0]: row
        for row in connection.execute(
            "SELECT user_id, email, name, last_active_at FROM user_facts"
            " WHERE user_id IN (SELECT value FROM json_each(?))",
            (orjson.dumps(user_ids).decode(),),
        )
    }
    rows = []
    for user_id in user_ids:
        _, email, name, last_active_at = found.get(user_id, (user_id, None, None, None))
        rows.append({"id": user_id, "email": email, "name": name, "last_active_at": last_active_at})
    return rows


class FlowMatrix(DataTable):
    """Users per (stage N days ago, stage now). Enter lists the users of the cell."""

    BINDINGS = [Binding("enter", "select_cursor", "List users", id="flow.cell")]


class FlowUsers(DataTable):
    """The users of the chosen cell. Enter opens one, Esc returns to the matrix."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Open user", id="flow.user"),
        Binding("escape", "close", "Back to the matrix", id="flow.users.close"),
    ]

    def action_close(self) -> None:
        self.screen.query_one(FlowMatrix).focus()


class FlowScreen(ConsoleScreen):
    """The lifecycle flow over 7 or 30 days, as a matrix of stage before by stage now."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="flow.back"),
        Binding("w", "switch_window", "7 or 30 days", id="flow.window"),
        Binding("r", "refresh", "Recompute", id="flow.refresh"),
    ]

    AUTO_FOCUS = "#flow-matrix"

    def __init__(self, crumbs: tuple[str, ...]) -> None:
        super().__init__((*crumbs, "Lifecycle flow"))
        self.days = WINDOWS[0]
        # days -> (evaluation time, flow), so that switching back to a window needs no new evaluation.
        self._flows: dict[int, tuple[int, Flow]] = {}
        self._computing: set[int] = set()
        # The (stage before, stage now) whose users are listed.
        self._cell: tuple[str, str] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="flow-header", classes="summary")
        matrix = FlowMatrix(id="flow-matrix", cursor_type="cell")
        matrix.border_title = "Stage then ↓   stage now →"
        yield matrix
        with Vertical(id="flow-users-pane", classes="pane") as pane:
            pane.border_title = "Users"
            yield Static(Text("Enter on a cell lists its users.", style="dim"), id="flow-users-note")
            yield FlowUsers(id="flow-users", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        matrix = self.query_one(FlowMatrix)
        for stage in (*STAGES, TOTAL):
            matrix.add_column(Text(stage, style="bold", justify="right"), key=stage, width=CELL_WIDTH)
        users = self.query_one(FlowUsers)
        for key, label in (("id", "User"), ("email", "Email"), ("name", "Name"), ("last_active_at", "Last active")):
            users.add_column(label, key=key)
        users.display = False
        self.show()

    # Computing.

    def show(self) -> None:
        """Show the flow of the current window, computing it first when it is not there yet."""
        computed = self._flows.get(self.days)
        matrix = self.query_one(FlowMatrix)
        if computed is None:
            matrix.loading = True
            self._show_header(None)
            if self.days not in self._computing:
                self._computing.add(self.days)
                self._compute(self.days, self.app.clock())
            return
        matrix.loading = False
        self._fill(matrix, computed[1])
        self._show_header(computed)
        # A loading widget counts as disabled, so its keys were inactive: refresh the Footer's bindings.
        self.refresh_bindings()

    @work(thread=True, group="flow", exit_on_error=False, name="lifecycle flow")
    def _compute(self, days: int, t: int) -> None:
        # Two full evaluations of the cache, which take seconds on a large one.
        with self.app.reader() as connection:
            flow = lifecycle_flow(connection, self.app.settings, t, days)
        self.post_message(FlowComputed(days, t, flow))

    def on_flow_computed(self, message: FlowComputed) -> None:
        self._computing.discard(message.days)
        self._flows[message.days] = (message.t, message.flow)
        if message.days == self.days:
            self.show()

    @on(Worker.StateChanged)
    def compute_failed(self, event: Worker.StateChanged) -> None:
        # ConsoleScreen shows the error; here the matrix stops loading and the header says so.
        if event.state == WorkerState.ERROR and event.worker.group == "flow":
            self._computing.clear()
            self.query_one(FlowMatrix).loading = False
            self.query_one("#flow-header", Static).update(Text(
                f"Computing the lifecycle flow over {self.days} days failed; r tries again.", style="red"))

    def action_switch_window(self) -> None:
        self.days = WINDOWS[(WINDOWS.index(self.days) + 1) % len(WINDOWS)]
        self._close_users()
        self.show()

    def action_refresh(self) -> None:
        """Evaluate the cache again at the app's current time."""
        self._flows.clear()
        self._close_users()
        self.show()

    # Showing.

    def _fill(self, matrix: DataTable, flow: Flow) -> None:
        counts: dict[tuple[str, str], int] = {}
        for (before, now), ids in flow.items():
            for row in (before, TOTAL):
                for column in (now, TOTAL):
                    counts[row, column] = counts.get((row, column), 0) + len(ids)

        cursor = matrix.cursor_coordinate
        matrix.clear()
        for before in (NOT_YET_SEEN, *STAGES, TOTAL):
            cells = [_count_cell(counts.get((before, now), 0), before, now) for now in (*STAGES, TOTAL)]
            matrix.add_row(*cells, key=before, label=Text(before, style="bold"))
        matrix.move_cursor(row=cursor.row, column=cursor.column, scroll=False)

    def _show_header(self, computed: tuple[int, Flow] | None) -> None:
        header = Text(end="")
        header.append(f"Lifecycle flow over the last {self.days} days", style="bold")
        header.append(f"  │  w switches to {_other_window(self.days)} days", style="dim")
        if computed is None:
            header.append("\ncomputing every user's stage now and ", style="dim")
            header.append(f"{self.days} days ago…", style="dim")
            self.query_one("#flow-header", Static).update(header)
            return

        t, flow = computed
        header.append(f"  │  at {moment(t)} UTC", style="dim")
        header.append("\nrows: ", style="dim")
        header.append(f"the stage on {moment(t - self.days * DAY_MS)[:10]}")
        header.append(f", or {NOT_YET_SEEN} for users not in the cache then", style="dim")
        header.append("  │  columns: ", style="dim")
        header.append("the stage now")
        moved = sum(len(ids) for (before, now), ids in flow.items() if before != now and before != NOT_YET_SEEN)
        stayed = sum(len(ids) for (before, now), ids in flow.items() if before == now)
        new = sum(len(ids) for (before, _), ids in flow.items() if before == NOT_YET_SEEN)
        header.append("\n")
        header.append(count(moved, "user"), style="bold")
        header.append(" changed stage, ", style="dim")
        header.append(number(stayed), style="bold")
        header.append(" stayed, ", style="dim")
        header.append(number(new), style="bold")
        header.append(" are new", style="dim")
        self.query_one("#flow-header", Static).update(header)

    # Listing and opening users.

    @on(DataTable.CellSelected, "#flow-matrix")
    def list_users(self, event: DataTable.CellSelected) -> None:
        computed = self._flows.get(self.days)
        if computed is None:
            return
        before = str(event.cell_key.row_key.value)
        now = str(event.cell_key.column_key.value)
        user_ids = cell_users(computed[1], before, now)
        self._cell = (before, now)

        pane = self.query_one("#flow-users-pane")
        pane.border_title = f"{_stage_label(before, 'every stage then')} → {_stage_label(now, 'every stage now')}"
        listed = user_ids[:USER_LIMIT]
        note = Text(count(len(user_ids), "user"), style="bold", end="")
        if len(user_ids) > USER_LIMIT:
            note.append(f", the first {USER_LIMIT} by id shown", style="dim")
        if user_ids:
            note.append("  │  Enter opens a user, Esc returns to the matrix", style="dim")
        self.query_one("#flow-users-note", Static).update(note)

        table = self.query_one(FlowUsers)
        table.clear()
        # Primary-key lookups of at most USER_LIMIT users, quick enough for the UI thread.
        for row in user_rows(self.app.db.conn, listed):
            table.add_row(plain(row["id"], style="bold"), plain(row["email"]), plain(row["name"]),
                          moment(row["last_active_at"])[:16], key=row["id"])
        table.display = bool(listed)
        if listed:
            table.move_cursor(row=0)
            table.focus()

    @on(DataTable.RowSelected, "#flow-users")
    def open_user(self, event: DataTable.RowSelected) -> None:
        before, now = self._cell
        crumb = f"{_stage_label(before, 'any')} → {_stage_label(now, 'any')}"
        self.app.open_user(str(event.row_key.value), (*self.crumbs, crumb))

    def _close_users(self) -> None:
        self._cell = None
        table = self.query_one(FlowUsers)
        table.clear()
        table.display = False
        self.query_one("#flow-users-pane").border_title = "Users"
        self.query_one("#flow-users-note", Static).update(Text("Enter on a cell lists its users.", style="dim"))
        self.query_one(FlowMatrix).focus()


def _count_cell(value: int, before: str, now: str) -> Text:
    if TOTAL in (before, now):
        style = "bold"
    elif value == 0:
        return Text("·", style="dim", justify="right", end="")
    elif before == now:
        # Users who stayed in their stage: the quiet part of the matrix.
        style = "dim"
    else:
        style = "bold yellow"
    return Text(number(value), style=style, justify="right", end="")


def _stage_label(stage: str, total_label: str) -> str:
    return total_label if stage == TOTAL else stage


def _other_window(days: int) -> int:
    return WINDOWS[(WINDOWS.index(days) + 1) % len(WINDOWS)]
