"""End to end: Segment's own client sends to the demo CDP, segops syncs, the user lands in segments."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from segment.analytics.client import Client

from console.demo.server import DemoCDP
from console.sources.http import AuthError, HttpSource, SourceTimeout
from console.sync import stored_cursor, sync_once
from store import segments as seg
from store.queries import cache_status, member_count, segment_rows
from store.settings import Settings
from store.timeparse import now_ms

WRITE_KEY = "integration-key"


@pytest.fixture
def cdp():
    server = DemoCDP(port=0, users=0, write_key=WRITE_KEY, live_interval=0)
    server.start()
    yield server
    server.stop()


def send_company(url: str) -> None:
    """Send a new user and an idle activated user through Segment's Python library."""
    client = Client(WRITE_KEY, host=url, sync_mode=True, max_retries=1)
    now = datetime.now(timezone.utc)
    client.identify("fresh", {"email": "fresh@example.com", "team": "design"}, timestamp=now - timedelta(days=2))
    client.track("fresh", "Signed Up", timestamp=now - timedelta(days=2))
    client.group("fresh", "acme", {"plan": "free", "name": "Acme"}, timestamp=now - timedelta(days=2))
    client.track("idle", "Signed Up", timestamp=now - timedelta(days=90))
    client.track("idle", "Project Created", timestamp=now - timedelta(days=89))
    client.track("idle", "Task Created", {"team_id": "eng"}, timestamp=now - timedelta(days=20))
    client.group("idle", "acme", timestamp=now - timedelta(days=90))
    client.page("idle", name="Dashboard", timestamp=now - timedelta(days=20))
    # In sync mode every call is sent before it returns; shutdown() is only for the async consumers.
    client.flush()


def test_segment_client_to_segments(cdp, cache):
    send_company(cdp.url)
    with HttpSource(cdp.url, WRITE_KEY, page_limit=3) as source:
        report = sync_once(cache, source, Settings())

    assert report.result.stored == 8
    assert report.pages >= 3
    assert report.evaluated_at is not None
    stages = dict(cache.conn.execute("SELECT user_id, lifecycle FROM user_facts"))
    assert stages == {"fresh": seg.NEW, "idle": seg.AT_RISK}
    memberships = set(cache.conn.execute("SELECT segment, entity_id FROM memberships"))
    assert (seg.NOT_YET_ACTIVATED, "fresh") in memberships
    assert (seg.ACTIVATED_NOT_RETAINED, "idle") in memberships
    # Two teams (a trait and a team_id property) make the account expansion-ready.
    assert (seg.EXPANSION_READY, "acme") in memberships


def test_sync_resumes_from_cursor(cdp, cache):
    send_company(cdp.url)
    with HttpSource(cdp.url, WRITE_KEY) as source:
        sync_once(cache, source, Settings())
        cursor = stored_cursor(cache, source.name)
        assert cursor
        again = sync_once(cache, source, Settings())
    assert again.result.read == 0
    cdp.append([{"type": "track", "userId": "idle", "event": "Report Viewed",
                 "messageId": "late-1", "timestamp": datetime.now(timezone.utc).isoformat()}])
    with HttpSource(cdp.url, WRITE_KEY) as source:
        later = sync_once(cache, source, Settings())
    assert later.result.stored == 1
    assert member_count(cache.conn, seg.ACTIVATED_NOT_RETAINED) == 0


def test_snapshot_written_after_each_sync(cdp, cache):
    send_company(cdp.url)
    with HttpSource(cdp.url, WRITE_KEY) as source:
        sync_once(cache, source, Settings(), clock=lambda: now_ms() - 1000)
        sync_once(cache, source, Settings())
    snapshots = cache.conn.execute("SELECT population FROM snapshots WHERE segment = ?", (seg.NEW,)).fetchall()
    assert snapshots == [(1,), (1,)]
    rows = {row.name: row for row in segment_rows(cache.conn)}
    assert rows[seg.NEW].population == 1
    assert rows[seg.NEW].previous == 1


def test_wrong_write_key_is_recorded(cdp, cache):
    with HttpSource(cdp.url, "wrong") as source, pytest.raises(AuthError):
        sync_once(cache, source, Settings())
    status = cache_status(cache.conn)
    assert status.sources[0].last_error


def test_unreachable_source(cache):
    with HttpSource("http://127.0.0.1:9", WRITE_KEY, timeout=2) as source, pytest.raises(SourceTimeout):
        sync_once(cache, source, Settings())
    assert "127.0.0.1:9" in cache_status(cache.conn).sources[0].last_error


def test_sync_without_write_key_says_so(cdp, tmp_path):
    from click.testing import CliRunner

    from console.cli import main

    result = CliRunner(env={"SEGOPS_WRITE_KEY": ""}).invoke(
        main, ["--cache", str(tmp_path / "c.db"), "sync", "--source", cdp.url, "--once"])
    assert result.exit_code == 1
    assert "no write key was given" in result.output
