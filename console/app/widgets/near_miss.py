"""Near misses: the segments an entity is one condition away from entering or leaving."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from rich.text import Text

from console.app.widgets.explanation import show_value
from console.app.widgets.text import clean
from store.engine import Condition, Verdict


class NearMiss(NamedTuple):
    """One segment that a change of one condition would make the entity enter or leave."""

    segment: str
    # "enter" or "leave", as `Verdict.near_miss` returns it.
    direction: str
    condition: Condition


def near_misses(verdicts: dict[str, Verdict], order: Iterable[str]) -> list[NearMiss]:
    """Return the near misses among `verdicts`, in `order`: entries first, then exits."""
    found = []
    for name in order:
        verdict = verdicts.get(name)
        miss = None if verdict is None else verdict.near_miss()
        if miss is not None:
            found.append(NearMiss(name, *miss))
    found.sort(key=lambda miss: miss.direction != "enter")
    return found


def near_misses_text(misses: list[NearMiss]) -> Text:
    """Render near misses, one line each: the segment, then the condition with its value and threshold."""
    if not misses:
        return Text("none: every segment is more than one condition away", style="dim", end="")
    width = max(len(miss.segment) for miss in misses)
    lines = []
    for miss in misses:
        line = Text(end="")
        if miss.direction == "enter":
            line.append("could enter ", style="green")
        else:
            line.append("could leave ", style="yellow")
        line.append(miss.segment.ljust(width), style="bold")
        line.append("  ")
        condition = miss.condition
        line.append("✓ " if condition.passed else "✗ ", style="green" if condition.passed else "red")
        line.append(clean(condition.name))
        line.append(": ", style="dim")
        line.append(show_value(condition.value), style="bold")
        line.append(f"   threshold {clean(condition.threshold)}", style="dim")
        if miss.direction == "leave":
            line.append("   (the only condition that holds)", style="dim")
        lines.append(line)
    return Text("\n", end="").join(lines)
