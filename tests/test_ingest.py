"""Ingest of Segment-spec messages: validation, time rules, dedupe, identity, quarantine."""

from __future__ import annotations

import sqlite3

import orjson
import pytest
from conftest import FIXTURES, REALDATA

from store.ingest import ingest_batch, ingest_stream
from store.normalize import Rejection, normalize
from store.raw import Unparsed
from store.settings import Settings
from store.timeparse import TimeParseError, parse_time_ms

INGEST_TIME = parse_time_ms("2026-01-01T00:00:00Z")


def norm(message, max_bytes=32 * 1024):
    return normalize(message, INGEST_TIME, max_bytes)


# --- time --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-01-24T11:00:00Z", "2020-01-24T11:00:00Z"),
        ("2020-01-24T16:30:00+05:30", "2020-01-24T11:00:00Z"),
        ("2020-01-24T06:00:00-0500", "2020-01-24T11:00:00Z"),
        ("2020-01-24t11:00:00.123456789z", "2020-01-24T11:00:00.123Z"),
        (1579863600, "2020-01-24T11:00:00Z"),
        (1579863600000, "2020-01-24T11:00:00Z"),
        ("1579863600", "2020-01-24T11:00:00Z"),
        ("2020-01-24 11:00:00", "2020-01-24T11:00:00Z"),
    ],
)
def test_time_formats(value, expected):
    assert parse_time_ms(value) == parse_time_ms(expected)


@pytest.mark.parametrize(
    "value", ["NOW", "202205-13T12:51:01.470Z", "2023-03-30 06:42:55.991938402 +0000 UTC", "2020-13-01", True, -5, {}]
)
def test_time_rejects_garbage(value):
    with pytest.raises(TimeParseError):
        parse_time_ms(value)


def test_time_field_order():
    message = {"type": "track", "userId": "u", "event": "E", "timestamp": "", "originalTimestamp": None,
               "sentAt": "2020-01-01T00:00:00Z", "receivedAt": "2021-01-01T00:00:00Z"}
    normalized = norm(message)
    assert normalized.time_field == "sentAt"
    assert normalized.event_time == parse_time_ms("2020-01-01T00:00:00Z")


def test_missing_time_uses_ingest_time():
    normalized = norm({"type": "track", "userId": "u", "event": "E"})
    assert normalized.time_field == "ingest"
    assert normalized.event_time == INGEST_TIME


def test_unparseable_chosen_time_is_quarantined():
    rejection = norm({"type": "track", "userId": "u", "event": "E", "timestamp": "NOW",
                      "sentAt": "2020-01-01T00:00:00Z"})
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "invalid_time"
    assert "timestamp" in rejection.detail


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"userId": "u", "event": "E"}, "missing_type"),
        ({"type": "", "userId": "u"}, "missing_type"),
        ({"type": "REST", "userId": "u"}, "unknown_type"),
        ({"type": 3, "userId": "u"}, "unknown_type"),
        ({"type": "track", "event": "E"}, "missing_identity"),
        ({"type": "track", "userId": "", "anonymousId": "", "event": "E"}, "missing_identity"),
        ({"type": "track", "userId": "u"}, "missing_event"),
        ({"type": "track", "userId": "u", "event": ""}, "missing_event"),
        ({"type": "group", "userId": "u"}, "missing_group_id"),
        ({"type": "alias", "userId": "u"}, "missing_previous_id"),
        ([1, 2], "not_an_object"),
        ("text", "not_an_object"),
    ],
)
def test_invalid_messages_have_reasons(message, reason):
    rejection = norm(message)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason


def test_types_are_case_insensitive():
    assert norm({"type": "Identify", "userId": "u"}).type == "identify"
    assert norm({"type": "TRACK", "userId": "u", "event": "E"}).type == "track"


def test_numeric_ids_become_strings():
    normalized = norm({"type": "group", "userId": 42, "groupId": 7.0})
    assert normalized.user_id == "42"
    assert normalized.group_id == "7"


