"""The quarantine screen: the messages the cache rejected, counted per reason and paged newest first."""

from __future__ import annotations

import sqlite3

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from console.app.screens.base import ConsoleScreen
from console.app.screens.event import EventScreen, pretty_payload
from console.app.widgets.columns import last_column_width
from console.app.widgets.text import moment, number, plain
from store.normalize import REASONS
from store.queries import quarantine_counts

PAGE_SIZE = 100
# Characters of the detail and of the payload read for a table row: the whole payload can be large.
DETAIL_CHARS = 200
EXCERPT_CHARS = 200
# A location longer than this many characters is shown by its end, where the file name and line are.
LOCATION_WIDTH = 40
# The payload modal renders every line it is given at once, so a payload of a few hundred KB takes
# seconds to open, and a too_large message can be any size. It gets at most this many characters.
PAYLOAD_SHOWN_CHARS = 64 * 1024
# Key, label and width of the message table's columns before the payload excerpt.
MESSAGE_COLUMNS = (("received_at", "Received (UTC)", 19), ("reason", "Reason", 20), ("detail", "Detail", 34),
                   ("location", "Location", LOCATION_WIDTH))
# Cells taken by the table's round border and its vertical scrollbar.
BORDER_AND_SCROLLBAR = 4
# Row key of the reasons table's first row, which shows every reason. Reason codes are never empty.
ALL_REASONS = ""


