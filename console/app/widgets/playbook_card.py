"""A playbook's card: its description, tone, steps, holdout share, cooldown and exclusions."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text

from console.app.widgets.text import count, plain
from console.playbooks.catalog import Destination, Playbook, delay_words

CHANNEL_NAMES = {"email": "email", "in_app": "in-app message", "cs_task": "CS task"}


def playbook_card(playbook: Playbook, destinations: Mapping[str, Destination]) -> Text:
    """Render everything an operator should read before triggering `playbook`."""
    card = Text(end="")
    card.append_text(plain(playbook.name, style="bold"))
    card.append("  ")
    card.append_text(plain(playbook.id, style="dim"))
    card.append("\nfor ", style="dim")
    card.append(playbook.segment, style="bold")
    if playbook.description:
        card.append("\n\n")
        card.append_text(plain(playbook.description))
    if playbook.tone:
        card.append("\ntone ", style="dim")
        card.append_text(plain(playbook.tone, style="italic"))

    card.append("\n\nsteps", style="dim")
    for index, step in enumerate(playbook.steps, start=1):
        destination = destinations.get(step.destination)
        card.append(f"\n {index}. ")
        card.append(CHANNEL_NAMES.get(step.channel, step.channel), style="bold")
        card.append(" via ", style="dim")
        card.append_text(plain(step.destination))
        if destination is not None and destination.type != step.destination:
            card.append_text(plain(f" ({destination.type})", style="dim"))
        card.append(": ", style="dim")
        card.append_text(plain(step.content, style="cyan"))
        card.append(f", {delay_words(step.delay_minutes)}", style="dim")

    card.append("\n\nholdout ", style="dim")
    card.append(f"{playbook.holdout_share:.0%}", style="bold")
    card.append(" of the targeted users, the same users on every run", style="dim")
    card.append("\ncooldown ", style="dim")
    if playbook.cooldown_days:
        card.append(count(playbook.cooldown_days, "day"), style="bold")
        card.append(" without a repeat to the same user", style="dim")
    else:
        card.append("none", style="bold")
    card.append("\nexcludes ", style="dim")
    card.append(", ".join(playbook.exclude_segments) or "nobody", style="bold")
    card.append("\nautomatic ", style="dim")
    card.append("on entry into the segment" if playbook.on_entry else "off (by hand only)")
    return card