def test_size_limit():
    small = {"type": "track", "userId": "u", "event": "E", "properties": {"x": "a" * 100}}
    assert not isinstance(norm(small, max_bytes=200), Rejection)
    big = {"type": "track", "userId": "u", "event": "E", "properties": {"x": "a" * 300}}
    rejection = norm(big, max_bytes=200)
    assert rejection.reason == "too_large"


def test_deterministic_id_without_message_id():
    first = norm({"type": "track", "userId": "u", "event": "E", "timestamp": "2020-01-01T00:00:00Z"})
    again = norm({"timestamp": "2020-01-01T00:00:00Z", "event": "E", "userId": "u", "type": "track"})
    other = norm({"type": "track", "userId": "u", "event": "F", "timestamp": "2020-01-01T00:00:00Z"})
    assert first.message_id == again.message_id
    assert first.message_id != other.message_id


def test_odd_shapes_are_accepted():
    normalized = norm({"type": "track", "userId": "u", "event": "E", "properties": ["a"], "context": None})
    assert normalized.type == "track"
    assert normalized.team_id is None


# --- batches in the cache ----------------------------------------------------------------------


def test_every_message_is_accounted_for(cache):
    items = [
        ("a:1", {"type": "track", "userId": "u", "event": "E", "messageId": "1"}),
        ("a:2", {"type": "track", "userId": "u", "event": "E", "messageId": "1"}),
        ("a:3", {"type": "track", "userId": "u", "event": "Other", "messageId": "1"}),
        ("a:4", Unparsed("{not json", "unexpected character")),
        ("a:5", {"type": "nope", "userId": "u"}),
    ]
    result = ingest_batch(cache, items, source="test")
    assert (result.read, result.stored, result.duplicates, result.quarantined) == (5, 1, 2, 2)
    assert result.conflicts == 1
    assert result.reasons == {"invalid_json": 1, "unknown_type": 1}
    stored = cache.conn.execute("SELECT payload FROM messages").fetchone()[0]
    assert orjson.loads(stored)["event"] == "E"
    kept = cache.conn.execute("SELECT location, payload FROM duplicate_conflicts").fetchall()
    assert kept[0][0] == "a:3"
    quarantined = cache.conn.execute("SELECT location, reason, payload FROM quarantine ORDER BY id").fetchall()
    assert quarantined[0] == ("a:4", "invalid_json", "{not json")
    assert quarantined[1][0] == "a:5"


def test_duplicate_across_batches(cache):
    message = {"type": "track", "userId": "u", "event": "E", "messageId": "x"}
    ingest_batch(cache, [("1", message)], source="test")
    redelivered = dict(message, sentAt="2026-01-01T00:00:00Z")
    result = ingest_batch(cache, [("2", redelivered)], source="test")
    assert result.duplicates == 1
    assert result.conflicts == 0
    assert cache.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1


def test_cursor_commits_with_messages(cache):
    ingest_batch(cache, [("1", {"type": "page", "userId": "u"})], source="feed", cursor="c1")
    assert cache.conn.execute("SELECT cursor, stored FROM sources WHERE name = 'feed'").fetchone() == ("c1", 1)


def test_failed_batch_keeps_old_cursor(cache, monkeypatch):
    ingest_batch(cache, [("1", {"type": "page", "userId": "u", "messageId": "a"})], source="feed", cursor="c1")

    import store.ingest as ingest_module

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ingest_module, "_update_source", broken)
    with pytest.raises(sqlite3.OperationalError):
        ingest_batch(cache, [("2", {"type": "page", "userId": "u", "messageId": "b"})], source="feed", cursor="c2")
    assert cache.conn.execute("SELECT cursor FROM sources").fetchone()[0] == "c1"
    assert cache.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1


