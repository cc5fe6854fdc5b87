"""The base of the console's screens: a breadcrumb, visible errors of the screen's workers, the
playbook trigger key, and the actions that read-only mode hides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pathlib import Path

from textual import work
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable
from textual.worker import Worker, WorkerState

from console.app.export import export_path, table_content, write_csv
from console.app.widgets.text import clean
from store.runs import Target

if TYPE_CHECKING:
    from console.app.app import SegopsApp

# Actions that change the cache or send something. In read-only mode `check_action` hides them, so
# the Footer, the help and the command palette do not offer them and their keys do nothing.
WRITE_ACTIONS = frozenset({"trigger", "toggle_automatic", "dry_run"})


@dataclass(frozen=True)
class TriggerTarget:
    """Whom a playbook would be triggered for from a screen: a user, an account's users or a whole
    segment. `segments` are the segments the target is in, so that their playbooks are listed first."""

    kind: str
    id: str
    segments: frozenset[str] = field(default_factory=frozenset)

    @property
    def target(self) -> Target:
        return Target(self.kind, self.id)

    def describe(self) -> str:
        """Name the target for a title, as plain text: "user u-1", "the whole segment Power Users"."""
        if self.kind == "segment":
            return f"the whole segment {self.id}"
        return f"{self.kind} {clean(self.id)}"


class ConsoleScreen(Screen):
    """A screen at the end of a breadcrumb such as ("Dashboard", "Power Users", "user-123")."""

    BINDINGS = [Binding("e", "export_csv", "Export CSV", id="screen.export",
                        tooltip="Save the focused table to a CSV file and show its path")]

    app: SegopsApp

    def __init__(self, crumbs: tuple[str, ...]) -> None:
        super().__init__()
        self.crumbs = crumbs
        self.sub_title = " › ".join(clean(crumb) for crumb in crumbs)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Worker state messages do not bubble, so each screen hands its failures to the app.
        if event.state == WorkerState.ERROR:
            self.app.show_worker_error(event.worker)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WRITE_ACTIONS and self.app.config.read_only:
            return False
        if action == "trigger" and self.trigger_target() is None:
            # Shown but greyed out: the screen has no target yet, such as an unknown user.
            return None
        return True

    def trigger_target(self) -> TriggerTarget | None:
        """Return whom the `t` key triggers a playbook for on this screen, or None."""
        return None

    def action_trigger(self) -> None:
        """Choose a playbook for this screen's target, then confirm the run."""
        target = self.trigger_target()
        if target is not None:
            self.app.choose_playbook(target)

    def export_name(self) -> str:
        """Name the export of this screen's focused table, for its file name."""
        return " ".join(self.crumbs[1:]) or "dashboard"

    def export_rows(self) -> tuple[list[str], object] | None:
        """Return the header and rows to export: by default the focused table, or the screen's
        first table, as shown. Screens whose table is a window on a larger set override this."""
        table = self.focused if isinstance(self.focused, DataTable) else None
        if table is None:
            tables = list(self.query(DataTable))
            table = tables[0] if tables else None
        if table is None:
            return None
        return table_content(table)

    def action_export_csv(self) -> None:
        """Save the focused table to a CSV file in the data directory and show its path."""
        content = self.export_rows()
        if content is None:
            self.notify("This screen has no table to export.", severity="warning")
            return
        header, rows = content
        self._export(export_path(self.export_name()), header, rows)

    @work(thread=True, group="export", exit_on_error=False, name="CSV export")
    def _export(self, path: Path, header: list[str], rows: object) -> None:
        try:
            count = write_csv(path, header, rows() if callable(rows) else rows)
        except OSError as error:
            self.app.call_from_thread(self.notify, f"CSV export failed: {error}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"{count:,} rows saved to {path}", title="CSV export")

    def action_toggle_automatic(self) -> None:
        """Pause automatic playbooks, or resume them."""
        self.app.action_toggle_automatic()

    def cache_changed(self, what: str) -> None:
        """Called by the app when the cache changed: "sync", "dispatch", "run" or "pause". Screens
        that show what changed re-read it."""
