"""Console screens reached from the dashboard: health, and the account's segment timeline."""

from __future__ import annotations

from test_console import SIZE, T, company, make_app, make_cache, settle
from textual.widgets import DataTable

from console.app.screens.account import AccountScreen
from console.app.screens.dashboard import DashboardScreen
from console.app.screens.health import HealthScreen
from store import segments as seg
from store.db import open_cache
from store.memberships import refresh
from store.settings import DAY_MS, Settings


async def test_health_opens_from_dashboard(tmp_path):
    path = tmp_path / "cache.db"
    make_cache(path, company())
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("h")
        await settle(pilot)
        assert isinstance(app.screen, HealthScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_account_timeline_shows_entry(tmp_path):
    path = tmp_path / "cache.db"
    build = company()
    # The account is first evaluated before its third user joined, so it enters later.
    build.group("u-dan", "beta", 50, plan="free")
    build.group("u-eve", "beta", 50)
    build.group("u-fay", "beta", 1)
    make_cache(path, build, evaluations=(3, 0))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_account("beta", ("Dashboard",))
        await settle(pilot)
        assert isinstance(app.screen, AccountScreen)
        table = app.screen.query_one("#account-transitions", DataTable)
        rows = [table.get_row_at(index) for index in range(table.row_count)]
        assert [str(row[1]) for row in rows] == [seg.EXPANSION_READY]
        assert str(rows[0][2]) == "entered"
        assert "seats used: 3" in str(rows[0][3])


def test_account_timeline_fixture_enters(tmp_path):
    # The same cache outside the console: the account is a member only at the second evaluation.
    path = tmp_path / "cache.db"
    build = company()
    build.group("u-dan", "beta", 50, plan="free")
    build.group("u-eve", "beta", 50)
    build.group("u-fay", "beta", 1)
    make_cache(path, build, evaluations=(3,))
    db = open_cache(path)
    try:
        assert "beta" not in refresh(db, Settings(), T - 3 * DAY_MS).members[seg.EXPANSION_READY]
        assert "beta" in refresh(db, Settings(), T).members[seg.EXPANSION_READY]
    finally:
        db.conn.close()


async def test_keymap_from_configuration(tmp_path):
    path = tmp_path / "cache.db"
    make_cache(path, company())
    app = make_app(path, keymap={"dashboard.health": "H"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("h")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("H")
        await settle(pilot)
        assert isinstance(app.screen, HealthScreen)


def test_keymap_value_is_checked():
    import pytest

    from console.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="keymap.dashboard.health"):
        parse_config({"keymap": {"dashboard.health": 3}}, "test.toml")
    assert parse_config({"keymap": {"dashboard.health": "H"}}, "test.toml").keymap == {"dashboard.health": "H"}
