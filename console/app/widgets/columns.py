"""Helpers of DataTables: the width of a last column that takes what the others leave, and
refilling rows without moving the cursor."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from textual.widgets import DataTable


def last_column_width(table: DataTable, widths: Sequence[int], chrome: int, minimum: int = 20) -> int:
    """Return the width in cells for a last column of `table` after columns of `widths`, so that the
    table needs no sideways scroll. `chrome` is the cells taken by the table's border and scrollbar."""
    padding = 2 * table.cell_padding * (len(widths) + 1)
    return max(minimum, table.size.width - sum(widths) - padding - chrome)


@contextmanager
def keep_cursor(table: DataTable) -> Iterator[None]:
    """Clear the rows of `table` for the caller to add again. Afterwards, put the cursor back on the
    row with the same key (or on the same row number when that key is gone) and restore the scroll
    position, which clearing resets."""
    row = table.cursor_row
    scroll_y = table.scroll_y
    key = None
    if table.row_count:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    table.clear()
    yield
    if key is not None and key in table.rows:
        row = table.get_row_index(key)
    if table.row_count:
        table.move_cursor(row=min(row, table.row_count - 1), animate=False, scroll=False)
    # The new rows are laid out on the next refresh, so the scroll waits for it.
    table.call_after_refresh(table.scroll_to, y=scroll_y, animate=False)
