"""The user screen: traits, account, segments with their explanations, transitions, events and the
playbook actions the user received."""

from __future__ import annotations

import orjson
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from console.app.screens.base import ConsoleScreen, TriggerTarget
from console.app.screens.event import EventScreen
from console.app.widgets.actions import action_status
from console.app.widgets.columns import keep_cursor
from console.app.widgets.explanation import verdicts_text
from console.app.widgets.near_miss import near_misses, near_misses_text
from console.app.widgets.text import json_text, moment, number, plain
from console.app.widgets.transitions import TRANSITION_COLUMNS, fill_transitions
from store import segments as seg
from store.engine import Verdict, explain_user
from store.queries import user_detail, user_events, user_transitions
from store.runs import list_actions

EVENT_LIMIT = 50
# Actions listed on the screen at most: the user's first ones, in the order they were queued.
ACTION_LIMIT = 100


class ExplanationLoaded(Message):
    """The user's verdicts at `t`, computed on a worker thread. None means the user is unknown at `t`."""

    def __init__(self, t: int, verdicts: dict[str, Verdict] | None) -> None:
        super().__init__()
        self.t = t
        self.verdicts = verdicts


def event_label(event: dict) -> str:
    """Name an event for the timeline: the track event, or the page or screen name."""
    if event["event"]:
        return event["event"]
    if event["type"] in ("page", "screen"):
        try:
            name = orjson.loads(event["payload"]).get("name")
        except (orjson.JSONDecodeError, AttributeError):
            name = None
        if isinstance(name, str):
            return name
    return ""


class EventTable(DataTable):
    """The user's latest events. Enter shows the whole message."""

    BINDINGS = [Binding("enter", "select_cursor", "Show event", id="user.event")]


