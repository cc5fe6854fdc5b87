"""Column widths of a DataTable whose last column takes the width the others leave."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable


def last_column_width(table: DataTable, widths: Sequence[int], chrome: int, minimum: int = 20) -> int:
    """Return the width in cells for a last column of `table` after columns of `widths`, so that the
    table needs no sideways scroll. `chrome` is the cells taken by the table's border and scrollbar."""
    padding = 2 * table.cell_padding * (len(widths) + 1)
    return max(minimum, table.size.width - sum(widths) - padding - chrome)
