"""Incremental evaluation gives exactly what a full recompute gives."""

from __future__ import annotations

import itertools

from conftest import T, days
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import segments as seg
from store.db import open_cache
from store.engine import evaluate
from store.ingest import ingest_batch
from store.memberships import refresh, refresh_incremental
from store.settings import Settings
from store.timeparse import format_ms

USERS = ["u0", "u1", "u2", "u3", "u4", "u5"]
ACCOUNTS = ["g0", "g1"]
TRACKED = ["Signed Up", "Project Created", "Task Created", "Comment Added", "File Uploaded", "Report Viewed",
           "Referral Sent", "Payment Failed", "Subscription Cancelled", "Email Opened"]
HOUR = 3_600_000

# Message times span 200 days before T to 30 days after it, so that some arrive dated in the future.
times = st.integers(min_value=-200 * 24, max_value=30 * 24).map(lambda hours: T + hours * HOUR)


@st.composite
def message(draw):
    at = format_ms(draw(times))
    user = draw(st.sampled_from(USERS))
    kind = draw(st.sampled_from(["track", "track", "track", "page", "nps", "identify", "group", "anonymous",
                                 "link"]))
    if kind == "track":
        properties = {"team_id": draw(st.sampled_from(["red", "blue"]))} if draw(st.booleans()) else {}
        return {"type": "track", "userId": user, "event": draw(st.sampled_from(TRACKED)), "timestamp": at,
                "properties": properties}
    if kind == "page":
        return {"type": "page", "userId": user, "timestamp": at}
    if kind == "nps":
        return {"type": "track", "userId": user, "event": "NPS Survey Submitted", "timestamp": at,
                "properties": {"score": draw(st.integers(0, 10))}}
    if kind == "identify":
        traits = draw(st.fixed_dictionaries({}, optional={
            "team": st.sampled_from(["design", "ops"]),
            "status": st.sampled_from(["active", "cancelled"]),
            "createdAt": times.map(format_ms),
        }))
        return {"type": "identify", "userId": user, "traits": traits, "timestamp": at}
    if kind == "group":
        traits = draw(st.fixed_dictionaries({}, optional={
            "plan": st.sampled_from(["free", "starter"]),
            "seats": st.integers(1, 4),
            "projects_used": st.integers(0, 60),
        }))
        return {"type": "group", "userId": user, "groupId": draw(st.sampled_from(ACCOUNTS)), "traits": traits,
                "timestamp": at}
    anonymous = draw(st.sampled_from(["a0", "a1"]))
    if kind == "anonymous":
        return {"type": "track", "anonymousId": anonymous, "event": draw(st.sampled_from(TRACKED)), "timestamp": at}
    return {"type": "identify", "anonymousId": anonymous, "userId": user, "timestamp": at}


# A scenario: batches of messages, each followed by an evaluation at a later clock.
scenarios = st.lists(
    st.tuples(st.lists(message(), max_size=12), st.integers(min_value=0, max_value=40 * 24)),
    min_size=1,
    max_size=6,
)


def stored_members(db) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {definition.name: [] for definition in seg.ALL_SEGMENTS}
    for segment, entity_id in db.conn.execute("SELECT segment, entity_id FROM memberships ORDER BY entity_id"):
        members[segment].append(entity_id)
    return members


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios)
def test_incremental_equals_full(tmp_path_factory, scenario):
    db = open_cache(tmp_path_factory.mktemp("incremental") / "cache.db")
    ids = itertools.count()
    clock = T - days(100)
    try:
        for batch, step_hours in scenario:
            items = [(f"#{index}", dict(item, messageId=f"m{next(ids)}")) for index, item in enumerate(batch)]
            ingest_batch(db, items, source="test")
            clock += step_hours * HOUR
            refresh_incremental(db, Settings(), clock)
            full = evaluate(db.conn, Settings(), clock)
            assert stored_members(db) == full.members
            snapshot = dict(db.conn.execute(
                "SELECT segment, population FROM snapshots WHERE taken_at = ?", (clock,)))
            assert snapshot == full.populations()
    finally:
        db.conn.close()


def test_incremental_reevaluates_only_what_changed(cache, messages):
    for index in range(20):
        messages.track(f"u{index}", "Signed Up", T - days(100 + index))
        messages.page(f"u{index}", T - days(1))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    messages.items.clear()
    messages.track("u3", "Project Created", T + 1000)
    messages.ingest(cache)
    partial = refresh_incremental(cache, Settings(), T + 2000)
    assert set(partial.users) == {"u3"}
    assert "u3" not in stored_members(cache)[seg.NOT_YET_ACTIVATED]
    kinds = [row[0] for row in cache.conn.execute("SELECT kind FROM evaluations ORDER BY id")]
    assert kinds == ["full", "incremental"]


def test_time_alone_is_picked_up(cache, messages):
    messages.track("u", "Project Created", T - days(13))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    assert "u" not in stored_members(cache)[seg.ACTIVATED_NOT_RETAINED]
    partial = refresh_incremental(cache, Settings(), T + days(1))
    assert set(partial.users) == {"u"}
    assert "u" in stored_members(cache)[seg.ACTIVATED_NOT_RETAINED]


def test_threshold_change_moves_other_users(cache, messages):
    # One active user: top is the only Power User. When top's activity leaves the window, the
    # threshold drops and second, whose own facts did not change, becomes a Power User.
    for day in range(3):
        messages.track("top", "Task Created", T - days(29) + day * 1000)
        messages.track("top", "Comment Added", T - days(29) + day * 1000)
    messages.track("second", "Task Created", T - days(20))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    assert stored_members(cache)[seg.POWER_USERS] == ["top"]
    partial = refresh_incremental(cache, Settings(), T + days(2))
    assert "second" in partial.users
    assert stored_members(cache)[seg.POWER_USERS] == ["second"]
    assert stored_members(cache) == evaluate(cache.conn, Settings(), T + days(2)).members


def test_incremental_snapshot_matches_membership_counts(cache, messages):
    for index in range(6):
        messages.track(f"u{index}", "Signed Up", T - days(20 + index * 3))
    messages.ingest(cache)
    refresh(cache, Settings(), T)
    messages.items.clear()
    messages.track("u1", "Project Created", T + 1000)
    messages.track("new", "Signed Up", T + 2000)
    messages.ingest(cache)
    refresh_incremental(cache, Settings(), T + days(5))
    counts = dict(cache.conn.execute("SELECT segment, COUNT(*) FROM memberships GROUP BY segment"))
    snapshot = dict(cache.conn.execute("SELECT segment, population FROM snapshots WHERE taken_at = ?",
                                       (T + days(5),)))
    for definition in seg.ALL_SEGMENTS:
        assert snapshot[definition.name] == counts.get(definition.name, 0), definition.name