class UserScreen(ConsoleScreen):
    """One user. `a` opens the user's account."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="user.back"),
        Binding("a", "open_account", "Account", id="user.account"),
        Binding("t", "trigger", "Trigger playbook", id="user.trigger",
                tooltip="Trigger a playbook for this user"),
    ]

    def __init__(self, user_id: str, crumbs: tuple[str, ...]) -> None:
        super().__init__((*crumbs, user_id))
        self.user_id = user_id
        self.account_id: str | None = None
        # The user's segments, once the detail is read; None for an unknown user.
        self.segments: frozenset[str] | None = None
        # message id -> (title, payload) of each event in the table, for the event modal.
        self._payloads: dict[str, tuple[str, str]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="user-summary", classes="summary")
        with Horizontal(classes="row"):
            with Vertical(id="user-left"):
                with Vertical(classes="pane") as pane:
                    pane.border_title = "Traits"
                    yield DataTable(id="traits", cursor_type="row", zebra_stripes=True)
                with Vertical(id="user-actions-pane", classes="pane") as pane:
                    pane.border_title = "Actions received"
                    yield DataTable(id="user-actions", cursor_type="row", zebra_stripes=True)
            with Vertical(id="user-verdicts"):
                with VerticalScroll(id="near-misses", classes="pane") as pane:
                    pane.border_title = "Near misses: one condition from entering or leaving"
                    yield Static(Text("evaluating…", style="dim"), id="near-miss")
                with VerticalScroll(id="explanations", classes="pane") as pane:
                    pane.border_title = "Segments, explained at now"
                    yield Static(Text("evaluating…", style="dim"), id="explanation")
        with Horizontal(classes="row"):
            with Vertical(classes="pane") as pane:
                pane.border_title = "Transitions"
                yield DataTable(id="transitions", cursor_type="row", zebra_stripes=True)
            with Vertical(classes="pane") as pane:
                pane.border_title = f"Last {EVENT_LIMIT} events"
                yield EventTable(id="events", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        # These queries are indexed and limited, so they run on the UI thread. The explanation does not.
        connection = self.app.db.conn
        self._add_columns()
        detail = user_detail(connection, self.user_id)
        if detail is None:
            self.query_one("#user-summary", Static).update(Text.assemble(
                ("unknown user ", "bold red"), plain(self.user_id), (": no message in the cache names it", "dim")))
            self.query_one("#explanation", Static).update("")
            self.query_one("#near-miss", Static).update("")
            return
        self.segments = frozenset(detail["segments"])
        self.refresh_bindings()
        self._show_summary(detail)
        self._show_traits(detail["traits"])
        self._load_lists()
        self.explain(self.app.clock())

    def trigger_target(self) -> TriggerTarget | None:
        if self.segments is None:
            return None
        return TriggerTarget("user", self.user_id, self.segments)

    def cache_changed(self, what: str) -> None:
        # A sync brings new events (such as the demo's email events) and transitions; a dispatcher
        # pass or a new run changes the actions.
        if self.segments is not None and what in ("sync", "dispatch", "run"):
            self._load_lists()

    def _load_lists(self) -> None:
        connection = self.app.db.conn
        self._show_transitions(user_transitions(connection, self.user_id))
        self._show_events(user_events(connection, self.user_id, limit=EVENT_LIMIT))
        self._show_actions(list_actions(self.app.db, user_id=self.user_id, limit=ACTION_LIMIT, newest_first=True))

    def _add_columns(self) -> None:
        for table_id, columns in (
            ("#transitions", TRANSITION_COLUMNS),
            ("#events", (("time", "Time (UTC)"), ("type", "Type"), ("event", "Event"))),
            ("#user-actions", (("at", "Queued (UTC)"), ("playbook", "Playbook"), ("channel", "Channel"),
                               ("status", "Status"))),
        ):
            table = self.query_one(table_id, DataTable)
            for key, label in columns:
                table.add_column(label, key=key)

    def _show_summary(self, detail: dict) -> None:
        facts = detail["facts"] or {}
        self.account_id = facts.get("account_id")
        summary = Text(end="")
        summary.append_text(plain(self.user_id, style="bold"))
        if facts.get("name"):
            summary.append("  ")
            summary.append_text(plain(facts["name"]))
        if facts.get("email"):
            summary.append("  ")
            summary.append_text(plain(facts["email"], style="underline"))

        summary.append("\nlifecycle ", style="dim")
        summary.append(facts.get("lifecycle") or "not evaluated yet", style="bold")
        summary.append("  │  account ", style="dim")
        if self.account_id:
            summary.append_text(plain(self.account_id, style="bold"))
            summary.append(" (a opens it)", style="dim")
        else:
            summary.append("none", style="dim")
        summary.append("  │  in ", style="dim")
        summary.append(", ".join(detail["segments"]) or "no segment")

        for line in (
            (("signed up", moment(facts.get("signup_at"))),
             ("activated", moment(facts.get("activated_at"))),
             ("last active", moment(facts.get("last_active_at"))),
             ("cancelled", moment(facts.get("cancelled_at")))),
            (("active days in 30d", number(facts.get("active_days_30"))),
             ("core features in 30d", number(facts.get("features_30"))),
             ("usage score", number(facts.get("usage_score"))),
             ("latest NPS", number(facts.get("nps")))),
        ):
            summary.append("\n")
            for index, (label, value) in enumerate(line):
                if index:
                    summary.append("  │  ", style="dim")
                summary.append(f"{label} ", style="dim")
                summary.append(value or "–")
        self.query_one("#user-summary", Static).update(summary)

    def _show_traits(self, traits: dict[str, object]) -> None:
        table = self.query_one("#traits", DataTable)
        table.add_column("Trait", key="key")
        table.add_column("Value", key="value")
        for key, value in sorted(traits.items()):
            table.add_row(plain(key, style="bold"), plain(json_text(value)))
        if not traits:
            table.add_row(Text("no traits", style="dim"), "")

    def _show_transitions(self, transitions: list[dict]) -> None:
        fill_transitions(self.query_one("#transitions", DataTable), transitions)

    def _show_events(self, events: list[dict]) -> None:
        table = self.query_one("#events", DataTable)
        self._payloads = {}
        with keep_cursor(table):
            for event in events:
                label = event_label(event)
                key = event["message_id"]
                self._payloads[key] = (f"{event['type']} {label} at {moment(event['event_time'])}", event["payload"])
                table.add_row(moment(event["event_time"]), plain(event["type"]), plain(label), key=key)

    def _show_actions(self, actions: list) -> None:
        table = self.query_one("#user-actions", DataTable)
        pane = self.query_one("#user-actions-pane")
        more = f", the latest {ACTION_LIMIT}" if len(actions) >= ACTION_LIMIT else ""
        pane.border_title = f"Actions received ({len(actions):,}{more})"
        with keep_cursor(table):
            # The newest run first, like the events, and each run's steps in order.
            for action in sorted(actions, key=lambda action: (-action.run_id, action.step)):
                table.add_row(moment(action.created_at)[:16], plain(action.playbook), plain(action.channel),
                              action_status(action, self.app.clock()), key=str(action.id))
            if not actions:
                table.add_row(Text("none yet", style="dim"), "", "", "")

    @work(thread=True, exclusive=True, group="explain", exit_on_error=False, name="explanation")
    def explain(self, t: int) -> None:
        # explain_user reads every user's facts, because the Power Users threshold depends on them all.
        with self.app.reader() as connection:
            verdicts = explain_user(connection, self.app.settings, t, self.user_id)
        self.post_message(ExplanationLoaded(t, verdicts))

    def on_explanation_loaded(self, message: ExplanationLoaded) -> None:
        pane = self.query_one("#explanations")
        pane.border_title = f"Segments, explained at {moment(message.t)} UTC"
        if message.verdicts is None:
            text = Text("no facts for this user at that time", style="dim")
            misses = Text("", end="")
        else:
            order = [definition.name for definition in seg.ALL_SEGMENTS if definition.entity == "user"]
            text = verdicts_text(message.verdicts, order)
            misses = near_misses_text(near_misses(message.verdicts, order))
        self.query_one("#explanation", Static).update(text)
        self.query_one("#near-miss", Static).update(misses)

    @on(DataTable.RowSelected, "#events")
    def open_event(self, event: DataTable.RowSelected) -> None:
        title, payload = self._payloads[str(event.row_key.value)]
        self.app.push_screen(EventScreen(title, payload))

    def action_open_account(self) -> None:
        if self.account_id is None:
            self.notify("This user is linked to no account.", severity="warning")
            return
        self.app.open_account(self.account_id, self.crumbs)
