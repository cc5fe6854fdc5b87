"""Playbooks in the console: the chooser, the run confirmation, the actions log, the dispatcher
worker, the pause switch of automatic playbooks and read-only mode, on real caches in a temporary
folder and the demo CDP on 127.0.0.1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_console import SIZE, T, Builder, company, make_app, make_cache, screen_text, settle, wait_for
from textual.command import CommandList, CommandPalette
from textual.widgets import Button, DataTable, Input, Static

from console.app.screens.account import AccountScreen
from console.app.screens.actions_log import ActionsLogScreen, ActionsTable, RunsTable
from console.app.screens.dashboard import DashboardScreen
from console.app.screens.help import HelpScreen
from console.app.screens.playbook_chooser import PlaybookChooserScreen, PlaybookTable
from console.app.screens.run_confirm import RunConfirmScreen
from console.app.screens.segment import SegmentScreen
from console.app.screens.user import UserScreen
from console.app.widgets.status import StatusLine
from console.app.widgets.text import clean, count
from console.config import Config
from console.demo.server import DemoCDP
from console.playbooks import plan
from console.playbooks.catalog import parse_destinations, parse_playbooks
from store import runs
from store import segments as seg
from store.db import open_cache
from store.ingest import ingest_batch
from store.memberships import refresh
from store.runs import Target
from store.settings import Settings


@pytest.fixture
def cache(tmp_path) -> Path:
    path = tmp_path / "cache.db"
    make_cache(path, company(newcomers=3), evaluations=(30, 0))
    return path


def stored_runs(path: Path) -> list[runs.Run]:
    db = open_cache(path)
    try:
        return runs.list_runs(db)
    finally:
        db.conn.close()


def stored_actions(path: Path, run_id: int) -> list[runs.Action]:
    db = open_cache(path)
    try:
        return runs.list_actions(db, run_id=run_id)
    finally:
        db.conn.close()


def planned(path: Path, playbook_id: str, target: Target) -> runs.RunPlan:
    db = open_cache(path)
    try:
        return plan(db, Config().playbooks[playbook_id], target, now=T)
    finally:
        db.conn.close()


def text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


def column(table: DataTable, key: str) -> list[str]:
    return [str(value) for value in table.get_column(key)]


async def open_confirmation(pilot, playbook_id: str) -> RunConfirmScreen:
    """Press t on the current screen, choose `playbook_id` in the chooser, and wait for the plan."""
    app = pilot.app
    await pilot.press("t")
    await settle(pilot)
    assert isinstance(app.screen, PlaybookChooserScreen)
    table = app.screen.query_one(PlaybookTable)
    table.move_cursor(row=[str(row.key.value) for row in table.ordered_rows].index(playbook_id))
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(app.screen, RunConfirmScreen)
    assert await wait_for(pilot, lambda: app.screen.plan is not None)
    await settle(pilot)
    return app.screen


# Triggering.


async def test_user_trigger_writes_run(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_user("u-bob", ("Dashboard",))
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        chooser = app.screen
        assert isinstance(chooser, PlaybookChooserScreen)
        order = [str(row.key.value) for row in chooser.query_one(PlaybookTable).ordered_rows]
        # u-bob is At-Risk and Activated-Not-Retained, so their playbooks come first.
        assert order[:2] == ["reengagement-sequence", "at-risk-rescue"]
        assert len(order) == len(Config().playbooks)
        card = text(app, "#chooser-card")
        assert "Re-engagement sequence" in card
        assert "tone helpful, value-focused" in card
        assert "email via demo: email-whats-new-for-you, at once" in card
        assert "email via demo: email-offer-help, after 3 days" in card
        assert "holdout 10%" in card
        assert "cooldown 7 days" in card
        assert "excludes Churned" in card

        await pilot.press("escape")
        await settle(pilot)
        confirmation = await open_confirmation(pilot, "reengagement-sequence")
        assert confirmation.focused.id == "cancel"
        assert "target user u-bob" in text(app, "#confirm-summary")
        assert not confirmation.query_one("#confirm", Button).disabled
        expected = planned(cache, "reengagement-sequence", Target("user", "u-bob")).counts
        assert confirmation.plan.counts == expected
        await pilot.click("#confirm")
        await settle(pilot)

        assert isinstance(app.screen, UserScreen)
        [run] = stored_runs(cache)
        assert (run.playbook, run.target_kind, run.target_id, run.dry_run) == (
            "reengagement-sequence", "user", "u-bob", False)
        assert run.counts == expected
        assert len(stored_actions(cache, run.id)) == 2
        shown = column(app.screen.query_one("#user-actions", DataTable), "playbook")
        assert shown == ["reengagement-sequence", "reengagement-sequence"]


async def test_account_trigger_targets_account(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_account("acme", ("Dashboard",))
        await settle(pilot)
        assert isinstance(app.screen, AccountScreen)
        confirmation = await open_confirmation(pilot, "expansion-upgrade")
        assert "target account acme" in text(app, "#confirm-summary")
        preview = confirmation.query_one("#confirm-preview", DataTable)
        # An account playbook reaches one contact per account: its most active user.
        assert column(preview, "user") == ["u-ann"]
        await pilot.click("#confirm")
        await settle(pilot)
        [run] = stored_runs(cache)
        assert (run.playbook, run.target_kind, run.target_id) == ("expansion-upgrade", "account", "acme")
        assert run.counts.targeted == 1


async def test_segment_trigger_needs_typed_name(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        confirmation = await open_confirmation(pilot, "new-user-welcome")
        assert confirmation.focused.id == "cancel"
        confirm = confirmation.query_one("#confirm", Button)
        assert confirm.disabled

        await pilot.click("#confirm")
        await settle(pilot)
        assert isinstance(app.screen, RunConfirmScreen)
        assert stored_runs(cache) == []

        await pilot.click("#confirm-name")
        await pilot.press(*"new")
        assert confirm.disabled
        await pilot.press("ctrl+u", *"New")
        assert not confirm.disabled
        await pilot.press("enter")
        assert confirmation.focused is confirm
        await pilot.press("enter")
        await settle(pilot)

        assert isinstance(app.screen, SegmentScreen)
        [run] = stored_runs(cache)
        assert (run.target_kind, run.target_id, run.dry_run) == ("segment", seg.NEW, False)
        assert run.counts.targeted == 5


async def test_cancel_writes_nothing(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        await open_confirmation(pilot, "new-user-welcome")
        # Focus starts on Cancel, so Enter cancels.
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SegmentScreen)
        assert stored_runs(cache) == []


async def test_dry_run_writes_no_actions(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        await open_confirmation(pilot, "new-user-welcome")
        # A dry run needs no typed name: it queues nothing.
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, SegmentScreen)
        [run] = stored_runs(cache)
        assert run.dry_run
        assert run.counts.targeted == 5
        assert stored_actions(cache, run.id) == []


async def test_counts_match_plan(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        confirmation = await open_confirmation(pilot, "new-user-welcome")
        expected = planned(cache, "new-user-welcome", Target("segment", seg.NEW))
        assert confirmation.plan.counts == expected.counts
        counts = text(app, "#confirm-counts")
        for label, value in (("targeted", expected.counts.targeted), ("held out", expected.counts.held_out),
                             ("excluded by cooldown", expected.counts.excluded_cooldown),
                             ("excluded by rule", expected.counts.excluded_rule),
                             ("to send", expected.counts.queued)):
            assert f"{label:<22}{value:>10,}" in counts
        assert f"× 3 steps = {count(expected.counts.queued * 3, 'action')}" in counts
        preview = confirmation.query_one("#confirm-preview", DataTable)
        assert column(preview, "user") == [clean(recipient.user_id) for recipient in expected.preview]


async def test_second_run_excluded_by_cooldown(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_user("u-bob", ("Dashboard",))
        await settle(pilot)
        await open_confirmation(pilot, "at-risk-rescue")
        await pilot.click("#confirm")
        await settle(pilot)
        confirmation = await open_confirmation(pilot, "at-risk-rescue")
        counts = confirmation.plan.counts
        assert counts.excluded_cooldown + counts.held_out == 1
        assert f"{'excluded by cooldown':<22}{counts.excluded_cooldown:>10,}" in text(app, "#confirm-counts")


async def test_segment_refresh_waits_for_confirmation(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        segment_screen = app.screen
        assert segment_screen.population == 5
        await open_confirmation(pilot, "new-user-welcome")

        build = Builder()
        build.track("late-0001", "Signed Up", 1)
        db = open_cache(cache)
        try:
            ingest_batch(db, [(label, dict(message, messageId="late-1")) for label, message in build.items],
                         source="test", received_at=T)
            refresh(db, Settings(), T)
        finally:
            db.conn.close()
        # A sync that ends while the confirmation is open does not reload the segment under it.
        app.cache_changed("sync")
        await settle(pilot)
        assert segment_screen.population == 5

        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is segment_screen
        assert segment_screen.population == 6
        assert "population 6" in text(app, "#segment-header")


# The actions log.


async def test_actions_log_lists_run(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_segment(seg.NEW, ("Dashboard",))
        await settle(pilot)
        await open_confirmation(pilot, "new-user-welcome")
        await pilot.press("d")
        await settle(pilot)
        app.open_user("u-bob", ("Dashboard",))
        await settle(pilot)
        await open_confirmation(pilot, "at-risk-rescue")
        await pilot.click("#confirm")
        await settle(pilot)

        await pilot.press("escape", "escape")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("A")
        await settle(pilot)
        assert isinstance(app.screen, ActionsLogScreen)
        assert app.screen.sub_title == "Dashboard › Actions log"
        table = app.screen.query_one(RunsTable)
        newest, older = [stored.id for stored in stored_runs(cache)]
        assert [str(row.key.value) for row in table.ordered_rows] == [str(newest), str(older)]
        assert column(table, "playbook") == ["at-risk-rescue", "new-user-welcome"]
        assert column(table, "target") == ["user u-bob", f"segment {seg.NEW}"]
        assert column(table, "dry_run") == ["", "dry run"]

        actions = app.screen.query_one(ActionsTable)
        assert column(actions, "user") == ["u-bob", "u-bob"]
        assert column(actions, "step") == ["1", "2"]
        assert "Actions of run" in screen_text(app)

        # The older run is a dry run, so it has no action.
        await pilot.press("down")
        await settle(pilot)
        assert app.screen.query_one(ActionsTable).row_count == 0
        assert "a dry run" in text(app, "#run-detail")


async def test_actions_log_from_palette(cache):
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"actions log")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ActionsLogScreen)
        assert "No run yet" in text(app, "#run-detail")


# The dispatcher worker and the demo CDP.


def demo_config(server: DemoCDP, **changes) -> dict:
    return {"source_url": server.url, "write_key": server.write_key, "sync_interval": 0.3, **changes}


async def test_dispatcher_delivers_to_demo(tmp_path):
    server = DemoCDP(port=0, users=0, live_interval=0, response_delay_scale=0.01)
    server.append([message for _, message in company(newcomers=3).items])
    server.start()
    try:
        path = tmp_path / "cache.db"
        app = make_app(path, **demo_config(server))
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: app.sync_state.report is not None)
            assert await wait_for(pilot, lambda: app.sync_state.backfill is None)
            await settle(pilot)
            app.open_user("u-bob", ("Dashboard",))
            await settle(pilot)
            await open_confirmation(pilot, "at-risk-rescue")
            await pilot.click("#confirm")
            await settle(pilot)
            [run] = stored_runs(path)

            # The dispatcher sends at once after a trigger; the CS task is due a day later.
            assert await wait_for(pilot, lambda: len(server.actions) == 1)
            [received] = server.actions.values()
            assert (received["user_id"], received["run_id"], received["step"]) == ("u-bob", run.id, 0)
            assert await wait_for(pilot, lambda: app.dispatch_state.sent + app.dispatch_state.notices == 1)
            first = stored_actions(path, run.id)[0]
            assert first.status == "sent" or first.notice == "sent"

            user_actions = app.screen.query_one("#user-actions", DataTable)
            assert await wait_for(pilot, lambda: "sent" in " ".join(column(user_actions, "status")))

            # The demo's users respond to treated users with email events, which come back through the sync.
            if not first.held_out:
                events = app.screen.query_one("#events", DataTable)
                assert await wait_for(pilot, lambda: "Email Delivered" in column(events, "event"))

            app.open_actions_log(("Dashboard",))
            await settle(pilot)
            actions = app.screen.query_one(ActionsTable)
            assert await wait_for(pilot, lambda: column(actions, "attempts")[0] == "1")
            assert column(actions, "response")[0].startswith("HTTP 200")
    finally:
        server.stop()


async def test_dispatcher_failure_in_status_line(tmp_path, cache):
    # No source URL, so the demo destination has nowhere to send and its actions stay queued.
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        app.open_user("u-bob", ("Dashboard",))
        await settle(pilot)
        await open_confirmation(pilot, "at-risk-rescue")
        await pilot.click("#confirm")
        await settle(pilot)
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.dispatch_state.report is not None
                              and app.dispatch_state.report.not_configured)
        app.screen.show_status()
        status = str(app.screen.query_one(StatusLine).content)
        assert "not sent to demo" in status
        assert "source.url" in status


async def test_automatic_playbook_queued_after_sync(tmp_path):
    destinations = parse_destinations({})
    playbooks = parse_playbooks({"new-user-welcome": {"on_entry": True}}, destinations)
    server = DemoCDP(port=0, users=0, live_interval=0, response_delay_scale=0.01)
    server.append([message for _, message in company().items])
    server.start()
    try:
        path = tmp_path / "cache.db"
        app = make_app(path, **demo_config(server, playbooks=playbooks, destinations=destinations, backfill_days=0))
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: app.sync_state.report is not None)
            await settle(pilot)
            assert stored_runs(path) == []

            build = Builder()
            for index in range(3):
                build.track(f"late-{index}", "Signed Up", 1)
            server.append([dict(message, messageId=f"late-{index}") for index, (_, message) in enumerate(build.items)])
            assert await wait_for(pilot, lambda: len(stored_runs(path)) == 1)
            [run] = stored_runs(path)
            assert (run.playbook, run.operator, run.counts.targeted) == ("new-user-welcome", "automatic", 3)
            assert await wait_for(pilot, lambda: len(server.actions) >= 1)
    finally:
        server.stop()


# The pause switch.


async def test_pause_switch(cache):
    app = make_app(cache, operator="ops-lee")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "automatic playbooks none on entry" in str(app.screen.query_one(StatusLine).content)
        await pilot.press("p")
        await settle(pilot)
        db = open_cache(cache)
        try:
            assert runs.automatic_paused(db)
            [entry] = runs.list_audit(db)
            assert (entry["operator"], entry["event"]) == ("ops-lee", "automatic_paused")
        finally:
            db.conn.close()
        assert "automatic playbooks paused" in str(app.screen.query_one(StatusLine).content)

        await pilot.press("A")
        await settle(pilot)
        assert "paused" in text(app, "#actions-summary")
        audit = app.screen.query_one("#audit", DataTable)
        assert column(audit, "detail") == ["automatic playbooks paused"]
        await pilot.press("p")
        await settle(pilot)
        assert column(audit, "detail") == ["automatic playbooks resumed", "automatic playbooks paused"]
        db = open_cache(cache)
        try:
            assert not runs.automatic_paused(db)
        finally:
            db.conn.close()


# Read-only mode.


async def palette_prompts(pilot, query: str) -> list[str]:
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*query)
    await pilot.pause(0.5)
    palette = pilot.app.screen
    assert isinstance(palette, CommandPalette)
    options = palette.query_one(CommandList)
    prompts = [str(options.get_option_at_index(index).prompt) for index in range(options.option_count)]
    await pilot.press("escape")
    await pilot.pause()
    return prompts


async def help_ids(pilot) -> list[str]:
    await pilot.press("f1")
    await pilot.pause()
    assert isinstance(pilot.app.screen, HelpScreen)
    ids = [str(value) for value in pilot.app.screen.query_one(DataTable).get_column_at(2)]
    await pilot.press("escape")
    return ids


@pytest.mark.parametrize("read_only", [False, True])
async def test_read_only_hides_write_keys(cache, read_only):
    app = make_app(cache, read_only=read_only)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        status = str(app.screen.query_one(StatusLine).content)
        assert ("read-only" in status) is read_only
        assert ("p Pause/resume automatic" in screen_text(app)) is not read_only
        assert ("dashboard.automatic" in await help_ids(pilot)) is not read_only
        pause_hits = [prompt for prompt in await palette_prompts(pilot, "automatic") if "automatic" in prompt]
        assert bool(pause_hits) is not read_only
        await pilot.press("p")
        await settle(pilot)

        for opener in (lambda: app.open_user("u-bob", ("Dashboard",)),
                       lambda: app.open_account("acme", ("Dashboard",)),
                       lambda: app.open_segment(seg.NEW, ("Dashboard",))):
            opener()
            await settle(pilot)
            screen = app.screen
            assert ("t Trigger playbook" in screen_text(app)) is not read_only
            ids = await help_ids(pilot)
            assert any(binding_id.endswith(".trigger") for binding_id in ids) is not read_only
            trigger_hits = [prompt for prompt in await palette_prompts(pilot, "trigger") if "Trigger" in prompt]
            assert bool(trigger_hits) is not read_only
            if read_only:
                await pilot.press("t")
                await settle(pilot)
                assert app.screen is screen
            await pilot.press("escape")
            await settle(pilot)

        db = open_cache(cache)
        try:
            # In read-only mode, p did nothing; otherwise it paused.
            assert runs.automatic_paused(db) is not read_only
        finally:
            db.conn.close()
        assert (app.dispatch_state.finished_at is None) is read_only


@pytest.mark.parametrize("owner", [ActionsLogScreen, RunsTable, ActionsTable, PlaybookChooserScreen, PlaybookTable,
                                   RunConfirmScreen, DashboardScreen, SegmentScreen, UserScreen, AccountScreen])
def test_new_bindings_have_ids_and_descriptions(owner):
    for binding in owner.BINDINGS:
        assert binding.id, binding
        assert binding.description, binding


async def test_dispatcher_error_in_status_line(cache, monkeypatch):
    def locked(*arguments, **options):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr("console.app.app.dispatch_once", locked)
    app = make_app(cache)
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: app.dispatch_state.error is not None)
        await settle(pilot)
        status = str(app.screen.query_one(StatusLine).content)
        assert "dispatcher failed" in status
        assert "OperationalError: database is locked" in status
        assert "retry in" in status
        assert app.return_code is None
