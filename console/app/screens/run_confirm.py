"""The run confirmation: what a playbook's run would do for its target, computed without writing,
and the choice to confirm it, record it as a dry run, or cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Static
from textual.worker import Worker, WorkerState

from console.app.screens.base import WRITE_ACTIONS, TriggerTarget
from console.app.widgets.text import count, plain
from console.playbooks import ReadOnlyError, plan, trigger
from console.playbooks.catalog import Playbook
from store import segments as seg
from store.runs import Run, RunError, RunPlan

if TYPE_CHECKING:
    from console.app.app import SegopsApp

# Recipients listed in the preview: the first ones by user id.
PREVIEW_LIMIT = 20
DECISION_LABELS = {
    "queued": ("send", "green"),
    "held_out": ("held out", "yellow"),
    "excluded_cooldown": ("cooldown", "dim"),
    "excluded_rule": ("excluded", "dim"),
}


class PlanComputed(Message):
    """The run's plan, computed on a worker thread."""

    def __init__(self, plan: RunPlan) -> None:
        super().__init__()
        self.plan = plan


class RunWritten(Message):
    """The run (or dry run) was recorded by a worker thread."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run


class RunRejected(Message):
    """Planning or writing the run failed. `error` is the message to show."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def counts_text(run_plan: RunPlan, playbook: Playbook) -> Text:
    """Render the plan's counts, one decision a line, with what each one means."""
    counts = run_plan.counts
    steps = len(playbook.steps)
    rows = (
        ("targeted", counts.targeted, "user" if counts.targeted == 1 else "users", ""),
        ("held out", counts.held_out, "",
         f"the {playbook.holdout_share:.0%} holdout: sent nothing, measured against the treated users"),
        ("excluded by cooldown", counts.excluded_cooldown, "",
         f"reached by this playbook in the last {count(playbook.cooldown_days, 'day')}" if playbook.cooldown_days
         else "no cooldown"),
        ("excluded by rule", counts.excluded_rule, "",
         "members of " + ", ".join(playbook.exclude_segments) if playbook.exclude_segments else "no exclusion"),
        ("to send", counts.queued, "user" if counts.queued == 1 else "users",
         f"× {count(steps, 'step')} = {count(counts.queued * steps, 'action')}"),
    )
    text = Text(end="")
    for index, (label, value, unit, note) in enumerate(rows):
        if index:
            text.append("\n")
        text.append(f"{label:<22}", style="dim")
        text.append(f"{value:>10,}", style="bold green" if label == "to send" else "bold")
        if unit:
            text.append(f" {unit}")
        if note:
            text.append(f"   {note}", style="dim")
    return text


