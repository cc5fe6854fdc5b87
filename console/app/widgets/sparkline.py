"""A trend as a string of Unicode block characters, for a table cell."""

from __future__ import annotations

from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int | float], width: int = 20) -> str:
    """Render the last `width` values as block characters scaled between their min and max.

    A flat series is drawn at mid height, so that it reads as "no change" rather than "zero".
    """
    points = list(values)[-width:]
    if not points:
        return ""
    low, high = min(points), max(points)
    if high == low:
        return BARS[len(BARS) // 2 - 1] * len(points)
    top = len(BARS) - 1
    return "".join(BARS[round((value - low) / (high - low) * top)] for value in points)
