"""Tests of the Textual console, driven through Pilot on a real cache in a temporary folder."""

from __future__ import annotations

import html
import re
import socket
import sqlite3
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from console.app import SegopsApp
from console.app.screens.account import AccountScreen, MemberTable
from console.app.screens.dashboard import DashboardScreen, SegmentTable
from console.app.screens.event import EventScreen
from console.app.screens.help import HelpScreen
from console.app.screens.segment import MAX_PAGES, PAGE_SIZE, FilterInput, MembersTable, SegmentScreen
from console.app.screens.user import EventTable, UserScreen
from console.app.widgets.sparkline import sparkline
from console.app.widgets.status import StatusLine
from console.app.widgets.text import clean, plain
from console.config import Config
from store import segments as seg
from store.db import open_cache
from store.ingest import ingest_batch
from store.memberships import refresh
from store.settings import DAY_MS, Settings
from store.timeparse import format_ms, parse_time_ms

T = parse_time_ms("2026-06-15T12:00:00Z")
SIZE = (160, 48)
MARKUP_ID = "[bold red]x[/]"
ESCAPE_ID = "\x1b[31mevil"


class Builder:
    """Hand-made Segment messages at times relative to T."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []

    def add(self, message: dict) -> None:
        message.setdefault("messageId", f"m-{len(self.items) + 1}")
        self.items.append((f"test #{len(self.items) + 1}", message))

    def track(self, user: str, event: str, days_ago: float, **properties) -> None:
        self.add({"type": "track", "userId": user, "event": event, "properties": properties,
                  "timestamp": format_ms(T - int(days_ago * DAY_MS))})

    def identify(self, user: str, days_ago: float, **traits) -> None:
        self.add({"type": "identify", "userId": user, "traits": traits,
                  "timestamp": format_ms(T - int(days_ago * DAY_MS))})

    def group(self, user: str, account: str, days_ago: float, **traits) -> None:
        self.add({"type": "group", "userId": user, "groupId": account, "traits": traits,
                  "timestamp": format_ms(T - int(days_ago * DAY_MS))})


def company(newcomers: int = 0) -> Builder:
    """Build a small company: a champion power user, a cancelled user, an idle one and their account
    at its seat limit. Two more users have a markup id and a terminal escape id. `newcomers` users
    signed up two days ago and never activated."""
    build = Builder()
    build.identify("u-ann", 100, email="ann@acme.example", name="Ann Lee", team="ops")
    build.track("u-ann", "Signed Up", 100)
    build.track("u-ann", "Project Created", 99)
    features = ["Task Created", "Comment Added", "File Uploaded", "Report Viewed", "Dashboard Shared"]
    for day in range(20):
        build.track("u-ann", features[day % len(features)], day + 0.5)
    build.track("u-ann", "NPS Survey Submitted", 3, score=10)
    build.group("u-ann", "acme", 100, name="Acme Inc", plan="free")

    build.identify("u-bob", 90, email="bob@acme.example", name="Bob Stone", team="sales")
    build.track("u-bob", "Signed Up", 90)
    build.track("u-bob", "Project Created", 89)
    build.track("u-bob", "Task Created", 40)
    build.group("u-bob", "acme", 90)

    build.identify("u-cat", 70, email="cat@acme.example", name="Cat Moss")
    build.track("u-cat", "Signed Up", 70)
    build.track("u-cat", "Subscription Cancelled", 10)
    build.group("u-cat", "acme", 70)

    build.identify(MARKUP_ID, 5, email="markup@evil.example", name="[link=http://x]click[/link]")
    build.track(MARKUP_ID, "Signed Up", 5)
    build.track(MARKUP_ID, "[blink]Evil Event[/]", 4)
    build.identify(ESCAPE_ID, 5, email="\x1b]0;title\x07esc@evil.example")
    build.track(ESCAPE_ID, "Signed Up", 5)

    for index in range(newcomers):
        build.track(f"new-{index:04d}", "Signed Up", 2)
    return build


def make_cache(path: Path, build: Builder, evaluations: tuple[int, ...] = (0,)) -> dict[str, int]:
    """Ingest `build` at T, evaluate at T minus each of `evaluations` days, and return the last populations."""
    db = open_cache(path)
    try:
        ingest_batch(db, build.items, source="test", received_at=T)
        for days_ago in evaluations:
            populations = refresh(db, Settings(), T - days_ago * DAY_MS).populations()
    finally:
        db.conn.close()
    return populations


def make_app(path: Path, source_url: str | None = None, write_key: str | None = None, *,
             clock=lambda: T, **options) -> SegopsApp:
    """Build the app over the cache at `path`; `options` set fields of the configuration."""
    config = Config(source_url=source_url, write_key=write_key, **options)
    return SegopsApp(path, config, clock=clock)


async def settle(pilot) -> None:
    """Wait until every worker is done and its messages are handled."""
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def screen_text(app: SegopsApp) -> str:
    """Return what the terminal shows, one line per row, read from an SVG screenshot."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for x, y, text in re.findall(r'<text[^>]*x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', app.export_screenshot()):
        rows.setdefault(float(y), []).append((float(x), html.unescape(text).replace("\xa0", " ")))
    return "\n".join("".join(text for _, text in sorted(row)) for _, row in sorted(rows.items()))