def quarantine_page(
    connection: sqlite3.Connection, reason: str | None, before: int | None, limit: int
) -> list[dict]:
    """Return up to `limit` quarantined messages with an id below `before` (all when None) and the
    given reason (any when None), newest first. `detail` and `excerpt` are cut to DETAIL_CHARS and
    EXCERPT_CHARS characters."""
    clauses, parameters = [], []
    if reason is not None:
        clauses.append("reason = ?")
        parameters.append(reason)
    if before is not None:
        clauses.append("id < ?")
        parameters.append(before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = connection.execute(
        "SELECT id, received_at, source, location, reason, substr(detail, 1, ?), substr(payload, 1, ?)"
        f" FROM quarantine {where} ORDER BY id DESC LIMIT ?",
        (DETAIL_CHARS, EXCERPT_CHARS, *parameters, limit),
    )
    keys = ("id", "received_at", "source", "location", "reason", "detail", "excerpt")
    return [dict(zip(keys, row)) for row in rows]


def quarantined_message(connection: sqlite3.Connection, message_id: int) -> dict | None:
    """Return one quarantined message with its whole payload, or None when it is gone."""
    row = connection.execute(
        "SELECT id, received_at, source, location, reason, detail, payload FROM quarantine WHERE id = ?",
        (message_id,),
    ).fetchone()
    if row is None:
        return None
    return dict(zip(("id", "received_at", "source", "location", "reason", "detail", "payload"), row))


def payload_excerpt(payload: str) -> tuple[str, bool]:
    """Return the payload indented for reading, cut after the last whole line within
    PAYLOAD_SHOWN_CHARS characters, and whether it was cut."""
    text = pretty_payload(payload)
    if len(text) <= PAYLOAD_SHOWN_CHARS:
        return text, False
    end = text.rfind("\n", 0, PAYLOAD_SHOWN_CHARS)
    shown = text[:end if end > 0 else PAYLOAD_SHOWN_CHARS]
    return f"{shown}\n… cut here: {len(text) - len(shown):,} more characters are not shown", True


def location_tail(location: str) -> str:
    """Cut a long location to its end, because the end names the file and the line."""
    if len(location) > LOCATION_WIDTH:
        return "…" + location[-(LOCATION_WIDTH - 1):]
    return location


class QuarantineLoaded(Message):
    """A page of quarantined messages, and the counts per reason when they were read too."""

    def __init__(self, generation: int, index: int, rows: list[dict], more: bool,
                 counts: dict[str, int] | None) -> None:
        super().__init__()
        self.generation = generation
        self.index = index
        self.rows = rows
        self.more = more
        self.counts = counts


class ReasonTable(DataTable):
    """Quarantined messages per reason. Enter shows the messages of one reason."""

    BINDINGS = [Binding("enter", "select_cursor", "Filter by reason", id="quarantine.filter")]


class MessageTable(DataTable):
    """One page of quarantined messages. Moving past the last row or above the first turns the page."""

    BINDINGS = [Binding("enter", "select_cursor", "Show payload", id="quarantine.open")]

    class EdgeReached(Message):
        """The cursor tried to move past the end of the page: `step` is 1 below it, -1 above it."""

        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

    def _at_edge(self, step: int) -> bool:
        """Post EdgeReached and return True when the cursor is on the row at the `step` end."""
        edge = self.row_count - 1 if step > 0 else 0
        if self.row_count and self.cursor_row == edge:
            self.post_message(self.EdgeReached(step))
            return True
        return False

    def action_cursor_down(self) -> None:
        if not self._at_edge(1):
            super().action_cursor_down()

    def action_page_down(self) -> None:
        if not self._at_edge(1):
            super().action_page_down()

    def action_cursor_up(self) -> None:
        if not self._at_edge(-1):
            super().action_cursor_up()

    def action_page_up(self) -> None:
        if not self._at_edge(-1):
            super().action_page_up()


class QuarantineScreen(ConsoleScreen):
    """Quarantined messages: counts per reason, and a page at a time of the messages, newest first."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="quarantine.back"),
        Binding("n", "turn_page(1)", "Next page", id="quarantine.next"),
        Binding("p", "turn_page(-1)", "Previous page", id="quarantine.previous"),
        Binding("r", "refresh", "Refresh", id="quarantine.refresh"),
    ]

    AUTO_FOCUS = "#quarantine-messages"

    def __init__(self, crumbs: tuple[str, ...]) -> None:
        super().__init__((*crumbs, "Quarantine"))
        # The reason shown, or None for every reason.
        self.reason: str | None = None
        self.counts: dict[str, int] | None = None
        # The `before` id that starts each page reached so far: pages[i + 1] starts below page i's last id.
        self._starts: list[int | None] = [None]
        self.page = 0
        self._rows: list[dict] = []
        self._generation = 0
        self._loading = False
        self._failed = False
        # Where the cursor goes on the page that is loading: "top" or "bottom".
        self._cursor_at = "top"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="quarantine-summary", classes="summary")
        reasons = ReasonTable(id="quarantine-reasons", cursor_type="row", zebra_stripes=True)
        reasons.border_title = "Reasons"
        yield reasons
        messages = MessageTable(id="quarantine-messages", cursor_type="row", zebra_stripes=True)
        messages.border_title = "Messages, newest first"
        yield messages
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        reasons = self.query_one(ReasonTable)
        for key, label in (("shown", ""), ("reason", "Reason"), ("meaning", "Meaning"), ("messages", "Messages")):
            reasons.add_column(label, key=key)
        self._add_message_columns()
        self.reload()

    def on_resize(self) -> None:
        self._add_message_columns()
        self._show_messages()

    def _add_message_columns(self) -> None:
        table = self.query_one(MessageTable)
        excerpt_width = last_column_width(table, [width for _, _, width in MESSAGE_COLUMNS], BORDER_AND_SCROLLBAR)
        table.clear(columns=True)
        for key, label, width in (*MESSAGE_COLUMNS, ("excerpt", "Payload", excerpt_width)):
            table.add_column(label, key=key, width=width)

    # Loading.

    def reload(self) -> None:
        """Read the counts and the first page again, for the reason shown."""
        self._generation += 1
        self._starts = [None]
        self._loading = True
        self._failed = False
        self._cursor_at = "top"
        self._show_summary()
        self._fetch(self._generation, 0, None, self.reason, with_counts=True)

    def action_refresh(self) -> None:
        self.reload()

    def action_turn_page(self, step: int) -> None:
        """Show the next page (`step` 1) or the previous one (-1), if there is one."""
        index = self.page + step
        if self._loading or index < 0 or index >= len(self._starts):
            return
        self._loading = True
        self._cursor_at = "bottom" if step < 0 and self.query_one(MessageTable).has_focus else "top"
        self._fetch(self._generation, index, self._starts[index], self.reason, with_counts=False)

    @on(MessageTable.EdgeReached)
    def turn_at_edge(self, event: MessageTable.EdgeReached) -> None:
        self.action_turn_page(event.step)

    @work(thread=True, group="quarantine", exit_on_error=False, name="quarantine query")
    def _fetch(self, generation: int, index: int, before: int | None, reason: str | None, with_counts: bool) -> None:
        # The excerpts read part of each payload, which can be large, so pages load off the UI thread.
        with self.app.reader() as connection:
            rows = quarantine_page(connection, reason, before, PAGE_SIZE + 1)
            counts = quarantine_counts(connection) if with_counts else None
        self.post_message(QuarantineLoaded(generation, index, rows[:PAGE_SIZE], len(rows) > PAGE_SIZE, counts))

    def on_quarantine_loaded(self, message: QuarantineLoaded) -> None:
        if message.generation != self._generation:
            return
        self._loading = False
        if message.counts is not None:
            self.counts = message.counts
            self._show_reasons()
        self.page = message.index
        del self._starts[message.index + 1:]
        if message.more:
            self._starts.append(message.rows[-1]["id"])
        self._rows = message.rows
        self._show_messages()
        self._show_summary()

    @on(Worker.StateChanged)
    def page_failed(self, event: Worker.StateChanged) -> None:
        # ConsoleScreen shows the error, and the summary stops saying "loading…".
        if event.state == WorkerState.ERROR and event.worker.group == "quarantine":
            self._loading = False
            self._failed = True
            self._show_summary()

    # Showing.

    def _show_reasons(self) -> None:
        table = self.query_one(ReasonTable)
        cursor_row = table.cursor_row
        table.clear()
        counts = self.counts or {}
        rows = [(ALL_REASONS, Text("all reasons", style="italic"), Text(""), sum(counts.values()))]
        for reason, total in sorted(counts.items()):
            rows.append((reason, plain(reason, style="bold"), plain(REASONS.get(reason, "unknown reason code")),
                         total))
        for key, label, meaning, total in rows:
            selected = (self.reason or ALL_REASONS) == key
            table.add_row(Text("●" if selected else "", style="bold green"), label, meaning,
                          Text(number(total), justify="right"), key=key)
        table.move_cursor(row=min(cursor_row, table.row_count - 1), scroll=False)

    def _show_messages(self) -> None:
        table = self.query_one(MessageTable)
        table.clear()
        for row in self._rows:
            table.add_row(
                Text(moment(row["received_at"]), end=""),
                plain(row["reason"]),
                plain(row["detail"]),
                plain(location_tail(row["location"])),
                plain(row["excerpt"], style="dim"),
                key=str(row["id"]),
            )
        if table.row_count:
            table.move_cursor(row=table.row_count - 1 if self._cursor_at == "bottom" else 0)

    def _show_summary(self) -> None:
        summary = Text(end="")
        counts = self.counts or {}
        total = sum(counts.values()) if self.reason is None else counts.get(self.reason, 0)
        summary.append("quarantined messages ", style="dim")
        summary.append("…" if self.counts is None else number(sum(counts.values())), style="bold")
        summary.append("  │  reason ", style="dim")
        if self.reason is None:
            summary.append("all", style="bold")
        else:
            summary.append_text(plain(self.reason, style="bold"))
            summary.append(f" ({REASONS.get(self.reason, 'unknown reason code')})", style="dim")
        summary.append("  │  ", style="dim")
        summary.append(self._page_text(total))
        summary.append("\nEnter on a reason filters the messages, and on a message shows its payload. "
                       "↓ past the last row and ↑ above the first turn the page.", style="dim")
        self.query_one("#quarantine-summary", Static).update(summary)

    def _page_text(self, total: int) -> str:
        if self._failed and not self._rows:
            return "loading failed"
        if self._loading and not self._rows:
            return "loading…"
        if not self._rows:
            return "no quarantined messages" if self.reason is None else "no messages with this reason"
        first = self.page * PAGE_SIZE + 1
        pages = max(1, -(-total // PAGE_SIZE))
        return f"page {self.page + 1:,} of {pages:,}: messages {first:,}–{first + len(self._rows) - 1:,} of {total:,}"

    # Filtering and opening.

    @on(DataTable.RowSelected, "#quarantine-reasons")
    def filter_by_reason(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value)
        self.reason = key if key != ALL_REASONS else None
        self._rows = []
        self._show_reasons()
        self.reload()
        self.query_one(MessageTable).focus()

    @on(DataTable.RowSelected, "#quarantine-messages")
    def open_message(self, event: DataTable.RowSelected) -> None:
        # One row by primary key. The payload can be large, but it is read only for this modal.
        message = quarantined_message(self.app.db.conn, int(event.row_key.value))
        if message is None:
            self.notify("This message is no longer in the quarantine.", severity="warning")
            return
        # The modal is 100 cells wide and cuts its title, so the detail, the longest part, comes last.
        location = location_tail(message["location"])
        title = f"quarantined #{message['id']} {message['reason']} from {location}: {message['detail']}"
        payload, cut = payload_excerpt(message["payload"])
        if cut:
            title = f"cut to its first {PAYLOAD_SHOWN_CHARS // 1024} K characters · {title}"
        self.app.push_screen(EventScreen(title, payload))
