"""The event modal: one cached message, whole, as the CDP delivered it."""

from __future__ import annotations

import orjson
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.app.widgets.text import clean, plain


def pretty_payload(payload: str) -> str:
    """Indent a message's JSON for reading. Text that is not JSON is returned unchanged."""
    try:
        return orjson.dumps(orjson.loads(payload), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        return payload


class EventScreen(ModalScreen[None]):
    """Shows one message's payload as plain text."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close", id="event.close")]

    def __init__(self, title: str, payload: str) -> None:
        super().__init__()
        self.event_title = title
        self.payload = payload

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="event-dialog") as dialog:
            # A str title would be parsed as markup, and the event name comes from the CDP.
            dialog.border_title = plain(self.event_title)
            dialog.border_subtitle = "Esc closes"
            # Line breaks of the indented JSON stay, and every other control character is removed.
            lines = [clean(line) for line in pretty_payload(self.payload).splitlines()]
            yield Static(Text("\n".join(lines), end=""), id="event-payload")