def cell(table: DataTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


def members(table: DataTable) -> list[str]:
    return [str(row.key.value) for row in table.ordered_rows]


@pytest.fixture
def small_cache(tmp_path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "cache.db"
    # The first evaluation of a cache records no transitions, so the one 30 days earlier gives
    # the evaluation at T some.
    return path, make_cache(path, company(newcomers=3), evaluations=(30, 0))


@pytest.fixture
def large_cache(tmp_path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "cache.db"
    return path, make_cache(path, company(newcomers=520))


# Display helpers.


def test_plain_text_strips_controls():
    assert plain(MARKUP_ID).plain == MARKUP_ID
    assert plain(MARKUP_ID).spans == []
    assert clean(ESCAPE_ID) == "[31mevil"
    assert clean("a\x9bb\x07c\x7fd\u202ee\tf\ng") == "abcde f g"
    assert clean(None) == ""


def test_sparkline_scales_to_range():
    assert sparkline([0, 7]) == "▁█"
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline([]) == ""
    assert len(sparkline(range(100), width=30)) == 30


# The dashboard.


async def test_dashboard_shows_every_population(small_cache):
    path, populations = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        tables = list(app.screen.query(SegmentTable))
        rows = {name: table for table in tables for name in members(table)}
        assert list(rows) == [definition.name for definition in seg.ALL_SEGMENTS]
        for name, population in populations.items():
            assert cell(rows[name], name, "population") == f"{population:,}"
        assert populations[seg.NEW] == 5
        assert populations[seg.CHAMPION] == 1

        status = str(app.screen.query_one(StatusLine).content)
        assert "no source configured" in status
        assert "messages cached" in status
        assert app.screen.sub_title == "Dashboard"


async def test_enter_drills_down_escape_returns(small_cache):
    path, _ = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lifecycle = app.screen.query_one("#lifecycle", SegmentTable)
        lifecycle.move_cursor(row=members(lifecycle).index(seg.CHAMPION))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SegmentScreen)
        assert app.screen.sub_title == "Dashboard › Champion"
        table = app.screen.query_one(MembersTable)
        assert members(table) == ["u-ann"]
        header = str(app.screen.query_one("#segment-header", Static).content)
        assert "population 1" in header
        assert seg.BY_NAME[seg.CHAMPION].rule in header

        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, UserScreen)
        assert app.screen.sub_title == "Dashboard › Champion › u-ann"
        summary = str(app.screen.query_one("#user-summary", Static).content)
        assert "ann@acme.example" in summary
        assert "Champion, Power Users" in summary
        explanation = str(app.screen.query_one("#explanation", Static).content)
        assert "● Champion  member" in explanation
        assert "● Power Users  member" in explanation
        assert "✓ usage score" in explanation
        assert "✗" in explanation
        events = app.screen.query_one("#events", DataTable)
        assert events.row_count == 25
        assert "NPS Survey Submitted" in [str(value) for value in events.get_column("event")]
        traits = app.screen.query_one("#traits", DataTable)
        assert [str(value) for value in traits.get_column("key")] == ["email", "name", "team"]
        transitions = app.screen.query_one("#transitions", DataTable)
        changes = {(str(segment), str(change)) for segment, change in zip(
            transitions.get_column("segment"), transitions.get_column("change"))}
        assert changes == {(seg.CHURNED, "left"), (seg.ACTIVATED_NOT_RETAINED, "left"),
                           (seg.CHAMPION, "entered"), (seg.POWER_USERS, "entered")}

        await pilot.press("escape")
        assert isinstance(app.screen, SegmentScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_account_screen_from_user(small_cache):
    path, populations = small_cache
    assert populations[seg.EXPANSION_READY] == 1
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_user("u-bob", ("Dashboard",))
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AccountScreen)
        assert app.screen.sub_title == "Dashboard › u-bob › acme"
        summary = str(app.screen.query_one("#account-summary", Static).content)
        assert "Acme Inc" in summary
        assert "plan free" in summary
        assert "seats used 3 / 3" in summary
        assert f"in {seg.EXPANSION_READY}" in summary
        usage = app.screen.query_one("#usage", DataTable)
        assert [str(value) for value in usage.get_column("limit")] == ["seats", "projects"]
        explanation = str(app.screen.query_one("#expansion", Static).content)
        assert "✓ seats used: 3" in explanation
        assert "✓ teams: 2" in explanation

        table = app.screen.query_one("#account-members", DataTable)
        assert members(table) == ["u-ann", "u-bob", "u-cat"]
        assert app.screen.focused is table
        await pilot.press("down", "down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, UserScreen)
        assert app.screen.user_id == "u-cat"
        assert app.screen.sub_title == "Dashboard › u-bob › acme › u-cat"
        await pilot.press("escape", "escape", "escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_unknown_user_shows_message(small_cache):
    path, _ = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_user("nobody", ("Dashboard",))
        await settle(pilot)
        assert "unknown user" in str(app.screen.query_one("#user-summary", Static).content)
        await pilot.press("a")
        assert isinstance(app.screen, UserScreen)


@pytest.mark.parametrize("key", ["f1", "question_mark"])
async def test_help_lists_screen_bindings(small_cache, key):
    path, _ = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_segment(seg.POWER_USERS, ("Dashboard",))
        await settle(pilot)
        await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one(DataTable)
        ids = [str(value) for value in table.get_column_at(2)]
        actions = [str(value) for value in table.get_column_at(1)]
        for binding_id in ("segment.open", "segment.back", "segment.filter", "segment.sort",
                           "segment.direction", "segment.refresh", "app.quit", "app.help", "app.palette"):
            assert binding_id in ids
        assert "Filter" in actions
        assert "Sort direction" in actions
        await pilot.press("escape")
        assert isinstance(app.screen, SegmentScreen)


@pytest.mark.parametrize("owner", [SegopsApp, DashboardScreen, SegmentTable, SegmentScreen, MembersTable,
                                   FilterInput, UserScreen, EventTable, EventScreen, AccountScreen,
                                   MemberTable, HelpScreen])
def test_bindings_have_ids_and_descriptions(owner):
    for binding in owner.BINDINGS:
        assert binding.id, binding
        assert binding.description, binding


async def test_filter_narrows_members(small_cache):
    path, _ = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        table = app.screen.query_one(MembersTable)
        assert members(table) == [ESCAPE_ID, MARKUP_ID, "new-0000", "new-0001", "new-0002"]

        await pilot.press("slash")
        assert isinstance(app.screen.focused, Input)
        await pilot.press(*"new-0001", "enter")
        await settle(pilot)
        assert members(table) == ["new-0001"]
        assert app.screen.focused is table
        assert "filter new-0001" in str(app.screen.query_one("#segment-header", Static).content)

        await pilot.press("slash", "ctrl+u", *"EVIL", "enter")
        await settle(pilot)
        assert members(table) == [ESCAPE_ID, MARKUP_ID]

        # Typed into the filter, q and ? are text, not the quit and help keys.
        await pilot.press("slash", "ctrl+u", *"q?", "enter")
        await settle(pilot)
        assert app.return_code is None
        assert isinstance(app.screen, SegmentScreen)
        assert app.screen.text == "q?"

        await pilot.press("slash", "ctrl+u", *"nothing-like-this", "enter")
        await settle(pilot)
        assert members(table) == []
        assert "no members match" in str(app.screen.query_one("#segment-header", Static).content)


async def test_sort_keys_change_order(small_cache):
    path, _ = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        table = app.screen.query_one(MembersTable)
        await pilot.press("S")
        await settle(pilot)
        assert members(table) == ["new-0002", "new-0001", "new-0000", MARKUP_ID, ESCAPE_ID]
        assert "sort User descending" in str(app.screen.query_one("#segment-header", Static).content)
        assert str(table.columns[table.ordered_columns[0].key].label) == "User ▼"

        await pilot.press("s")
        await settle(pilot)
        assert app.screen.sort == "email"
        header = str(app.screen.query_one("#segment-header", Static).content)
        assert "sort Email descending" in header
        # Users without an email sort as "" and so come last when descending.
        assert members(table)[:2] == [MARKUP_ID, ESCAPE_ID]


async def test_paging_keeps_a_page_window(large_cache):
    path, populations = large_cache
    population = populations[seg.NOT_YET_ACTIVATED]
    assert population > 500
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NOT_YET_ACTIVATED, ("Dashboard",))
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(MembersTable)
        assert table.row_count == PAGE_SIZE

        seen: list[str] = []
        for _ in range(200):
            key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
            if not seen or seen[-1] != key:
                seen.append(key)
            assert table.row_count <= MAX_PAGES * PAGE_SIZE
            await pilot.press("pagedown")
            await settle(pilot)
            if key == seen[-1] and len(seen) > 1 and table.cursor_row == table.row_count - 1:
                break
        assert seen == sorted(seen)
        last = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        assert last == "new-0519"
        assert screen._window[0].index > 0
        header = str(screen.query_one("#segment-header", Static).content)
        assert f"–{population:,} loaded" in header

        for _ in range(200):
            await pilot.press("pageup")
            await settle(pilot)
            if table.cursor_row == 0 and screen._window[0].index == 0:
                break
        first = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        assert first == ESCAPE_ID
        assert table.row_count <= MAX_PAGES * PAGE_SIZE


async def test_query_failure_shows_error(small_cache, monkeypatch):
    def broken_page(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr("console.app.screens.segment.members_page", broken_page)
    path, _ = small_cache
    app = make_app(path)
    shown: list[tuple[str, dict]] = []
    monkeypatch.setattr(app, "notify", lambda message, **options: shown.append((message, options)))
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        assert shown == [("OperationalError: disk I/O error",
                          {"title": "member page query failed", "severity": "error", "markup": False,
                           "timeout": 10})]
        assert isinstance(app.screen, SegmentScreen)
        assert "loading failed" in str(app.screen.query_one("#segment-header", Static).content)


async def test_account_segment_opens_account(small_cache):
    path, _ = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.EXPANSION_READY, ("Dashboard",))
        await settle(pilot)
        table = app.screen.query_one(MembersTable)
        assert members(table) == ["acme"]
        assert cell(table, "acme", "plan") == "free"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AccountScreen)
        assert app.screen.sub_title == f"Dashboard › {seg.EXPANSION_READY} › acme"


async def test_cdp_strings_shown_literally(small_cache):
    path, _ = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        table = app.screen.query_one(MembersTable)
        assert cell(table, MARKUP_ID, "id") == MARKUP_ID
        assert cell(table, MARKUP_ID, "name") == "[link=http://x]click[/link]"
        assert cell(table, ESCAPE_ID, "id") == "[31mevil"
        assert cell(table, ESCAPE_ID, "email") == "]0;titleesc@evil.example"
        shown = screen_text(app)
        assert MARKUP_ID in shown
        assert "[31mevil" in shown
        assert "\x1b" not in shown
        assert "\x07" not in shown

        table.move_cursor(row=members(table).index(MARKUP_ID))
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.sub_title == f"Dashboard › New › {MARKUP_ID}"
        events = app.screen.query_one("#events", DataTable)
        assert "[blink]Evil Event[/]" in [str(value) for value in events.get_column("event")]
        shown = screen_text(app)
        assert MARKUP_ID in shown
        assert "[blink]Evil Event[/]" in shown

        events.focus()
        events.move_cursor(row=[str(value) for value in events.get_column("event")].index("[blink]Evil Event[/]"))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, EventScreen)
        payload = str(app.screen.query_one("#event-payload", Static).content)
        assert '"event": "[blink]Evil Event[/]"' in payload
        assert "[blink]Evil Event[/]" in screen_text(app)
        await pilot.press("escape", "escape")

        table.move_cursor(row=members(table).index(ESCAPE_ID))
        await pilot.press("enter")
        await settle(pilot)
        assert "\x1b" not in app.screen.sub_title
        assert app.screen.sub_title.endswith("[31mevil")
        assert "\x1b" not in screen_text(app)


