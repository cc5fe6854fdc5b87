"""Display of playbook actions: an action's status and the destination's last response."""

from __future__ import annotations

from rich.text import Text

from console.app.widgets.text import age, clean
from store.runs import Action, Attempt

STATUS_STYLES = {"queued": "yellow", "sending": "yellow", "sent": "green", "failed": "bold red"}


def action_status(action: Action, now: int) -> Text:
    """Render an action's status at `now` (epoch ms). A held-out row shows the state of its notice,
    if it has one, and a queued action that is not due yet shows when it is due."""
    if action.held_out:
        text = Text("held out", style="dim", end="")
        if action.notice:
            text.append(f" (notice {action.notice})", style="dim")
        return text
    text = Text(action.status, style=STATUS_STYLES.get(action.status, ""), end="")
    if action.status == "queued" and action.next_attempt_at is not None and action.next_attempt_at > now:
        waiting = "retry" if action.attempts else "due"
        text.append(f", {waiting} in {age(action.next_attempt_at - now)}", style="dim")
    return text


def last_response(attempt: Attempt | None) -> Text:
    """Render the destination's response to an attempt: the HTTP status and the start of the body,
    or the error when no response came."""
    if attempt is None:
        return Text("", end="")
    if attempt.status_code is None:
        return Text(clean(attempt.error or "no response"), style="red", end="")
    style = "green" if 200 <= attempt.status_code < 300 else "red"
    text = Text(f"HTTP {attempt.status_code}", style=style, end="")
    body = clean(attempt.response_excerpt).strip()
    if body:
        text.append(" ")
        text.append(body, style="dim")
    return text
