"""The base of the console's screens: a breadcrumb, and visible errors of the screen's workers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from console.app.widgets.text import clean

if TYPE_CHECKING:
    from console.app.app import SegopsApp


class ConsoleScreen(Screen):
    """A screen at the end of a breadcrumb such as ("Dashboard", "Power Users", "user-123")."""

    app: SegopsApp

    def __init__(self, crumbs: tuple[str, ...]) -> None:
        super().__init__()
        self.crumbs = crumbs
        self.sub_title = " › ".join(clean(crumb) for crumb in crumbs)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Worker state messages do not bubble, so each screen hands its failures to the app.
        if event.state == WorkerState.ERROR:
            self.app.show_worker_error(event.worker)
