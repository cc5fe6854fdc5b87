"""CSV export of console tables: the whole segment, and any other focused table as shown."""

from __future__ import annotations

import csv

import pytest
from test_console import SIZE, company, make_app, make_cache, settle

from console.app import export
from console.app.screens.segment import SegmentScreen
from store import segments as seg


@pytest.fixture
def exports(tmp_path, monkeypatch):
    folder = tmp_path / "exports"
    monkeypatch.setattr(export, "export_dir", lambda: folder)
    return folder


async def wait_for_file(pilot, folder):
    for _ in range(50):
        await settle(pilot)
        files = sorted(folder.glob("*.csv")) if folder.exists() else []
        if files:
            return files[-1]
    raise AssertionError("no CSV file was written")


async def test_export_whole_segment(tmp_path, exports):
    path = tmp_path / "cache.db"
    make_cache(path, company(newcomers=250))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_segment(seg.NOT_YET_ACTIVATED, ("Dashboard",))
        await settle(pilot)
        assert isinstance(app.screen, SegmentScreen)
        await pilot.press("e")
        written = await wait_for_file(pilot, exports)
    with written.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "id"
    # More members than one loaded page, so the export read the whole segment.
    ids = [row[0] for row in rows[1:]]
    assert len(ids) >= 250
    assert "new-0249" in ids
    assert written.name.startswith("not-yet-activated-")


async def test_export_dashboard_table(tmp_path, exports):
    path = tmp_path / "cache.db"
    make_cache(path, company())
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("e")
        written = await wait_for_file(pilot, exports)
    with written.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "Segment"
    assert [row[0] for row in rows[1:]] == [definition.name for definition in seg.LIFECYCLE]


def test_write_csv_counts_rows(tmp_path):
    target = tmp_path / "deep" / "out.csv"
    assert export.write_csv(target, ["a", "b"], [[1, None], ["x", "y"]]) == 2
    assert target.read_text(encoding="utf-8").splitlines() == ["a,b", "1,", "x,y"]
