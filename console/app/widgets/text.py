"""Safe display of strings that come from the CDP, and the number and time formats of the console.

Ids, trait values, event names and emails come from the senders of events to the CDP. They are
shown as `rich.text.Text`, never parsed as markup, and stripped of terminal control characters,
so a value such as `[bold]x[/]` or `\\x1b[31m` is displayed literally and cannot restyle or move
the terminal's cursor.
"""

from __future__ import annotations

import orjson
from rich.style import Style
from rich.text import Text

from store.timeparse import format_ms

# C0 controls, DEL, C1 controls (which include the 8-bit CSI), and the Unicode bidirectional
# overrides and isolates, which can reorder the displayed text. Tab and line breaks become a space
# so that words on either side stay apart in a one-line cell.
_SPACED = {ord("\t"), ord("\n"), ord("\r"), ord("\v"), ord("\f")}
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_TRANSLATION = {code: (" " if code in _SPACED else None) for code in _CONTROLS}
_TRANSLATION.update({0x2028: " ", 0x2029: " "})


def clean(value: object) -> str:
    """Return `value` as a string without control characters. None gives ""."""
    if value is None:
        return ""
    return str(value).translate(_TRANSLATION)


def plain(value: object, style: str | Style = "") -> Text:
    """Return `value` as literal text for a widget or a table cell: never markup, no controls."""
    return Text(clean(value), style=style, end="")


def json_text(value: object) -> str:
    """Format a trait value: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def number(value: int | float | None) -> str:
    """Format a number with thousands separators. None gives ""."""
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def count(value: int, noun: str) -> str:
    """Format a count with its noun, plural unless the count is 1: "1 page", "1,200 pages"."""
    return f"{value:,} {noun}" if value == 1 else f"{value:,} {noun}s"


def change(value: int | None) -> Text:
    """Format a population change as signed text: green for a rise, red for a fall."""
    if value is None:
        return Text("–", style="dim", end="")
    if value > 0:
        return Text(f"+{value:,}", style="green", end="")
    if value < 0:
        return Text(f"−{-value:,}", style="red", end="")
    return Text("0", style="dim", end="")


def age(ms: int | None) -> str:
    """Format a duration in milliseconds compactly, to the second: 0s, 12s, 5m 3s, 2h 10m, 4d 3h."""
    if ms is None:
        return ""
    if ms < 0:
        return "in the future"
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def moment(ms: int | None) -> str:
    """Format epoch ms as `YYYY-MM-DD HH:MM:SS` UTC. None gives ""."""
    if ms is None:
        return ""
    return format_ms(ms)[:19].replace("T", " ")
