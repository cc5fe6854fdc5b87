"""The actions log: playbook runs newest first with their counts, the audit log, and the actions of
the highlighted run with their status, attempts and the destination's last response."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from console.app.screens.base import ConsoleScreen
from console.app.widgets.actions import action_status, last_response
from console.app.widgets.columns import keep_cursor
from console.app.widgets.text import clean, count, moment, number, plain
from store import runs
from store.runs import Action, Attempt, Run

RUN_PAGE = 50
# Runs and actions kept in their tables at most. Older runs and later actions are listed by
# `segops actions`; the tables stay windows on the cache, never copies of it.
MAX_RUNS = 500
ACTION_PAGE = 100
MAX_ACTIONS = 1000
# The next page loads when the cursor comes this many rows near the end of what is loaded.
LOAD_MARGIN = 10
AUDIT_LIMIT = 50

RUN_COLUMNS = (
    ("id", "Run"), ("at", "Time (UTC)"), ("operator", "Operator"), ("playbook", "Playbook"), ("target", "Target"),
    ("targeted", "Targeted"), ("held_out", "Held out"), ("cooldown", "Cooldown"), ("rule", "Excluded"),
    ("queued", "To send"), ("dry_run", "Dry run"),
)
ACTION_COLUMNS = (
    ("id", "Action"), ("user", "User"), ("step", "Step"), ("channel", "Channel"), ("destination", "Destination"),
    ("content", "Content"), ("status", "Status"), ("attempts", "Attempts"), ("sent_at", "Sent (UTC)"),
    ("response", "Last response"),
)


class RunsLoaded(Message):
    """A page of runs and the latest audit entries, read on a worker thread. `append` adds the page
    after the runs on screen; otherwise it replaces them."""

    def __init__(self, runs_page: list[Run], audit: list[dict], append: bool, full: bool) -> None:
        super().__init__()
        self.runs = runs_page
        self.audit = audit
        self.append = append
        # Whether the query returned as many runs as it asked for, so that older ones may exist.
        self.full = full


class ActionsLoaded(Message):
    """Actions of one run with the last attempt of each, and the run's actions by status."""

    def __init__(self, run_id: int, actions: list[Action], responses: dict[int, Attempt], statuses: dict[str, int],
                 append: bool, full: bool) -> None:
        super().__init__()
        self.run_id = run_id
        self.actions = actions
        self.responses = responses
        self.statuses = statuses
        self.append = append
        # Whether the query returned as many actions as it asked for, so that later ones may exist.
        self.full = full


def target_text(run: Run) -> Text:
    """Name a run's target: "segment Power Users", "user u-1", "account acme"."""
    return Text.assemble((f"{run.target_kind} ", "dim"), plain(run.target_id))


class RunsTable(DataTable):
    """The runs, newest first. Enter moves to the highlighted run's actions."""

    BINDINGS = [Binding("enter", "select_cursor", "Show actions", id="actions.run.open")]


class ActionsTable(DataTable):
    """The actions of one run. Enter opens the action's user."""

    BINDINGS = [Binding("enter", "select_cursor", "Open user", id="actions.action.open")]


