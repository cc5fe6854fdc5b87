"""Snapshot test of the dashboard on a fixed cache, with a fixed clock so the status line is stable.

Run `pytest tests/test_console_snapshot.py --snapshot-update` after an intended change of the look,
and review the SVG files in tests/__snapshots__ before committing them.
"""

from __future__ import annotations

from test_console import SIZE, company, make_app, make_cache, settle

# Days before T of the evaluations, oldest first, so that the trend column has a history.
EVALUATIONS = (7, 6, 5, 4, 3, 2, 1, 0)


def test_dashboard_snapshot(snap_compare, tmp_path):
    path = tmp_path / "cache.db"
    make_cache(path, company(newcomers=3), evaluations=EVALUATIONS)

    # The dashboard loads on a worker thread, so the screenshot waits for it.
    assert snap_compare(make_app(path), terminal_size=SIZE, run_before=settle)
