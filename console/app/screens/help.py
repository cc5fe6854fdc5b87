"""The help modal: the keys of the screen under it, with their descriptions."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static


class HelpScreen(ModalScreen[None]):
    """A modal listing the active bindings of `screen`: its focused widget's, its own and the app's."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close help", id="help.close")]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.described = screen
        # Read while `screen` is still the active screen, with its focused widget.
        self.bindings = [
            active.binding for active in screen.active_bindings.values() if active.binding.description
        ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog") as dialog:
            dialog.border_title = "Keys"
            dialog.border_subtitle = "Esc closes"
            yield Static(Text.assemble(("Screen: ", "dim"), (self.described.sub_title or "", "bold")),
                         id="help-where")
            yield DataTable(id="help-keys", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "Action", "Binding id")
        # segops's own keys first, then the moving and editing keys that Textual's widgets bring.
        own = [binding for binding in self.bindings if binding.id is not None]
        builtin = [binding for binding in self.bindings if binding.id is None]
        seen: set[str] = set()
        for binding in own:
            # A binding of several keys, such as "f1,question_mark", is listed once.
            if binding.id in seen:
                continue
            seen.add(binding.id)
            table.add_row(Text(self.app.get_key_display(binding), style="bold"), Text(binding.description),
                          Text(binding.id, style="dim"))
        if builtin:
            table.add_row("", "", "")
            table.add_row(Text("moving around", style="dim italic"), "", "")
        for binding in builtin:
            table.add_row(Text(self.app.get_key_display(binding), style="dim"),
                          Text(binding.description, style="dim"), "")