async def test_palette_jumps_to_segment_and_user(small_cache):
    path, _ = small_cache
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_user("u-bob", ("Dashboard",))
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"power users")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SegmentScreen)
        assert app.screen.sub_title == f"Dashboard › {seg.POWER_USERS}"
        assert len(app.screen_stack) == 2

        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"cat@acme")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, UserScreen)
        assert app.screen.user_id == "u-cat"
        assert app.screen.sub_title == "Dashboard › u-cat"


# The sync worker.


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_for(pilot, condition, seconds: float = 15.0) -> bool:
    for _ in range(int(seconds / 0.1)):
        if condition():
            return True
        await pilot.pause(0.1)
    return condition()


async def test_failing_source_shows_error(small_cache):
    path, _ = small_cache
    url = f"http://127.0.0.1:{closed_port()}"
    app = make_app(path, source_url=url, write_key="key")
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.sync_state.failed)
        await settle(pilot)
        status = str(app.screen.query_one(StatusLine).content)
        assert f"source {url}" in status
        assert "last sync failed" in status
        assert "cannot reach" in status
        assert "retry in" in status
        lifecycle = app.screen.query_one("#lifecycle", SegmentTable)
        assert cell(lifecycle, seg.CHAMPION, "population") == "1 stale"
        assert app.return_code is None