def test_identify_links_anonymous_messages(cache):
    items = [
        ("1", {"type": "page", "anonymousId": "anon", "messageId": "p1", "timestamp": "2026-01-01T00:00:00Z"}),
        ("2", {"type": "identify", "anonymousId": "anon", "userId": "u", "messageId": "i1",
               "timestamp": "2026-01-02T00:00:00Z", "traits": {"email": "u@example.com"}}),
        ("3", {"type": "page", "anonymousId": "anon", "messageId": "p2", "timestamp": "2026-01-03T00:00:00Z"}),
    ]
    ingest_batch(cache, items[:1], source="test")
    ingest_batch(cache, items[1:], source="test")
    rows = cache.conn.execute("SELECT message_id, user_key, linked_at FROM messages ORDER BY seq").fetchall()
    link_time = parse_time_ms("2026-01-02T00:00:00Z")
    assert rows == [("p1", "u", link_time), ("i1", "u", None), ("p2", "u", link_time)]


def test_group_and_context_traits(cache):
    items = [
        ("1", {"type": "group", "userId": "u", "groupId": "g", "traits": {"plan": "free"}, "messageId": "1"}),
        ("2", {"type": "track", "userId": "u", "event": "E", "messageId": "2",
               "context": {"traits": {"team": "red"}, "groupId": "g2"}}),
    ]
    ingest_batch(cache, items, source="test")
    traits = cache.conn.execute("SELECT scope, key, value FROM trait_updates ORDER BY seq, key").fetchall()
    assert traits == [("account", "plan", '"free"'), ("user", "team", '"red"')]
    groups = [row[0] for row in cache.conn.execute("SELECT group_id FROM messages ORDER BY seq")]
    assert groups == ["g", "g2"]


def test_stream_batches(cache):
    items = ((f"{i}", {"type": "page", "userId": f"u{i}"}) for i in range(25))
    seen = []
    result = ingest_stream(cache, items, source="test", batch_size=10, progress=lambda r: seen.append(r.read))
    assert result.stored == 25
    assert seen == [10, 20, 25]


def test_configured_size_limit(cache):
    settings = Settings(max_message_bytes=100)
    result = ingest_batch(cache, [("1", {"type": "page", "userId": "u", "name": "x" * 200})], source="t",
                          settings=settings)
    assert result.reasons == {"too_large": 1}


# --- real payloads -----------------------------------------------------------------------------


def test_realdata_sample_outcomes(cache):
    from console.sources.files import iter_file_items

    result = ingest_batch(cache, list(iter_file_items([FIXTURES / "realdata" / "rudder_sample.ndjson"])),
                          source="test")
    assert result.read == 7
    assert result.reasons == {"invalid_time": 1, "unknown_type": 2}
    assert result.stored == 4
    users = {row[0] for row in cache.conn.execute("SELECT user_key FROM messages WHERE user_key IS NOT NULL")}
    assert users == {"1", "yash001", "user1001"}


def test_realdata_batch_envelopes(cache):
    from console.sources.files import iter_file_items

    items = list(iter_file_items([FIXTURES / "realdata" / "analytics_go_batches.ndjson"]))
    result = ingest_batch(cache, items, source="test")
    assert result.read == len(items)
    # All three batches reuse the messageId "I'm unique" with different payloads.
    assert (result.stored, result.duplicates, result.conflicts) == (1, 2, 2)


@pytest.mark.skipif(not REALDATA.exists(), reason="the shared real-data corpus is not beside this checkout")
def test_whole_realdata_corpus_reconciles(cache):
    from console.sources.files import iter_file_items

    result = ingest_stream(cache, iter_file_items([REALDATA]), source="realdata")
    assert result.read == result.stored + result.duplicates + result.quarantined
    assert result.read > 2000
    quarantined = cache.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
    assert quarantined == result.quarantined
    assert cache.conn.execute("SELECT COUNT(*) FROM quarantine WHERE reason = ''").fetchone()[0] == 0


@pytest.mark.parametrize(
    "value", ["1969-12-31T23:59:59.500Z", "2026-06-01T10:11:12.999Z", "2026-06-01T10:11:12Z", "2000-02-29T00:00:00.001Z"]
)
def test_fast_time_path_matches_general_path(value):
    # The same instant written with an explicit +00:00 offset takes the general parser.
    assert parse_time_ms(value) == parse_time_ms(value[:-1] + "+00:00")
