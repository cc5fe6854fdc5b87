"""Stored evaluations: memberships, transitions, snapshots, backfill and trends."""

from __future__ import annotations

from conftest import T, days

from store import segments as seg
from store.memberships import backfill, refresh
from store.queries import members_page, segment_rows, user_transitions
from store.settings import DAY_MS, Settings


def test_first_evaluation_records_no_transitions(cache, messages):
    messages.track("u", "Signed Up", T - days(1))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    assert cache.conn.execute("SELECT COUNT(*) FROM transitions").fetchone()[0] == 0
    segments = {row[0] for row in cache.conn.execute("SELECT segment FROM memberships WHERE entity_id = 'u'")}
    # Signed Up is activity without a core feature, so the user is also Below-Threshold Usage.
    assert segments == {seg.NEW, seg.NOT_YET_ACTIVATED, seg.BELOW_THRESHOLD}


def test_time_alone_moves_a_user(cache, messages):
    messages.track("u", "Project Created", T - days(13))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    refresh(cache, Settings(), T + days(1))
    moves = {(row["segment"], row["entered"]) for row in user_transitions(cache.conn, "u")}
    assert (seg.ACTIVATED_NOT_RETAINED, True) in moves
    assert (seg.NEW, False) in moves
    assert (seg.AT_RISK, True) in moves
    entry = next(row for row in user_transitions(cache.conn, "u") if row["segment"] == seg.ACTIVATED_NOT_RETAINED)
    assert "days since last activity: 14.0" in entry["reason"]
    assert entry["at"] == T + days(1)


def test_membership_since_is_kept(cache, messages):
    messages.track("u", "Signed Up", T - days(1))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    refresh(cache, Settings(), T + 1000)
    page = members_page(cache.conn, seg.NEW)
    assert page.rows[0]["since"] == T


def test_backfill_writes_daily_snapshots(cache, messages):
    for day in range(10):
        messages.track(f"u{day}", "Signed Up", T - days(day))
    messages.ingest(cache)
    evaluated = backfill(cache, Settings(), 5, now=T)
    assert evaluated == 5
    rows = cache.conn.execute(
        "SELECT taken_at, population FROM snapshots WHERE segment = ? ORDER BY taken_at", (seg.NEW,)
    ).fetchall()
    today = T - T % DAY_MS
    assert [taken_at for taken_at, _ in rows] == [today - offset * DAY_MS - 1 for offset in range(4, -1, -1)]
    # u(k) signed up k days before T, at 12:00. The end of the day k days before today holds the
    # users u(k)..u(9), because u(k-1) signed up at noon the next day.
    assert [population for _, population in rows] == [5, 6, 7, 8, 9]
    assert backfill(cache, Settings(), 5, now=T) == 0


def test_backfill_leaves_memberships_alone(cache, messages):
    messages.track("u", "Signed Up", T - days(3))
    messages.ingest(cache)
    backfill(cache, Settings(), 3, now=T)
    assert cache.conn.execute("SELECT COUNT(*) FROM memberships").fetchone()[0] == 0
    assert cache.conn.execute("SELECT COUNT(*) FROM transitions").fetchone()[0] == 0


def test_trend_is_daily_and_changes_are_computed(cache, messages):
    for day in range(10):
        messages.track(f"u{day}", "Signed Up", T - days(day))
    messages.ingest(cache)
    backfill(cache, Settings(), 8, now=T)
    refresh(cache, Settings(), T)
    row = next(row for row in segment_rows(cache.conn) if row.name == seg.NEW)
    assert row.population == 10
    assert row.history == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    # 24 hours before T (12:00) the latest snapshot is the end of the day before yesterday.
    assert row.change_24h == 2
    assert row.change_7d == 8
    assert row.previous == 9


def test_stale_snapshot_not_used_for_changes(cache, messages):
    messages.track("a", "Signed Up", T - days(2))
    messages.ingest(cache)
    refresh(cache, Settings(), T - days(1))
    refresh(cache, Settings(), T, stale=True)
    row = next(row for row in segment_rows(cache.conn) if row.name == seg.NEW)
    assert row.stale is True
    assert row.change_24h == 0
    stale_rows = cache.conn.execute("SELECT COUNT(*) FROM snapshots WHERE stale = 1").fetchone()[0]
    assert stale_rows == 11


def test_segment_movers(cache, messages):
    from store.queries import segment_movers

    messages.track("u", "Project Created", T - days(13))
    messages.track("v", "Signed Up", T - days(1))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    refresh(cache, Settings(), T + days(1))
    movers = segment_movers(cache.conn, seg.ACTIVATED_NOT_RETAINED, T)
    assert movers["entered_count"] == 1
    assert movers["entered"][0]["id"] == "u"
    assert movers["left_count"] == 0
    assert segment_movers(cache.conn, seg.ACTIVATED_NOT_RETAINED, T + days(2))["entered_count"] == 0


def test_find_entities_and_filter_match_underscores(cache, messages):
    from store.queries import find_entities

    messages.track("user_0001", "Signed Up", T - days(1))
    messages.track("user10001", "Signed Up", T - days(1))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    assert [found[1] for found in find_entities(cache.conn, "user_")] == ["user_0001"]
    assert [row["id"] for row in members_page(cache.conn, seg.NEW, text="r_0").rows] == ["user_0001"]
