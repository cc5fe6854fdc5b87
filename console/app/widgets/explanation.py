"""Rendering of segment verdicts: each condition with its value, threshold and ✓ or ✗."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from console.app.widgets.text import clean
from store.engine import Verdict


def show_value(value: object) -> str:
    """Format a condition's measured value: None is "none", floats lose trailing zeros."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return clean(value)


def verdict_text(name: str, verdict: Verdict) -> Text:
    """Render one segment's verdict: a heading line, then one line per condition."""
    text = Text(end="")
    if verdict.member:
        text.append("● ", style="bold green")
        text.append(name, style="bold")
        text.append("  member", style="green")
    else:
        text.append("○ ", style="dim")
        text.append(name, style="bold dim")
        text.append("  not a member", style="dim")
    text.append(f"  ({'every condition' if verdict.combine == 'all' else 'any one condition'})", style="dim")
    for condition in verdict.conditions:
        text.append("\n    ")
        text.append("✓ " if condition.passed else "✗ ", style="green" if condition.passed else "red")
        text.append(clean(condition.name))
        text.append(": ", style="dim")
        text.append(show_value(condition.value), style="bold")
        text.append(f"   threshold {clean(condition.threshold)}", style="dim")
    return text


def verdicts_text(verdicts: dict[str, Verdict], order: Iterable[str]) -> Text:
    """Render verdicts in `order`, members first, so the segments an entity is in come on top."""
    names = [name for name in order if name in verdicts]
    names.sort(key=lambda name: not verdicts[name].member)
    return Text("\n\n", end="").join(verdict_text(name, verdicts[name]) for name in names)