class ActionsLogScreen(ConsoleScreen):
    """Every run, newest first, and what became of the highlighted run's actions."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="actions.back"),
        Binding("r", "refresh", "Refresh", id="actions.refresh"),
        Binding("p", "toggle_automatic", "Pause/resume automatic", id="actions.automatic",
                tooltip="Pause or resume every playbook that triggers on entry; recorded in the audit log"),
    ]

    AUTO_FOCUS = "#runs"

    def __init__(self, crumbs: tuple[str, ...]) -> None:
        super().__init__((*crumbs, "Actions log"))
        self._runs: list[Run] = []
        self._more_runs = False
        self._loading_runs = False
        # The run whose actions are shown, and those actions by id.
        self.run_id: int | None = None
        self._actions: dict[int, Action] = {}
        self._more_actions = False
        self._loading_actions = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="actions-summary", classes="summary")
        with Vertical(id="runs-pane", classes="pane") as pane:
            pane.border_title = "Runs, newest first"
            yield RunsTable(id="runs", cursor_type="row", zebra_stripes=True)
        with Vertical(id="run-actions-pane", classes="pane") as pane:
            pane.border_title = "Actions"
            yield Static(id="run-detail")
            yield ActionsTable(id="run-actions", cursor_type="row", zebra_stripes=True)
        with Vertical(id="audit-pane", classes="pane") as pane:
            pane.border_title = "Audit log: pauses and failed actions, newest first"
            yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        runs_table = self.query_one(RunsTable)
        for key, label in RUN_COLUMNS:
            runs_table.add_column(label, key=key)
        actions_table = self.query_one(ActionsTable)
        for key, label in ACTION_COLUMNS:
            actions_table.add_column(label, key=key)
        audit = self.query_one("#audit", DataTable)
        for key, label in (("at", "At (UTC)"), ("operator", "Operator"), ("detail", "Event")):
            audit.add_column(label, key=key)
        self._show_summary()
        self._load_runs(None, RUN_PAGE, append=False)

    def _show_summary(self) -> None:
        state = self.app.playbook_state
        summary = Text(end="")
        summary.append("automatic playbooks ", style="dim")
        if state.read_only:
            summary.append("off: the console is read-only", style="bold yellow")
        elif state.automatic_paused:
            summary.append("paused", style="bold yellow")
            summary.append(" (p resumes them)", style="dim")
        elif state.on_entry:
            summary.append(f"on, {count(state.on_entry, 'playbook')} on entry", style="green")
            summary.append(" (p pauses them)", style="dim")
        else:
            summary.append("on; no playbook triggers on entry", style="dim")
        summary.append("  │  ", style="dim")
        summary.append(f"listed: the latest {MAX_RUNS:,} runs, the first {MAX_ACTIONS:,} actions of each"
                       " (segops actions lists all)", style="dim")
        self.query_one("#actions-summary", Static).update(summary)

    # Runs.

    def action_refresh(self) -> None:
        """Read the runs, the audit log and the highlighted run's actions again."""
        self._reload()

    def cache_changed(self, what: str) -> None:
        if what == "pause":
            self._show_summary()
        self._reload()

    def _reload(self) -> None:
        self._load_runs(None, max(RUN_PAGE, len(self._runs)), append=False)
        if self.run_id is not None:
            self._load_actions(self.run_id, None, max(ACTION_PAGE, len(self._actions)), append=False)

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False, name="runs query")
    def _load_runs(self, before_id: int | None, limit: int, append: bool) -> None:
        with self.app.database() as db:
            page = runs.list_runs(db, limit=limit, before_id=before_id)
            audit = runs.list_audit(db, limit=AUDIT_LIMIT)
        self.post_message(RunsLoaded(page, audit, append, full=len(page) >= limit))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self._loading_runs = False
        self._runs = (self._runs + message.runs) if message.append else message.runs
        self._more_runs = message.full and len(self._runs) < MAX_RUNS
        table = self.query_one(RunsTable)
        with keep_cursor(table):
            for run in self._runs:
                self._add_run(table, run)
        if not self._runs:
            self.query_one("#run-detail", Static).update(Text(
                "No run yet: t on a segment, user or account screen triggers a playbook.", style="dim"))
        self._show_audit(message.audit)
        self._select(table)

    @staticmethod
    def _add_run(table: DataTable, run: Run) -> None:
        counts = run.counts
        table.add_row(
            Text(str(run.id), style="bold", justify="right"), moment(run.created_at), plain(run.operator),
            plain(run.playbook), target_text(run),
            *(Text(number(value), justify="right") for value in (
                counts.targeted, counts.held_out, counts.excluded_cooldown, counts.excluded_rule, counts.queued)),
            Text("dry run", style="yellow") if run.dry_run else Text(""),
            key=str(run.id),
        )

    def _show_audit(self, entries: list[dict]) -> None:
        table = self.query_one("#audit", DataTable)
        with keep_cursor(table):
            for entry in entries:
                table.add_row(moment(entry["at"]), plain(entry["operator"]), plain(entry["detail"] or entry["event"]),
                              key=str(entry["id"]))
            if not entries:
                table.add_row(Text("no entry yet", style="dim"), "", "")

    @on(DataTable.RowHighlighted, "#runs")
    def run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self._more_runs and not self._loading_runs and event.cursor_row >= len(self._runs) - LOAD_MARGIN:
            self._loading_runs = True
            self._load_runs(self._runs[-1].id, RUN_PAGE, append=True)
        self._select(event.data_table)

    def _select(self, table: DataTable) -> None:
        if not self._runs or table.row_count == 0:
            return
        run_id = int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        if run_id != self.run_id:
            self.run_id = run_id
            self._actions = {}
            self.query_one(ActionsTable).clear()
            self._load_actions(run_id, None, ACTION_PAGE, append=False)

    @on(DataTable.RowSelected, "#runs")
    def run_selected(self) -> None:
        self.query_one(ActionsTable).focus()

    # The highlighted run's actions.

    @work(thread=True, exclusive=True, group="actions", exit_on_error=False, name="actions query")
    def _load_actions(self, run_id: int, after_id: int | None, limit: int, append: bool) -> None:
        with self.app.database() as db:
            actions = runs.list_actions(db, run_id=run_id, after_id=after_id, limit=limit)
            # One indexed query per action that was attempted, for a page of at most `limit` actions.
            responses = {}
            for action in actions:
                if action.attempts:
                    attempts = runs.list_attempts(db, action.id)
                    if attempts:
                        responses[action.id] = attempts[-1]
            statuses = runs.action_status_counts(db, run_id)
        self.post_message(ActionsLoaded(run_id, actions, responses, statuses, append, full=len(actions) >= limit))

    def on_actions_loaded(self, message: ActionsLoaded) -> None:
        if message.run_id != self.run_id:
            return
        self._loading_actions = False
        table = self.query_one(ActionsTable)
        if not message.append:
            # A refresh reads the same first actions again, so their changed cells update in place.
            self._drop_missing(table, {action.id for action in message.actions})
        for action in message.actions:
            self._put_action(table, action, message.responses.get(action.id))
        self._more_actions = message.full and len(self._actions) < MAX_ACTIONS
        self._show_detail(message.statuses)

    def _drop_missing(self, table: DataTable, kept: set[int]) -> None:
        for action_id in [action_id for action_id in self._actions if action_id not in kept]:
            del self._actions[action_id]
            table.remove_row(str(action_id))

    def _put_action(self, table: DataTable, action: Action, response: Attempt | None) -> None:
        cells = {
            "id": Text(str(action.id), justify="right"),
            "user": plain(action.user_id, style="bold"),
            "step": Text(str(action.step + 1), justify="right"),
            "channel": plain(action.channel),
            "destination": plain(action.destination),
            "content": plain(action.content),
            "status": action_status(action, self.app.clock()),
            "attempts": Text(str(action.attempts), justify="right"),
            "sent_at": Text(moment(action.sent_at)),
            "response": last_response(response) if response is not None else Text(clean(action.last_error), style="red"),
        }
        key = str(action.id)
        if action.id in self._actions:
            for column, value in cells.items():
                table.update_cell(key, column, value)
        else:
            table.add_row(*cells.values(), key=key)
        self._actions[action.id] = action

    def _show_detail(self, statuses: dict[str, int]) -> None:
        run = next((run for run in self._runs if run.id == self.run_id), None)
        pane = self.query_one("#run-actions-pane")
        pane.border_title = f"Actions of run {self.run_id}"
        detail = Text(end="")
        if run is not None and run.dry_run:
            detail.append("a dry run: its counts are recorded and no action was queued", style="yellow")
        elif not statuses:
            detail.append("no action: every targeted user was held out without a notice or excluded", style="dim")
        else:
            detail.append("actions by status: ", style="dim")
            detail.append(", ".join(f"{status} {total:,}" for status, total in statuses.items()))
            shown = len(self._actions)
            more = ", more below" if self._more_actions else ""
            detail.append(f"  │  {shown:,} listed{more}", style="dim")
        self.query_one("#run-detail", Static).update(detail)

    @on(DataTable.RowHighlighted, "#run-actions")
    def action_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if (self._more_actions and not self._loading_actions and self.run_id is not None
                and event.cursor_row >= len(self._actions) - LOAD_MARGIN):
            self._loading_actions = True
            self._load_actions(self.run_id, max(self._actions), ACTION_PAGE, append=True)

    @on(DataTable.RowSelected, "#run-actions")
    def action_selected(self, event: DataTable.RowSelected) -> None:
        action = self._actions.get(int(event.row_key.value))
        if action is not None:
            self.app.open_user(action.user_id, self.crumbs)
