"""CSV export of the console's tables into the platform's data directory."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import platformdirs
from textual.widgets import DataTable

from console.paths import APP_NAME


def export_dir() -> Path:
    """Return the folder that exports go to: `exports` in the user data directory."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "exports"


def export_path(name: str, folder: Path | None = None) -> Path:
    """Return a new file path for an export named `name`, with the time in UTC."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "table"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return (folder or export_dir()) / f"{slug}-{stamp}.csv"


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write `header` and `rows` to `path` (creating its folder) and return the number of rows.

    Raises `OSError` when the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if value is None else value for value in row])
            count += 1
    return count


def table_content(table: DataTable) -> tuple[list[str], list[list[str]]]:
    """Return a DataTable's column labels and rows as plain strings, as shown."""
    header = [column.label.plain for column in table.ordered_columns]
    rows = [[_plain(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]
    return header, rows


def _plain(cell: object) -> str:
    plain = getattr(cell, "plain", None)
    return plain if isinstance(plain, str) else str(cell)
