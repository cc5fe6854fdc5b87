"""The account screen: plan, seats, teams, usage against limits, members and the expansion verdict."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from console.app.screens.base import ConsoleScreen, TriggerTarget
from console.app.widgets.explanation import verdict_text
from console.app.widgets.text import json_text, moment, number, plain
from console.app.widgets.transitions import TRANSITION_COLUMNS, fill_transitions
from store import segments as seg
from store.engine import Verdict, explain_account
from store.queries import account_detail, account_members, user_transitions

MEMBER_LIMIT = 200
BAR_WIDTH = 20
# Widths in cells of the member columns whose values can be long. The others fit their content.
COLUMN_WIDTHS = {"email": 40, "name": 24, "team": 16}


class AccountExplained(Message):
    """The Account Expansion Ready verdict at `t`, from a worker thread. None means an unknown account."""

    def __init__(self, t: int, verdict: Verdict | None) -> None:
        super().__init__()
        self.t = t
        self.verdict = verdict


def usage_bar(used: float | None, limit: float | None) -> Text:
    """Draw used against limit as a bar, yellow from 80% and red from 100%."""
    if used is None or not limit:
        return Text("", end="")
    share = used / limit
    filled = min(BAR_WIDTH, round(share * BAR_WIDTH))
    if share >= 1:
        style = "red"
    elif share >= 0.8:
        style = "yellow"
    else:
        style = "green"
    return Text.assemble(("█" * filled, style), ("░" * (BAR_WIDTH - filled), "dim"), (f" {share:.0%}", style))


class MemberTable(DataTable):
    """The account's users. Enter opens one."""

    BINDINGS = [Binding("enter", "select_cursor", "Open user", id="account.open")]


