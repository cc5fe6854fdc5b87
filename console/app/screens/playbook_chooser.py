"""The playbook chooser: every configured playbook, those of the target's segments first, with the
highlighted playbook's card beside the list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from console.app.screens.base import TriggerTarget
from console.app.widgets.playbook_card import playbook_card
from console.app.widgets.text import plain
from console.playbooks.catalog import Destination, Playbook


def ordered_playbooks(playbooks: Sequence[Playbook], segments: frozenset[str]) -> list[Playbook]:
    """Return `playbooks` with those for one of `segments` first, each group in configuration order."""
    return sorted(playbooks, key=lambda playbook: playbook.segment not in segments)


class PlaybookTable(DataTable):
    """The playbooks. Enter chooses the highlighted one."""

    BINDINGS = [Binding("enter", "select_cursor", "Choose playbook", id="chooser.choose")]


class PlaybookChooserScreen(ModalScreen[Playbook | None]):
    """Choose the playbook to trigger for `target`. Dismisses with the playbook, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="chooser.cancel")]

    def __init__(self, target: TriggerTarget, playbooks: Sequence[Playbook],
                 destinations: Mapping[str, Destination]) -> None:
        super().__init__()
        self.target = target
        self.playbooks = ordered_playbooks(playbooks, target.segments)
        self.destinations = destinations

    def compose(self) -> ComposeResult:
        with Vertical(id="chooser-dialog") as dialog:
            dialog.border_title = plain(f"Trigger a playbook for {self.target.describe()}")
            dialog.border_subtitle = "Enter chooses, Esc cancels"
            yield Static(id="chooser-note")
            with Horizontal(id="chooser-body"):
                yield PlaybookTable(id="chooser-playbooks", cursor_type="row")
                with VerticalScroll(id="chooser-card-pane"):
                    yield Static(id="chooser-card")

    def on_mount(self) -> None:
        matching = sum(1 for playbook in self.playbooks if playbook.segment in self.target.segments)
        note = Text(end="")
        if matching:
            note.append(f"{matching} of {len(self.playbooks)} playbooks are for a segment this target is in", style="dim")
            note.append(" (marked ●, listed first)", style="dim")
        else:
            note.append("No playbook is for a segment this target is in; every playbook is listed.", style="yellow")
        self.query_one("#chooser-note", Static).update(note)

        table = self.query_one(PlaybookTable)
        table.add_column("", key="match", width=1)
        table.add_column("Playbook", key="name")
        table.add_column("Segment", key="segment")
        for playbook in self.playbooks:
            matches = playbook.segment in self.target.segments
            table.add_row(
                Text("●", style="green") if matches else Text(" "),
                plain(playbook.name, style="bold" if matches else ""),
                Text(playbook.segment, style="" if matches else "dim"),
                key=playbook.id,
            )
        table.focus()
        self._show_card(0)

    @on(DataTable.RowHighlighted, "#chooser-playbooks")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_card(event.cursor_row)

    def _show_card(self, row: int) -> None:
        if 0 <= row < len(self.playbooks):
            self.query_one("#chooser-card", Static).update(playbook_card(self.playbooks[row], self.destinations))

    @on(DataTable.RowSelected, "#chooser-playbooks")
    def chosen(self, event: DataTable.RowSelected) -> None:
        self.dismiss(self.playbooks[event.cursor_row])
