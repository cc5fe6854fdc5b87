"""The health screen and the segment chart, pushed on the console app over a real cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Messages, days
from test_console import SIZE, T, make_app, screen_text, settle
from test_reports import make_playbook, split_users, start_run
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from console.app.screens.health import HealthScreen, HealthTable
from console.app.screens.segment_chart import RANGES, SegmentChartScreen
from store import runs
from store import segments as seg
from store.db import open_cache
from store.memberships import refresh
from store.reports import ReportSettings, newcombe_interval
from store.settings import Settings

HOSTILE_PLAYBOOK = "[bold red]boom[/]"
HOSTILE_OPERATOR = "\x1b[31mmallory"


@pytest.fixture
def health_cache(tmp_path) -> Path:
    """70 users signed up 3 days before T. A Not-Yet-Activated run 2 days before T treated 40 of
    them and held out 30; every treated user got the email, 10 opened it, and 20 activated 12
    hours before T. A Power Users run of one user has a playbook id and an operator that look
    like markup and a terminal escape."""
    path = tmp_path / "cache.db"
    playbook = make_playbook()
    treated, held = split_users(playbook, 40, 30)
    db = open_cache(path)
    messages = Messages()
    for user in treated + held:
        messages.track(user, "Signed Up", T - days(3))
    for user in treated:
        messages.track(user, "Email Delivered", T - days(2) + 60_000)
    for user in treated[:10]:
        messages.track(user, "Email Opened", T - days(2) + 120_000)
    for user in treated[:20]:
        messages.track(user, "Project Created", T - days(0.5))
    messages.ingest(db)
    for days_ago in (8, 2, 1, 0):
        refresh(db, Settings(), T - days(days_ago))
    start_run(db, playbook, treated + held, T - days(2))
    hostile = make_playbook(HOSTILE_PLAYBOOK, seg.POWER_USERS, holdout_share=0.0)
    runs.create_run(db, hostile, runs.Target("user", treated[0]), operator=HOSTILE_OPERATOR, now=T - days(1),
                    users=[treated[0]])
    db.conn.close()
    return path


def cell(table: DataTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


async def open_health(pilot) -> HealthScreen:
    await pilot.app.push_screen(HealthScreen(ReportSettings()))
    await settle(pilot)
    assert isinstance(pilot.app.screen, HealthScreen)
    return pilot.app.screen


async def test_health_table_shows_run_and_outcome(health_cache):
    app = make_app(health_cache)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_health(pilot)
        table = screen.query_one(HealthTable)
        assert [str(row.key.value) for row in table.ordered_rows] == [d.name for d in seg.ALL_SEGMENTS]

        nya = seg.NOT_YET_ACTIVATED
        assert cell(table, nya, "population") == "50"
        assert cell(table, nya, "day") == "▼ 20"
        assert cell(table, nya, "week") == "▲ 50"
        assert cell(table, nya, "run") == "#1 · 2d"
        assert cell(table, nya, "sent") == "40"
        assert cell(table, nya, "open") == "25.0%"
        assert cell(table, nya, "cta") == "0.0%"
        assert cell(table, nya, "treated") == "50.0%"
        assert cell(table, nya, "held_out") == "0.0%"
        _, low, high = newcombe_interval(20, 40, 0, 30)
        difference = table.get_cell(nya, "difference")
        assert difference.plain == f"+50.0 [{100 * low:+.1f}, {100 * high:+.1f}] …"
        assert difference.style == "green"
        assert cell(table, nya, "fresh") == "0s"
        assert cell(table, nya, "trend") != ""

        assert cell(table, seg.POWER_USERS, "difference") == "too few users"
        assert cell(table, seg.CHURNED, "run") == "no run"


async def test_health_detail_shows_cdp_strings_as_text(health_cache):
    app = make_app(health_cache)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_health(pilot)
        table = screen.query_one(HealthTable)
        table.move_cursor(row=table.get_row_index(seg.POWER_USERS))
        await pilot.pause()

        detail = screen.query_one("#health-detail", Static).content
        assert f"#2 {HOSTILE_PLAYBOOK}" in detail.plain
        assert "[31mmallory" in detail.plain
        assert "\x1b" not in detail.plain
        assert not any(span.style == "bold red" for span in detail.spans)
        assert f"#2 {HOSTILE_PLAYBOOK}" in screen_text(app)

        table.move_cursor(row=table.get_row_index(seg.NOT_YET_ACTIVATED))
        await pilot.pause()
        detail = str(screen.query_one("#health-detail", Static).content)
        assert "40 sent, 40 delivered, 10 opened (25.0%)" in detail
        assert "activated (Project Created) within 14 days" in detail
        assert "treated 50.0% (20/40) against held out 0.0% (0/30)" in detail
        assert "window open until" in detail


async def test_enter_opens_segment_chart(health_cache):
    app = make_app(health_cache)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_health(pilot)
        table = screen.query_one(HealthTable)
        table.move_cursor(row=table.get_row_index(seg.NOT_YET_ACTIVATED))
        await pilot.press("enter")
        await settle(pilot)

        chart = app.screen
        assert isinstance(chart, SegmentChartScreen)
        assert chart.sub_title.endswith(f"Health › {seg.NOT_YET_ACTIVATED}")
        assert [population for _, population in chart.points] == [0, 70, 70, 50]
        assert [report.run.id for report in chart.reports] == [1]
        rendered = chart.query_one(PlotextPlot).render().plain
        assert "#1" in rendered
        assert "population over the last 30 days" in rendered
        runs_table = chart.query_one("#chart-runs", DataTable)
        assert cell(runs_table, "1", "treated") == "50.0% (20/40)"
        assert "1 runs marked" in str(chart.query_one("#chart-header", Static).content)

        await pilot.press("t")
        await settle(pilot)
        assert chart.time_range == RANGES[1]
        assert "population over the last 7 days" in chart.query_one(PlotextPlot).render().plain

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_chart_marks_runs_of_its_segment_only(health_cache):
    app = make_app(health_cache)
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(SegmentChartScreen(seg.POWER_USERS, ReportSettings()))
        await settle(pilot)
        chart = app.screen
        assert [report.run.id for report in chart.reports] == [2]
        runs_table = chart.query_one("#chart-runs", DataTable)
        assert cell(runs_table, "2", "playbook") == HOSTILE_PLAYBOOK
        assert HOSTILE_PLAYBOOK in screen_text(app)


async def test_chart_without_snapshots(tmp_path):
    open_cache(tmp_path / "empty.db").conn.close()
    app = make_app(tmp_path / "empty.db")
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(SegmentChartScreen(seg.NEW, ReportSettings()))
        await settle(pilot)
        header = str(app.screen.query_one("#chart-header", Static).content)
        assert "no snapshot in this range" in header
        assert "0 runs marked" in header


async def test_refresh_shows_a_new_run(health_cache):
    app = make_app(health_cache)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_health(pilot)
        db = open_cache(health_cache)
        start_run(db, make_playbook(holdout_share=0.0), ["late-user"], T - days(0.1))
        db.conn.close()
        await pilot.press("r")
        await settle(pilot)
        assert cell(screen.query_one(HealthTable), seg.NOT_YET_ACTIVATED, "run") == "#3 · 2h 24m"
