"""A table of segment entries and exits, shared by the user and account screens."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from console.app.widgets.columns import keep_cursor
from console.app.widgets.text import moment, plain

TRANSITION_COLUMNS = (("at", "At"), ("segment", "Segment"), ("change", "Change"), ("reason", "Reason"))


def fill_transitions(table: DataTable, transitions: list[dict]) -> None:
    """Add one row per transition (newest first, as `store.queries.user_transitions` returns them)."""
    with keep_cursor(table):
        for transition in transitions:
            entered = transition["entered"]
            table.add_row(
                moment(transition["at"]),
                plain(transition["segment"]),
                Text("entered" if entered else "left", style="green" if entered else "red"),
                plain(transition["reason"]),
            )