class AccountScreen(ConsoleScreen):
    """One account."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="account.back"),
        Binding("t", "trigger", "Trigger playbook", id="account.trigger",
                tooltip="Trigger a playbook for this account's users"),
    ]

    def __init__(self, account_id: str, crumbs: tuple[str, ...]) -> None:
        super().__init__((*crumbs, account_id))
        self.account_id = account_id
        # The account's segments and its members' lifecycle stages, once its detail is read; None for
        # an unknown account.
        self.segments: frozenset[str] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="account-summary", classes="summary")
        with Horizontal(id="account-top"):
            usage = DataTable(id="usage", cursor_type="none")
            usage.border_title = "Usage against limits"
            yield usage
            with VerticalScroll(id="account-explanation") as pane:
                pane.border_title = seg.EXPANSION_READY
                pane.border_subtitle = "explained at now"
                yield Static(Text("evaluating…", style="dim"), id="expansion")
        with Horizontal(id="account-bottom"):
            with Vertical(classes="pane") as pane:
                pane.border_title = "Members"
                yield MemberTable(id="account-members", cursor_type="row", zebra_stripes=True)
            with Vertical(classes="pane", id="account-timeline") as pane:
                pane.border_title = f"{seg.EXPANSION_READY} timeline"
                yield DataTable(id="account-transitions", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        connection = self.app.db.conn
        detail = account_detail(connection, self.account_id)
        if detail is None:
            self.query_one("#account-summary", Static).update(Text.assemble(
                ("unknown account ", "bold red"), plain(self.account_id),
                (": no message in the cache names it", "dim")))
            self.query_one("#expansion", Static).update("")
            return
        members = account_members(connection, self.account_id, limit=MEMBER_LIMIT)
        self.segments = frozenset(detail["segments"]) | {member["lifecycle"] for member in members if member["lifecycle"]}
        self.refresh_bindings()
        self._show_summary(detail, len(members))
        self._show_usage(detail["facts"])
        self._show_members(members)
        self._show_transitions(connection)
        self.query_one(MemberTable).focus()
        self.explain(self.app.clock())

    def trigger_target(self) -> TriggerTarget | None:
        if self.segments is None:
            return None
        return TriggerTarget("account", self.account_id, self.segments)

    def _show_summary(self, detail: dict, member_count: int) -> None:
        facts = detail["facts"] or {}
        summary = Text(end="")
        summary.append_text(plain(self.account_id, style="bold"))
        if facts.get("name"):
            summary.append("  ")
            summary.append_text(plain(facts["name"]))
        summary.append("\nplan ", style="dim")
        summary.append_text(plain(facts.get("plan") or "unknown", style="bold"))

        summary.append("  │  seats used ", style="dim")
        limit = facts.get("seat_limit")
        summary.append(f"{number(facts.get('seats_used'))} / {number(limit) if limit else 'no limit'}", style="bold")
        summary.append("  │  teams ", style="dim")
        summary.append(number(facts.get("teams")), style="bold")
        summary.append("  │  ", style="dim")
        if detail["segments"]:
            summary.append(f"in {seg.EXPANSION_READY}", style="bold green")
        else:
            summary.append(f"not in {seg.EXPANSION_READY}", style="dim")
        more = f" (the first {MEMBER_LIMIT} shown)" if member_count >= MEMBER_LIMIT else ""
        summary.append(f"  │  {member_count:,} members{more}", style="dim")

        traits = detail["traits"]
        if traits:
            summary.append("\ntraits ", style="dim")
            for index, (key, value) in enumerate(sorted(traits.items())):
                if index:
                    summary.append(", ", style="dim")
                summary.append_text(plain(key, style="dim"))
                summary.append("=", style="dim")
                summary.append_text(plain(json_text(value)))
        self.query_one("#account-summary", Static).update(summary)

    def _show_transitions(self, connection) -> None:
        table = self.query_one("#account-transitions", DataTable)
        for key, label in TRANSITION_COLUMNS:
            table.add_column(label, key=key)
        # A user and an account may share an id: keep only the account segment's rows.
        transitions = [row for row in user_transitions(connection, self.account_id, limit=200)
                       if row["segment"] == seg.EXPANSION_READY]
        fill_transitions(table, transitions)
        if not transitions:
            table.add_row(Text("no entry or exit recorded yet", style="dim"), "", "", "")

    def _show_usage(self, facts: dict | None) -> None:
        table = self.query_one("#usage", DataTable)
        for key, label in (("limit", "Limit"), ("used", "Used"), ("of", "Of"), ("bar", "Share")):
            table.add_column(label, key=key)
        if facts is None:
            table.add_row(Text("not evaluated yet", style="dim"), "", "", "")
            return
        rows = [("seats", facts.get("seats_used"), facts.get("seat_limit"))]
        for name, usage in sorted(facts["usage"].items()):
            rows.append((name, usage.get("used"), usage.get("limit")))
        for name, used, limit in rows:
            # Metered usage is an account trait, so it may be any JSON value, not only a number.
            measured = used if isinstance(used, (int, float)) and not isinstance(used, bool) else None
            if measured is not None:
                used_cell = Text(number(measured))
            elif used is None:
                used_cell = Text("")
            else:
                used_cell = plain(json_text(used))
            table.add_row(plain(name, style="bold"), used_cell, number(limit) if limit else "no limit",
                          usage_bar(measured, limit))

    def _show_members(self, members: list[dict]) -> None:
        table = self.query_one(MemberTable)
        for key, label in (("id", "User"), ("email", "Email"), ("name", "Name"), ("lifecycle", "Lifecycle"),
                           ("team", "Team"), ("last_active_at", "Last active")):
            table.add_column(label, key=key, width=COLUMN_WIDTHS.get(key))
        for member in members:
            table.add_row(
                plain(member["id"], style="bold"), plain(member["email"]), plain(member["name"]),
                plain(member["lifecycle"]), plain(member["team"]), moment(member["last_active_at"])[:16],
                key=member["id"],
            )

    @work(thread=True, exclusive=True, group="explain", exit_on_error=False, name="explanation")
    def explain(self, t: int) -> None:
        with self.app.reader() as connection:
            verdict = explain_account(connection, self.app.settings, t, self.account_id)
        self.post_message(AccountExplained(t, verdict))

    def on_account_explained(self, message: AccountExplained) -> None:
        pane = self.query_one("#account-explanation")
        pane.border_subtitle = f"explained at {moment(message.t)} UTC"
        text = (Text("no facts for this account at that time", style="dim") if message.verdict is None
                else verdict_text(seg.EXPANSION_READY, message.verdict))
        self.query_one("#expansion", Static).update(text)

    @on(DataTable.RowSelected, "#account-members")
    def open_member(self, event: DataTable.RowSelected) -> None:
        self.app.open_user(str(event.row_key.value), self.crumbs)