class RunConfirmScreen(ModalScreen[Run | None]):
    """Confirm a run of `playbook` for `target`. Dismisses with the recorded run, or None.

    Focus starts on Cancel. A run for a whole segment needs the segment's name typed before
    Confirm is enabled. A dry run records the run and its counts and queues nothing.
    """

    app: SegopsApp

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="run.cancel"),
        Binding("d", "dry_run", "Dry run", id="run.dry_run",
                tooltip="Record the run and its counts without queueing any action"),
    ]

    AUTO_FOCUS = "#cancel"

    def __init__(self, playbook: Playbook, target: TriggerTarget) -> None:
        super().__init__()
        self.playbook = playbook
        self.target = target
        self.plan: RunPlan | None = None
        self._writing = False

    @property
    def needs_name(self) -> bool:
        """Whether Confirm waits for the segment's name: a run for a whole segment."""
        return self.target.kind == "segment"

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog") as dialog:
            dialog.border_title = plain(f"Trigger {self.playbook.name} for {self.target.describe()}")
            dialog.border_subtitle = "Esc cancels"
            yield Static(self._summary(), id="confirm-summary")
            yield Static(Text("computing who would be sent what…", style="dim"), id="confirm-counts")
            yield Static(id="confirm-warnings")
            preview = DataTable(id="confirm-preview", cursor_type="row", zebra_stripes=True)
            preview.border_title = f"Preview: the first {PREVIEW_LIMIT} targeted users by id"
            yield preview
            if self.needs_name:
                yield Static(Text.assemble(
                    ("This run is for every member of the segment. Type ", ""), (self.target.id, "bold"),
                    (" to enable Confirm.", "")), id="confirm-name-note")
                yield Input(placeholder="the segment's name, as written above", id="confirm-name")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Dry run (d)", id="dry-run", disabled=True)
                yield Button("Confirm", id="confirm", variant="error", disabled=True)

    def _summary(self) -> Text:
        summary = Text(end="")
        summary.append("playbook ", style="dim")
        summary.append_text(plain(self.playbook.name, style="bold"))
        summary.append_text(plain(f" ({self.playbook.id}) for {self.playbook.segment}", style="dim"))
        summary.append("\ntarget ", style="dim")
        summary.append_text(plain(self.target.describe(), style="bold"))
        if self.target.kind == "account":
            entity = seg.BY_NAME[self.playbook.segment].entity
            reached = "its most active user, the account's contact" if entity == "account" else "each of its users"
            summary.append(f"  ({reached})", style="dim")
        return summary

    def on_mount(self) -> None:
        preview = self.query_one("#confirm-preview", DataTable)
        for key, label in (("user", "User"), ("email", "Email"), ("account", "Account"),
                           ("lifecycle", "Lifecycle"), ("decision", "Decision")):
            preview.add_column(label, key=key)
        self.query_one("#confirm-warnings").display = False
        self._compute()

    # The plan, without writing.

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False, name="run plan")
    def _compute(self) -> None:
        # A whole segment can have a million members, too many to plan on the UI thread.
        try:
            with self.app.database() as db:
                result = plan(db, self.playbook, self.target.target, now=self.app.clock(),
                              preview_limit=PREVIEW_LIMIT)
        except RunError as error:
            self.post_message(RunRejected(str(error)))
            return
        self.post_message(PlanComputed(result))

    def on_plan_computed(self, message: PlanComputed) -> None:
        self.plan = message.plan
        self.query_one("#confirm-counts", Static).update(counts_text(message.plan, self.playbook))
        warnings = self.query_one("#confirm-warnings", Static)
        warnings.display = bool(message.plan.warnings)
        warnings.update(Text("\n".join(f"note: {warning}" for warning in message.plan.warnings), style="yellow"))

        preview = self.query_one("#confirm-preview", DataTable)
        for recipient in message.plan.preview:
            label, style = DECISION_LABELS.get(recipient.decision, (recipient.decision, ""))
            preview.add_row(plain(recipient.user_id, style="bold"), plain(recipient.email), plain(recipient.account_id),
                            plain(recipient.lifecycle), Text(label, style=style))
        if not message.plan.preview:
            preview.add_row(Text("nobody is targeted", style="dim"), "", "", "", "")
        self._update_buttons()

    def on_run_rejected(self, message: RunRejected) -> None:
        self._writing = False
        self.query_one("#confirm-counts", Static).update(plain(message.error, style="bold red"))
        self.notify(message.error, title="Run not recorded", severity="error", markup=False, timeout=10)
        self._update_buttons()

    # The name check and the buttons.

    def name_typed(self) -> bool:
        """Return whether the segment's name is typed, or none is needed."""
        if not self.needs_name:
            return True
        return self.query_one("#confirm-name", Input).value.strip() == self.target.id

    def _update_buttons(self) -> None:
        ready = self.plan is not None and not self._writing
        self.query_one("#dry-run", Button).disabled = not ready
        self.query_one("#confirm", Button).disabled = not (ready and self.name_typed())

    @on(Input.Changed, "#confirm-name")
    def name_changed(self) -> None:
        self._update_buttons()

    @on(Input.Submitted, "#confirm-name")
    def name_submitted(self) -> None:
        # Enter moves to Confirm instead of pressing it, so that one more key confirms.
        confirm = self.query_one("#confirm", Button)
        if not confirm.disabled:
            confirm.focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self._writing:
            # Focus starts on Cancel, so an Enter meant as "confirm" lands here. The notice explains it.
            self.app.notify("Cancelled: nothing was queued. Tab to Confirm, or d for a dry run.",
                            title="Playbook run")
            self.dismiss(None)

    @on(Button.Pressed, "#dry-run")
    def action_dry_run(self) -> None:
        if self.plan is not None and not self._writing:
            self._start_write(dry_run=True)

    @on(Button.Pressed, "#confirm")
    def confirm_pressed(self) -> None:
        if self.plan is not None and not self._writing and self.name_typed():
            self._start_write(dry_run=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WRITE_ACTIONS and self.app.config.read_only:
            return False
        return True

    # Writing the run.

    def _start_write(self, dry_run: bool) -> None:
        self._writing = True
        self._update_buttons()
        self.query_one("#cancel", Button).disabled = True
        what = "the dry run" if dry_run else "the run and queueing its actions"
        self.query_one("#confirm-counts", Static).update(Text(f"recording {what}…", style="yellow"))
        self._write(dry_run)

    @work(thread=True, exclusive=True, group="write", exit_on_error=False, name="run write")
    def _write(self, dry_run: bool) -> None:
        try:
            with self.app.database() as db:
                run = trigger(db, self.app.config, self.playbook, self.target.target, now=self.app.clock(),
                              dry_run=dry_run)
        except (RunError, ReadOnlyError) as error:
            self.post_message(RunRejected(str(error)))
            return
        self.post_message(RunWritten(run))

    def on_run_written(self, message: RunWritten) -> None:
        self.dismiss(message.run)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # An unexpected failure, such as a locked cache, leaves the dialog open with Cancel usable.
        if event.state == WorkerState.ERROR:
            self._writing = False
            self.query_one("#cancel", Button).disabled = False
            self._update_buttons()
            self.app.show_worker_error(event.worker)