async def test_url_write_key_is_hidden(small_cache):
    path, _ = small_cache
    app = make_app(path, source_url=f"http://secret-key@127.0.0.1:{closed_port()}", write_key=None)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.sync_state.failed)
        await settle(pilot)
        assert "secret-key" not in screen_text(app)


def demo_server():
    try:
        from console.demo.server import DemoCDP
    except ImportError:
        pytest.skip("console.demo.server is not there yet")
    return DemoCDP(port=0, users=0, live_interval=0)


def newcomers(count: int) -> list[dict]:
    build = Builder()
    for index in range(count):
        build.track(f"late-{index:04d}", "Signed Up", 1)
    return [{**message, "messageId": f"late-{index}"} for index, (_, message) in enumerate(build.items)]


async def test_demo_sync_updates_populations(tmp_path):
    server = demo_server()
    server.append([message for _, message in company(newcomers=3).items])
    server.start()
    try:
        path = tmp_path / "cache.db"
        app = make_app(path, source_url=server.url, write_key=server.write_key, sync_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            state = app.sync_state
            assert await wait_for(pilot, lambda: state.report is not None)
            assert await wait_for(pilot, lambda: state.backfill is None)
            await settle(pilot)
            lifecycle = app.screen.query_one("#lifecycle", SegmentTable)
            assert cell(lifecycle, seg.NEW, "population") == "5"
            assert cell(lifecycle, seg.CHAMPION, "population") == "1"
            # The first sync of the cache computed a snapshot for each of the past days.
            assert len(cell(lifecycle, seg.NEW, "trend")) == 30

            server.append(newcomers(40))
            assert await wait_for(pilot, lambda: cell(lifecycle, seg.NEW, "population") == "45")
            status = str(app.screen.query_one(StatusLine).content)
            assert f"source {server.url}" in status
            assert "ok in" in status
            assert state.error is None
    finally:
        server.stop()


async def test_empty_feed_marks_populations_stale(tmp_path):
    server = demo_server()
    server.start()
    try:
        app = make_app(tmp_path / "cache.db", source_url=server.url, write_key=server.write_key)
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: app.sync_state.report is not None)
            await settle(pilot)
            lifecycle = app.screen.query_one("#lifecycle", SegmentTable)
            assert cell(lifecycle, seg.NEW, "population") == "0 stale"
    finally:
        server.stop()
