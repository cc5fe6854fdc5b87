"""Tests of the console's near misses, movers, lifecycle flow and quarantine, on real caches."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from console.app import SegopsApp
from console.app.screens.account import AccountScreen
from console.app.screens.dashboard import DashboardScreen
from console.app.screens.event import EventScreen
from console.app.screens.flow import USER_LIMIT, FlowMatrix, FlowScreen, FlowUsers
from console.app.screens.help import HelpScreen
from console.app.screens.quarantine import (
    PAGE_SIZE, PAYLOAD_SHOWN_CHARS, MessageTable, QuarantineScreen, ReasonTable,
)
from console.app.screens.segment import MembersTable, MoversTable, SegmentScreen
from console.app.screens.user import UserScreen
from store import segments as seg
from store.db import open_cache
from store.engine import NOT_YET_SEEN
from store.ingest import ingest_batch
from store.normalize import REASONS
from store.raw import Unparsed
from store.settings import DAY_MS, Settings
from test_console import (
    ESCAPE_ID, MARKUP_ID, SIZE, T, company, make_app, make_cache, members, screen_text, settle,
)

HOSTILE_TYPE = "[blink]evil[/]"
HOSTILE_TEXT = "\x1b[2J[bold red]wipe[/]\x1b]0;title\x07"


def text_of(app: SegopsApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


def column(table: DataTable, key: str) -> list[str]:
    return [str(value) for value in table.get_column(key)]


def help_ids(app: SegopsApp) -> list[str]:
    return [str(value) for value in app.screen.query_one(DataTable).get_column_at(2)]


@pytest.fixture
def moving_cache(tmp_path) -> Path:
    """The small company evaluated 30 days before T and at T, with an account that became
    expansion ready in between: its second team joined 10 days before T."""
    build = company(newcomers=3)
    build.identify("u-dan", 50, email="dan@beta.example", team="red")
    build.track("u-dan", "Signed Up", 50)
    build.track("u-dan", "Task Created", 3)
    build.group("u-dan", "beta", 50, name="Beta Ltd")
    build.identify("u-eve", 10, email="eve@beta.example", team="blue")
    build.track("u-eve", "Signed Up", 10)
    build.group("u-eve", "beta", 10)
    path = tmp_path / "cache.db"
    make_cache(path, build, evaluations=(30, 0))
    return path


# Near misses on the user screen.


async def test_user_near_misses(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_user("u-bob", ("Dashboard",))
        await settle(pilot)
        misses = text_of(app, "#near-miss")
        # Bob is idle for 40 days: one condition keeps him out of Below-Threshold Usage, and only
        # the idle one keeps him At-Risk.
        assert "could enter Below-Threshold Usage" in misses
        assert "✗ days since last activity: 40   threshold < 14" in misses
        assert "could leave At-Risk" in misses
        assert "threshold in [14, 60) after activation" in misses
        assert "(the only condition that holds)" in misses
        lines = misses.splitlines()
        entries = [index for index, line in enumerate(lines) if line.startswith("could enter")]
        exits = [index for index, line in enumerate(lines) if line.startswith("could leave")]
        assert max(entries) < min(exits)
        assert "could leave At-Risk" in screen_text(app)


async def test_user_without_near_misses(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_user("nobody", ("Dashboard",))
        await settle(pilot)
        assert text_of(app, "#near-miss") == ""


# Movers on the segment screen.


async def test_segment_movers_counts_and_list(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.CHURNED, ("Dashboard",))
        await settle(pilot)
        counts = text_of(app, "#movers-counts")
        assert "last 24 hours: +1 entered, −1 left" in counts
        assert "last 7 days: +1 entered, −1 left" in counts
        table = app.screen.query_one(MoversTable)
        assert column(table, "id") == ["u-cat", "u-ann"]
        assert column(table, "change") == ["entered", "left"]
        assert column(table, "at") == ["2026-06-15 12:00:00", "2026-06-15 12:00:00"]
        assert column(table, "reason")[0].startswith("cancelled: 2026-06-05T12:00:00.000Z")


async def test_movers_outside_window_not_counted(moving_cache):
    # Eight days after the evaluation, its transitions are older than both windows.
    app = make_app(moving_cache, clock=lambda: T + 8 * DAY_MS)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.CHURNED, ("Dashboard",))
        await settle(pilot)
        counts = text_of(app, "#movers-counts")
        assert "last 24 hours: 0 entered, 0 left" in counts
        assert "last 7 days: 0 entered, 0 left" in counts
        assert "no one entered or left in the last 7 days" in counts
        assert not app.screen.query_one(MoversTable).display
        await pilot.press("m")
        assert app.screen.focused is app.screen.query_one(MembersTable)


async def test_mover_enter_opens_user(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.CHURNED, ("Dashboard",))
        await settle(pilot)
        await pilot.press("m")
        table = app.screen.query_one(MoversTable)
        assert app.screen.focused is table
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, UserScreen)
        assert app.screen.user_id == "u-ann"
        assert app.screen.sub_title == f"Dashboard › {seg.CHURNED} › u-ann"
        await pilot.press("escape")
        assert isinstance(app.screen, SegmentScreen)
        await pilot.press("m")
        assert app.screen.focused is app.screen.query_one(MembersTable)


async def test_account_mover_opens_account(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.EXPANSION_READY, ("Dashboard",))
        await settle(pilot)
        table = app.screen.query_one(MoversTable)
        assert column(table, "id") == ["beta"]
        assert column(table, "change") == ["entered"]
        assert "teams: 2" in column(table, "reason")[0]
        assert str(table.columns[table.ordered_columns[2].key].label) == "Account"
        await pilot.press("m", "enter")
        await settle(pilot)
        assert isinstance(app.screen, AccountScreen)
        assert app.screen.account_id == "beta"


async def test_mover_strings_shown_literally(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        ids = column(app.screen.query_one(MoversTable), "id")
        assert MARKUP_ID in ids
        assert "[31mevil" in ids
        visible = screen_text(app)
        assert MARKUP_ID in visible
        assert "\x1b" not in visible


# The lifecycle flow.


async def open_flow(app: SegopsApp, pilot) -> FlowScreen:
    await settle(pilot)
    await pilot.press("f")
    await settle(pilot)
    assert isinstance(app.screen, FlowScreen)
    return app.screen


def matrix_cell(screen: FlowScreen, before: str, now: str) -> str:
    return str(screen.query_one(FlowMatrix).get_cell(before, now))


def move_to(screen: FlowScreen, before: str, now: str) -> None:
    matrix = screen.query_one(FlowMatrix)
    matrix.move_cursor(row=matrix.get_row_index(before), column=matrix.get_column_index(now))


async def test_flow_matrix_has_new_row(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_flow(app, pilot)
        assert screen.sub_title == "Dashboard › Lifecycle flow"
        matrix = screen.query_one(FlowMatrix)
        assert [str(row.key.value) for row in matrix.ordered_rows] == [
            NOT_YET_SEEN, *(definition.name for definition in seg.LIFECYCLE), "Total"]
        # The markup and escape users and the 3 newcomers signed up in the last 7 days.
        assert matrix_cell(screen, NOT_YET_SEEN, seg.NEW) == "5"
        assert matrix_cell(screen, seg.ESTABLISHED, seg.CHAMPION) == "1"
        assert matrix_cell(screen, seg.CHURNED, seg.CHURNED) == "1"
        assert matrix_cell(screen, seg.CHAMPION, seg.AT_RISK) == "·"
        assert matrix_cell(screen, "Total", "Total") == "10"
        header = text_of(app, "#flow-header")
        assert "over the last 7 days" in header
        assert "the stage on 2026-06-08" in header
        assert "5 are new" in header


async def test_flow_window_switches_to_30_days(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_flow(app, pilot)
        await pilot.press("w")
        await settle(pilot)
        assert screen.days == 30
        assert "over the last 30 days" in text_of(app, "#flow-header")
        # Eve signed up 10 days before T, so in 30 days she is new, and in 7 she is not.
        assert matrix_cell(screen, NOT_YET_SEEN, seg.NEW) == "6"
        await pilot.press("w")
        await settle(pilot)
        assert screen.days == 7
        assert matrix_cell(screen, NOT_YET_SEEN, seg.NEW) == "5"


async def test_flow_enter_lists_cell_users(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_flow(app, pilot)
        move_to(screen, NOT_YET_SEEN, seg.NEW)
        await pilot.press("enter")
        await settle(pilot)
        users = screen.query_one(FlowUsers)
        assert members(users) == sorted([ESCAPE_ID, MARKUP_ID, "new-0000", "new-0001", "new-0002"])
        assert screen.focused is users
        assert screen.query_one("#flow-users-pane").border_title == f"{NOT_YET_SEEN} → {seg.NEW}"
        assert text_of(app, "#flow-users-note").startswith("5 users")
        assert MARKUP_ID in screen_text(app)
        assert "\x1b" not in screen_text(app)

        users.move_cursor(row=members(users).index("new-0001"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, UserScreen)
        assert app.screen.user_id == "new-0001"
        assert app.screen.sub_title == f"Dashboard › Lifecycle flow › {NOT_YET_SEEN} → {seg.NEW} › new-0001"

        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("escape")
        assert screen.focused is screen.query_one(FlowMatrix)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_flow_total_cells_list_users(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_flow(app, pilot)
        move_to(screen, "Total", seg.CHAMPION)
        await pilot.press("enter")
        await settle(pilot)
        assert members(screen.query_one(FlowUsers)) == ["u-ann"]
        assert screen.query_one("#flow-users-pane").border_title == f"every stage then → {seg.CHAMPION}"

        screen.query_one(FlowMatrix).focus()
        move_to(screen, seg.CHAMPION, seg.CHAMPION)
        await pilot.press("enter")
        await settle(pilot)
        assert not screen.query_one(FlowUsers).display
        assert text_of(app, "#flow-users-note") == "0 users"


async def test_flow_user_list_is_bounded(tmp_path):
    path = tmp_path / "cache.db"
    make_cache(path, company(newcomers=USER_LIMIT + 20), evaluations=(30, 0))
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_flow(app, pilot)
        move_to(screen, NOT_YET_SEEN, seg.NEW)
        await pilot.press("enter")
        await settle(pilot)
        assert screen.query_one(FlowUsers).row_count == USER_LIMIT
        note = text_of(app, "#flow-users-note")
        assert note.startswith(f"{USER_LIMIT + 22:,} users, the first {USER_LIMIT} by id shown")


async def test_flow_shows_loading_while_computing(moving_cache, monkeypatch):
    from console.app.screens import flow as flow_module

    release = threading.Event()
    compute = flow_module.lifecycle_flow

    def slow_flow(*args, **kwargs):
        release.wait(10)
        return compute(*args, **kwargs)

    monkeypatch.setattr(flow_module, "lifecycle_flow", slow_flow)
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f")
        await pilot.pause()
        screen = app.screen
        assert screen.query_one(FlowMatrix).loading
        assert "computing every user's stage now and 7 days ago" in text_of(app, "#flow-header")
        release.set()
        await settle(pilot)
        assert not screen.query_one(FlowMatrix).loading
        assert screen.focused is screen.query_one(FlowMatrix)
        assert "⏎ List users" in screen_text(app)
        assert matrix_cell(screen, NOT_YET_SEEN, seg.NEW) == "5"


async def test_flow_failure_shows_error(moving_cache, monkeypatch):
    def broken_flow(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr("console.app.screens.flow.lifecycle_flow", broken_flow)
    app = make_app(moving_cache)
    notified: list[str] = []
    monkeypatch.setattr(app, "notify", lambda message, **options: notified.append(message))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_flow(app, pilot)
        assert notified == ["RuntimeError: evaluation failed"]
        assert not screen.query_one(FlowMatrix).loading
        assert "failed; r tries again" in text_of(app, "#flow-header")


# The quarantine.


def quarantine_cache(path: Path, bad: int) -> None:
    """Ingest the small company plus `bad` track messages without an event, a message of unknown
    type with markup and terminal escapes in it, and a line that is not JSON."""
    build = company()
    for index in range(bad):
        build.add({"type": "track", "userId": f"u-{index:04d}", "messageId": f"bad-{index:04d}"})
    items = list(build.items)
    items.append(("feed-[b]x[/b].ndjson:7", {"type": HOSTILE_TYPE, "userId": "u-x", "note": HOSTILE_TEXT}))
    items.append(("feed.ndjson:8", Unparsed(text=f"{{not json {HOSTILE_TEXT}", error="expected a value")))
    db = open_cache(path)
    try:
        ingest_batch(db, items, source="test", received_at=T)
    finally:
        db.conn.close()


async def open_quarantine(app: SegopsApp, pilot) -> QuarantineScreen:
    await settle(pilot)
    await pilot.press("x")
    await settle(pilot)
    assert isinstance(app.screen, QuarantineScreen)
    return app.screen


async def test_quarantine_counts_per_reason(tmp_path):
    path = tmp_path / "cache.db"
    quarantine_cache(path, bad=3)
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_quarantine(app, pilot)
        assert screen.sub_title == "Dashboard › Quarantine"
        reasons = screen.query_one(ReasonTable)
        assert members(reasons) == ["", "invalid_json", "missing_event", "unknown_type"]
        assert column(reasons, "messages") == ["5", "1", "3", "1"]
        assert column(reasons, "meaning")[1:] == [REASONS["invalid_json"], REASONS["missing_event"],
                                                  REASONS["unknown_type"]]
        assert column(reasons, "shown") == ["●", "", "", ""]
        messages = screen.query_one(MessageTable)
        assert messages.row_count == 5
        assert column(messages, "reason")[0] == "invalid_json"
        assert "page 1 of 1: messages 1–5 of 5" in text_of(app, "#quarantine-summary")


async def test_quarantine_paging_turns_pages(tmp_path):
    path = tmp_path / "cache.db"
    quarantine_cache(path, bad=2 * PAGE_SIZE + 10)
    total = 2 * PAGE_SIZE + 12
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_quarantine(app, pilot)
        messages = screen.query_one(MessageTable)
        assert messages.row_count == PAGE_SIZE
        first_page = members(messages)
        assert f"page 1 of 3: messages 1–{PAGE_SIZE} of {total}" in text_of(app, "#quarantine-summary")

        await pilot.press("n")
        await settle(pilot)
        second_page = members(messages)
        assert len(second_page) == PAGE_SIZE
        assert int(second_page[0]) < int(first_page[-1])
        assert f"page 2 of 3: messages {PAGE_SIZE + 1}–{2 * PAGE_SIZE}" in text_of(app, "#quarantine-summary")

        # Down on the last row turns to the next page, the last one.
        await pilot.press("ctrl+end", "down")
        await settle(pilot)
        assert messages.row_count == total - 2 * PAGE_SIZE
        assert messages.cursor_row == 0
        assert f"page 3 of 3: messages {2 * PAGE_SIZE + 1}–{total} of {total}" in text_of(app, "#quarantine-summary")
        await pilot.press("n")
        await settle(pilot)
        assert screen.page == 2

        # Up on the first row turns back, with the cursor on the last row of the page before.
        await pilot.press("up")
        await settle(pilot)
        assert members(messages) == second_page
        assert messages.cursor_row == PAGE_SIZE - 1
        await pilot.press("p")
        await settle(pilot)
        assert members(messages) == first_page
        await pilot.press("p")
        await settle(pilot)
        assert screen.page == 0


async def test_quarantine_filters_by_reason(tmp_path):
    path = tmp_path / "cache.db"
    quarantine_cache(path, bad=PAGE_SIZE + 5)
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_quarantine(app, pilot)
        reasons = screen.query_one(ReasonTable)
        reasons.focus()
        reasons.move_cursor(row=members(reasons).index("unknown_type"))
        await pilot.press("enter")
        await settle(pilot)
        messages = screen.query_one(MessageTable)
        assert screen.reason == "unknown_type"
        assert column(messages, "reason") == ["unknown_type"]
        assert screen.focused is messages
        summary = text_of(app, "#quarantine-summary")
        assert f"reason unknown_type ({REASONS['unknown_type']})" in summary
        assert "page 1 of 1: messages 1–1 of 1" in summary
        assert column(reasons, "shown")[members(reasons).index("unknown_type")] == "●"

        reasons.move_cursor(row=members(reasons).index("missing_event"))
        reasons.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert messages.row_count == PAGE_SIZE
        assert set(column(messages, "reason")) == {"missing_event"}
        await pilot.press("n")
        await settle(pilot)
        assert messages.row_count == 5

        reasons.move_cursor(row=0)
        reasons.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert screen.reason is None
        assert screen.page == 0
        assert "reason all" in text_of(app, "#quarantine-summary")


async def test_quarantine_hostile_payload_literal(tmp_path):
    path = tmp_path / "cache.db"
    quarantine_cache(path, bad=0)
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_quarantine(app, pilot)
        messages = screen.query_one(MessageTable)
        keys = members(messages)
        reasons = column(messages, "reason")
        hostile = keys[reasons.index("unknown_type")]
        assert str(messages.get_cell(hostile, "detail")) == f"type '{HOSTILE_TYPE}'"
        assert str(messages.get_cell(hostile, "location")) == "feed-[b]x[/b].ndjson:7"
        assert "[bold red]wipe[/]" in str(messages.get_cell(hostile, "excerpt"))
        visible = screen_text(app)
        assert f"type '{HOSTILE_TYPE}'" in visible
        assert "\x1b" not in visible
        assert "\x07" not in visible

        messages.move_cursor(row=keys.index(hostile))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, EventScreen)
        payload = str(app.screen.query_one("#event-payload", Static).content)
        assert f'"type": "{HOSTILE_TYPE}"' in payload
        assert "[bold red]wipe[/]" in payload
        assert "\x1b" not in payload
        visible = screen_text(app)
        assert HOSTILE_TYPE in visible
        assert "[bold red]wipe[/]" in visible
        assert "\x1b" not in visible
        await pilot.press("escape")
        assert app.screen is screen

        messages.move_cursor(row=reasons.index("invalid_json"))
        await pilot.press("enter")
        await pilot.pause()
        payload = str(app.screen.query_one("#event-payload", Static).content)
        assert payload == "{not json [2J[bold red]wipe[/]]0;title"


async def test_quarantine_large_payload_is_cut(tmp_path):
    path = tmp_path / "cache.db"
    db = open_cache(path)
    try:
        big = {"type": "track", "userId": "u-1", "event": "Big", "blob": ["x" * 100] * 3000}
        ingest_batch(db, [("big.ndjson:1", big)], source="test", received_at=T)
    finally:
        db.conn.close()
    app = make_app(path)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_quarantine(app, pilot)
        assert column(screen.query_one(MessageTable), "reason") == ["too_large"]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, EventScreen)
        payload = str(app.screen.query_one("#event-payload", Static).content)
        assert len(payload) < PAYLOAD_SHOWN_CHARS + 100
        assert payload.startswith("{\n")
        assert "more characters are not shown" in payload.splitlines()[-1]


# Keys, help and the command palette.


@pytest.mark.parametrize("owner", [DashboardScreen, MoversTable, FlowScreen, FlowMatrix, FlowUsers,
                                   QuarantineScreen, ReasonTable, MessageTable])
def test_new_bindings_have_ids(owner):
    for binding in owner.BINDINGS:
        assert binding.id, binding
        assert binding.description, binding


@pytest.mark.parametrize(("key", "screen_type", "expected"), [
    ("f", FlowScreen, ("flow.cell", "flow.back", "flow.window", "flow.refresh")),
    ("x", QuarantineScreen, ("quarantine.open", "quarantine.back", "quarantine.next", "quarantine.previous",
                             "quarantine.refresh")),
])
async def test_help_lists_new_screen_keys(moving_cache, key, screen_type, expected):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert {"dashboard.flow", "dashboard.quarantine"} <= set(help_ids(app))
        await pilot.press("escape", key)
        await settle(pilot)
        assert isinstance(app.screen, screen_type)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        for binding_id in expected:
            assert binding_id in help_ids(app)


async def test_help_lists_movers_keys(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.CHURNED, ("Dashboard",))
        await settle(pilot)
        await pilot.press("m", "f1")
        await pilot.pause()
        ids = help_ids(app)
        assert "segment.movers" in ids
        assert "segment.movers.open" in ids


async def test_footer_shows_new_keys(moving_cache):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "f Lifecycle flow" in screen_text(app)
        assert "x Quarantine" in screen_text(app)
        await pilot.press("f")
        await settle(pilot)
        assert "w 7 or 30 days" in screen_text(app)


@pytest.mark.parametrize(("query", "screen_type"), [("lifecycle flow", FlowScreen), ("quarantine", QuarantineScreen)])
async def test_palette_opens_screen(moving_cache, query, screen_type):
    app = make_app(moving_cache)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.open_user("u-bob", ("Dashboard",))
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*query)
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, screen_type)
        assert len(app.screen_stack) == 2
