"""The demo CDP: its simulator, and its HTTP server as a client sees it on 127.0.0.1."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections import Counter
from pathlib import Path
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from segment.analytics.client import Client
from segment.analytics.request import APIError

from console.demo.server import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, DemoCDP, encode_cursor
from console.demo.simulator import PERSONAS, Simulator
from store.settings import Taxonomy

WRITE_KEY = "test-key"
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)
TAXONOMY = Taxonomy()
KNOWN_EVENTS = {
    *TAXONOMY.signup_events, *TAXONOMY.activation_events, *TAXONOMY.core_feature_events,
    *TAXONOMY.cancellation_events, *TAXONOMY.churn_signal_events, *TAXONOMY.nps_events,
    *TAXONOMY.referral_events,
}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the server -----------------------------------------------------------------------------------


@pytest.fixture
def empty_cdp():
    server = DemoCDP(users=0, write_key=WRITE_KEY, live_interval=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def company_cdp():
    server = DemoCDP(users=200, accounts=20, write_key=WRITE_KEY, live_interval=0, now=NOW)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(empty_cdp):
    # trust_env=False: no proxy from the environment may sit between the test and 127.0.0.1.
    with httpx.Client(base_url=empty_cdp.url, auth=(WRITE_KEY, ""), trust_env=False, timeout=10) as http:
        yield http


def read_feed(url: str, cursor: str | None = None, limit: int | None = None) -> httpx.Response:
    params = {}
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = str(limit)
    return httpx.get(url + "/v1/events", params=params, auth=(WRITE_KEY, ""), trust_env=False, timeout=30)


def read_all(url: str, cursor: str | None = None, limit: int = 5000) -> tuple[list[dict], str]:
    """Page through the feed from `cursor` to its end; return the messages and the last cursor."""
    messages: list[dict] = []
    while True:
        body = read_feed(url, cursor, limit).json()
        cursor = body["next"]
        if not body["data"]:
            return messages, cursor
        messages.extend(body["data"])


def test_feed_pages_follow_history(company_cdp):
    expected = Simulator(users=200, accounts=20, now=NOW).history()
    seen: list[dict] = []
    cursor = None
    page_sizes = []
    while True:
        response = read_feed(company_cdp.url, cursor, limit=997)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"data", "next"}
        if not body["data"]:
            assert body["next"] == cursor
            break
        page_sizes.append(len(body["data"]))
        seen.extend(body["data"])
        cursor = body["next"]

    assert [m["messageId"] for m in seen] == [m["messageId"] for m in expected]
    assert all(size == 997 for size in page_sizes[:-1])
    assert 1 <= page_sizes[-1] <= 997
    assert {key: value for key, value in seen[0].items() if key != "receivedAt"} == expected[0]


def test_feed_received_at_follows_timestamp(company_cdp):
    messages, _ = read_all(company_cdp.url)
    received = [parse_time(m["receivedAt"]) for m in messages]
    assert received == sorted(received)
    for message, received_at in zip(messages, received):
        delay = received_at - parse_time(message["timestamp"])
        assert timedelta(0) <= delay <= timedelta(seconds=5)
    assert received[-1] <= NOW


def test_feed_limit_default_and_max(company_cdp):
    assert company_cdp.message_count > 5000
    assert len(read_feed(company_cdp.url).json()["data"]) == 1000
    assert len(read_feed(company_cdp.url, limit=1).json()["data"]) == 1
    assert len(read_feed(company_cdp.url, limit=5000).json()["data"]) == 5000
    assert len(read_feed(company_cdp.url, limit=100_000).json()["data"]) == 5000
    assert len(read_feed(company_cdp.url, limit=10**40).json()["data"]) == 5000


@pytest.mark.parametrize("limit", ["0", "-5", "1.5", "abc", "", "0x10", "²"])
def test_feed_rejects_invalid_limit(company_cdp, limit):
    response = httpx.get(company_cdp.url + "/v1/events", params={"limit": limit},
                         auth=(WRITE_KEY, ""), trust_env=False)
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert "limit" in body["message"]


@pytest.mark.parametrize("cursor", [
    "!!!",
    "not-a-cursor",
    base64.urlsafe_b64encode(b"v1:-3").decode().rstrip("="),
    base64.urlsafe_b64encode(b"v2:10").decode().rstrip("="),
    encode_cursor(10**9),
    "x" * 500,
])
def test_feed_rejects_invalid_cursor(company_cdp, cursor):
    response = read_feed(company_cdp.url, cursor)
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert "cursor" in body["message"]


def test_feed_empty_then_appended(empty_cdp):
    first = read_feed(empty_cdp.url).json()
    assert first["data"] == []
    caught_up = first["next"]

    empty_cdp.append([
        {"type": "track", "userId": "u1", "event": "Task Created", "messageId": "a-1"},
        {"type": "track", "userId": "u1", "event": "Comment Added", "messageId": "a-2",
         "receivedAt": "2026-01-01T00:00:00.000Z"},
    ])
    newer = read_feed(empty_cdp.url, caught_up).json()
    assert [m["messageId"] for m in newer["data"]] == ["a-1", "a-2"]
    assert "receivedAt" in newer["data"][0]
    assert newer["data"][1]["receivedAt"] == "2026-01-01T00:00:00.000Z"
    assert newer["next"] != caught_up

    again = read_feed(empty_cdp.url, newer["next"]).json()
    assert again == {"data": [], "next": newer["next"]}
    empty_cdp.append([{"type": "page", "userId": "u1", "messageId": "a-3"}])
    latest = read_feed(empty_cdp.url, newer["next"]).json()
    assert [m["messageId"] for m in latest["data"]] == ["a-3"]


def test_feed_requires_write_key(empty_cdp):
    missing = httpx.get(empty_cdp.url + "/v1/events", trust_env=False)
    wrong = httpx.get(empty_cdp.url + "/v1/events", auth=("other-key", ""), trust_env=False)
    garbled = httpx.get(empty_cdp.url + "/v1/events", headers={"Authorization": "Basic %%%"},
                        trust_env=False)
    bearer = httpx.get(empty_cdp.url + "/v1/events", headers={"Authorization": f"Bearer {WRITE_KEY}"},
                       trust_env=False)
    with_password = httpx.get(empty_cdp.url + "/v1/events", auth=(WRITE_KEY, "anything"), trust_env=False)
    for response in (missing, wrong, garbled, bearer):
        assert response.status_code == 401
        assert response.json()["success"] is False
        assert response.json()["message"]
    assert with_password.status_code == 200


def test_tracking_requires_write_key(empty_cdp):
    message = {"userId": "u1", "event": "Task Created"}
    missing = httpx.post(empty_cdp.url + "/v1/track", json=message, trust_env=False)
    wrong = httpx.post(empty_cdp.url + "/v1/track", json=message, auth=("other", ""), trust_env=False)
    wrong_in_body = httpx.post(empty_cdp.url + "/v1/batch", json={"batch": [message], "writeKey": "other"},
                               trust_env=False)
    wrong_header_right_body = httpx.post(empty_cdp.url + "/v1/track", json=dict(message, writeKey=WRITE_KEY),
                                         auth=("other", ""), trust_env=False)
    for response in (missing, wrong, wrong_in_body, wrong_header_right_body):
        assert response.status_code == 401
        assert response.json()["success"] is False
    assert empty_cdp.message_count == 0


def test_tracking_accepts_write_key_in_body(empty_cdp):
    single = httpx.post(empty_cdp.url + "/v1/track",
                        json={"userId": "u1", "event": "Task Created", "writeKey": WRITE_KEY}, trust_env=False)
    batch = httpx.post(empty_cdp.url + "/v1/batch",
                       json={"batch": [{"type": "page", "userId": "u1"}], "writeKey": WRITE_KEY},
                       trust_env=False)
    assert single.status_code == 200
    assert batch.status_code == 200
    stored, _ = read_all(empty_cdp.url)
    assert [m["type"] for m in stored] == ["track", "page"]
    # The write key is a credential and is not stored.
    assert all("writeKey" not in m for m in stored)


def test_health_needs_no_auth(company_cdp):
    response = httpx.get(company_cdp.url + "/health", trust_env=False)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "messages": company_cdp.message_count}


def test_each_path_sets_type(client, empty_cdp):
    for kind in ("track", "identify", "group", "page", "screen", "alias"):
        # The body's own type is wrong on purpose: the path decides.
        response = client.post(f"/v1/{kind}", json={"type": "bogus", "userId": "u1", "messageId": kind})
        assert response.status_code == 200
        assert response.json() == {"success": True}
    stored, _ = read_all(empty_cdp.url)
    assert [(m["messageId"], m["type"]) for m in stored] == [
        (kind, kind) for kind in ("track", "identify", "group", "page", "screen", "alias")
    ]
    for message in stored:
        received = parse_time(message["receivedAt"])
        assert abs(datetime.now(timezone.utc) - received) < timedelta(minutes=1)


def test_messages_stored_without_validation(client, empty_cdp):
    # Segment-spec semantics are the ingest's job: a track without event or ids is stored as sent.
    odd = {"event": "", "properties": "not an object", "timestamp": "NOW", "big": 2**80}
    assert client.post("/v1/track", json=odd).status_code == 200
    stored, _ = read_all(empty_cdp.url)
    assert stored[0]["properties"] == "not an object"
    assert stored[0]["timestamp"] == "NOW"
    assert stored[0]["big"] == 2**80


def test_batch_merges_context_and_sent_at(client, empty_cdp):
    payload = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "Task Created", "messageId": "b-1",
             "context": {"ip": "10.0.0.1", "library": {"name": "own"}}},
            {"type": "identify", "userId": "u2", "messageId": "b-2", "sentAt": "2026-01-02T00:00:00Z",
             "integrations": {"Braze": False}},
        ],
        "context": {"library": {"name": "batch-lib", "version": "1.0"}, "locale": "en-US"},
        "integrations": {"All": True},
        "sentAt": "2026-01-01T00:00:00Z",
    }
    assert client.post("/v1/batch", json=payload).status_code == 200
    first, second = read_all(empty_cdp.url)[0]
    assert first["context"] == {"ip": "10.0.0.1", "library": {"name": "own", "version": "1.0"},
                                "locale": "en-US"}
    assert second["context"] == {"library": {"name": "batch-lib", "version": "1.0"}, "locale": "en-US"}
    assert first["integrations"] == {"All": True}
    assert second["integrations"] == {"All": True, "Braze": False}
    assert first["sentAt"] == "2026-01-01T00:00:00Z"
    assert second["sentAt"] == "2026-01-02T00:00:00Z"


def padded_message(size: int) -> dict:
    """Return a track message whose compact JSON is exactly `size` bytes."""
    message = {"type": "track", "userId": "u1", "event": "Task Created", "properties": {"pad": ""}}
    overhead = len(json.dumps(message, separators=(",", ":")))
    message["properties"]["pad"] = "x" * (size - overhead)
    return message


def post_raw(client: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def test_message_size_limit(client, empty_cdp):
    at_limit = json.dumps(padded_message(MAX_MESSAGE_BYTES), separators=(",", ":")).encode()
    over_limit = json.dumps(padded_message(MAX_MESSAGE_BYTES + 1), separators=(",", ":")).encode()
    assert len(at_limit) == 32768

    assert post_raw(client, "/v1/track", at_limit).status_code == 200
    response = post_raw(client, "/v1/track", over_limit)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert "32768" in response.json()["message"]
    assert empty_cdp.message_count == 1


def test_batch_rejects_large_message(client, empty_cdp):
    small = {"type": "track", "userId": "u1", "event": "Task Created"}
    response = client.post("/v1/batch", json={"batch": [small, padded_message(MAX_MESSAGE_BYTES + 1)]})
    assert response.status_code == 400
    assert "Message 1" in response.json()["message"]
    # The batch is rejected whole.
    assert empty_cdp.message_count == 0


def test_batch_size_limit(client, empty_cdp):
    messages = [padded_message(20_000) for _ in range(30)]
    body = json.dumps({"batch": messages}, separators=(",", ":")).encode()
    assert len(body) > MAX_BATCH_BYTES
    response = post_raw(client, "/v1/batch", body)
    assert response.status_code == 400
    assert "512000" in response.json()["message"]
    assert empty_cdp.message_count == 0

    # The connection still works after the rejected body.
    accepted = client.post("/v1/batch", json={"batch": messages[:20]})
    assert accepted.status_code == 200
    assert empty_cdp.message_count == 20


def test_gzip_body_accepted_and_limited(client, empty_cdp):
    body = gzip.compress(json.dumps({"batch": [{"type": "page", "userId": "u1"}]}).encode())
    assert post_raw(client, "/v1/batch", body, **{"Content-Encoding": "gzip"}).status_code == 200
    # Small when compressed, over the limit when not.
    bomb = gzip.compress(json.dumps(padded_message(MAX_MESSAGE_BYTES * 4)).encode())
    assert len(bomb) < MAX_MESSAGE_BYTES
    assert post_raw(client, "/v1/track", bomb, **{"Content-Encoding": "gzip"}).status_code == 400
    assert post_raw(client, "/v1/track", b"not gzip", **{"Content-Encoding": "gzip"}).status_code == 400
    assert empty_cdp.message_count == 1


@pytest.mark.parametrize("body", [
    b"{not json",
    b"",
    b'{"userId": NaN}',
    b"[1, 2]",
    b'"text"',
])
def test_invalid_json_rejected(client, empty_cdp, body):
    response = post_raw(client, "/v1/track", body)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert empty_cdp.message_count == 0


@pytest.mark.parametrize("payload", [
    {"batch": "nope"},
    {"messages": []},
    {"batch": [{"type": "track"}, 5]},
])
def test_invalid_batch_rejected(client, empty_cdp, payload):
    response = client.post("/v1/batch", json=payload)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert empty_cdp.message_count == 0


def test_unknown_path_and_method(client):
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    assert client.post("/v2/track", json={}).status_code == 404

    wrong_method = client.get("/v1/track")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert client.post("/v1/events", json={}).status_code == 405
    assert client.post("/health").status_code == 405


def test_segment_client_round_trip(empty_cdp):
    """Segment's own Python library sends to the demo CDP, and the feed returns what it sent."""
    sent_at = datetime(2026, 5, 1, 9, 30, tzinfo=timezone.utc)
    for gzip_body in (False, True):
        segment = Client(WRITE_KEY, host=empty_cdp.url, sync_mode=True, gzip=gzip_body, max_retries=0)
        user = f"lib-user-{gzip_body}"
        segment.identify(user, {"email": "lib@example.com", "team": "design"}, timestamp=sent_at)
        segment.group(user, "acct-lib", {"plan": "starter", "seats": 10}, timestamp=sent_at)
        segment.track(user, "Task Created", {"team_id": "design"}, timestamp=sent_at)
        segment.page(user, name="Dashboard", timestamp=sent_at)
        segment.screen(user, name="Inbox", timestamp=sent_at)
        segment.alias("anon-1", user, timestamp=sent_at)
        segment.track(anonymous_id="anon-2", event="Report Viewed", timestamp=sent_at)

    stored, _ = read_all(empty_cdp.url)
    assert len(stored) == 14
    assert Counter(m["type"] for m in stored) == {"identify": 2, "group": 2, "track": 4, "page": 2,
                                                   "screen": 2, "alias": 2}
    track = next(m for m in stored if m["type"] == "track" and m.get("userId") == "lib-user-True")
    assert track["event"] == "Task Created"
    assert track["properties"] == {"team_id": "design"}
    assert parse_time(track["timestamp"]) == sent_at
    assert track["context"]["library"]["name"] == "analytics-python"
    # The library sends sentAt on the batch only; the server copies it onto each message.
    assert "sentAt" in track
    group = next(m for m in stored if m["type"] == "group")
    assert group["groupId"] == "acct-lib"
    assert group["traits"] == {"plan": "starter", "seats": 10}
    alias = next(m for m in stored if m["type"] == "alias")
    assert alias["previousId"] == "anon-1"
    anonymous = [m for m in stored if m.get("anonymousId") == "anon-2"]
    assert len(anonymous) == 2
    assert all("writeKey" not in m for m in stored)


def test_segment_client_wrong_key(empty_cdp):
    segment = Client("wrong-key", host=empty_cdp.url, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as raised:
        segment.track("u1", "Task Created")
    assert raised.value.status == 401
    assert empty_cdp.message_count == 0


def test_live_batches_extend_feed():
    server = DemoCDP(users=50, accounts=5, write_key=WRITE_KEY, live_interval=0.05)
    server.start()
    try:
        history, cursor = read_all(server.url)
        deadline = time.monotonic() + 10
        live: list[dict] = []
        while not live and time.monotonic() < deadline:
            time.sleep(0.1)
            live, cursor = read_all(server.url, cursor)
    finally:
        server.stop()
    assert history
    assert live
    last_history = max(parse_time(m["timestamp"]) for m in history)
    for message in live:
        assert parse_time(message["timestamp"]) >= last_history
        assert parse_time(message["timestamp"]) <= parse_time(message["receivedAt"])


def test_stop_then_start_keeps_log(empty_cdp):
    empty_cdp.append([{"type": "page", "userId": "u1", "messageId": "keep"}])
    empty_cdp.stop()
    empty_cdp.start()
    stored, _ = read_all(empty_cdp.url)
    assert [m["messageId"] for m in stored] == ["keep"]


@pytest.mark.slow
def test_full_default_feed_pages():
    server = DemoCDP(write_key=WRITE_KEY, live_interval=0, now=NOW)
    server.start()
    try:
        messages, _ = read_all(server.url)
    finally:
        server.stop()
    assert len(messages) == server.message_count
    assert 250_000 < len(messages) < 350_000
    assert len({m["messageId"] for m in messages}) == len(messages)


# --- the simulator --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history() -> list[dict]:
    return Simulator(users=1000, accounts=100, now=NOW).history()


def test_persona_shares_sum_to_one():
    assert sum(persona.share for persona in PERSONAS) == pytest.approx(1.0)


def test_same_seed_same_history(history):
    again = Simulator(users=1000, accounts=100, now=NOW).history()
    other_seed = Simulator(seed=8, users=1000, accounts=100, now=NOW).history()
    assert again == history
    assert other_seed != history


def test_history_spans_window(history):
    times = [parse_time(m["timestamp"]) for m in history]
    assert times == sorted(times)
    assert times[0] > NOW - timedelta(days=180)
    assert times[0] < NOW - timedelta(days=170)
    assert times[-1] <= NOW
    assert times[-1] > NOW - timedelta(days=1)
    assert all(m["timestamp"].endswith("Z") for m in history)
    # Signups spread over the whole window: every 30-day slice has some.
    signups = [t for t, m in zip(times, history) if m.get("event") == "Signed Up"]
    slices = Counter(int((NOW - t) / timedelta(days=30)) for t in signups)
    assert set(slices) == set(range(6))


def test_history_volume(history):
    per_user = len(history) / 1000
    assert 45 <= per_user <= 80


def test_history_message_shapes(history):
    assert len({m["messageId"] for m in history}) == len(history)
    kinds = Counter(m["type"] for m in history)
    assert set(kinds) == {"track", "identify", "group", "page", "screen", "alias"}
    for message in history:
        assert message.get("userId") or message.get("anonymousId")
        if message["type"] == "track":
            assert message["event"] in KNOWN_EVENTS
        if message["type"] == "group":
            assert message["groupId"].startswith("acct_")
            assert message["traits"]["plan"] in {"free", "starter", "growth", "enterprise"}
            assert message["traits"]["projects_used"] >= 1


def test_history_covers_taxonomy(history):
    events = Counter(m["event"] for m in history if m["type"] == "track")
    assert set(events) == KNOWN_EVENTS
    assert events["Signed Up"] == 1000
    scores = [m["properties"]["score"] for m in history if m.get("event") == "NPS Survey Submitted"]
    assert all(isinstance(score, int) and 0 <= score <= 10 for score in scores)
    assert min(scores) <= 6
    assert max(scores) >= 9
    assert any("team_id" in m.get("properties", {}) for m in history if m["type"] == "track")


def test_history_users_have_traits_and_accounts(history):
    identified = {m["userId"] for m in history if m["type"] == "identify"}
    grouped = {m["userId"] for m in history if m["type"] == "group"}
    users = {m["userId"] for m in history if "userId" in m}
    assert identified == users
    assert grouped == users
    traits = [m["traits"] for m in history if m["type"] == "identify"]
    assert all({"email", "name", "createdAt"} <= set(t) for t in traits)
    assert any(t.get("status") == "cancelled" for t in traits)
    assert any("team" in t for t in traits)
    plans = Counter(m["traits"]["plan"] for m in history if m["type"] == "group")
    assert plans["free"] + plans["starter"] > 0
    assert any("seats" in m["traits"] for m in history if m["type"] == "group")


def test_anonymous_visits_linked_later(history):
    anonymous_only = [m for m in history if "anonymousId" in m and "userId" not in m]
    assert anonymous_only
    assert all(m["type"] == "page" for m in anonymous_only)
    # The first identify (with both ids) or alias that links each anonymous id to a user.
    first_link: dict[str, str] = {}
    for message in history:
        if message["type"] == "identify" and "anonymousId" in message:
            first_link.setdefault(message["anonymousId"], message["timestamp"])
        if message["type"] == "alias":
            first_link.setdefault(message["previousId"], message["timestamp"])
    assert any(m["type"] == "alias" for m in history)
    for message in anonymous_only:
        assert message["anonymousId"] in first_link
        assert message["timestamp"] <= first_link[message["anonymousId"]]


def test_live_batches_deterministic():
    first = Simulator(users=300, accounts=30, now=NOW)
    second = Simulator(users=300, accounts=30, now=NOW)
    previous_end = NOW
    for step in range(1, 30):
        moment = NOW + timedelta(seconds=3 * step)
        batch = first.live_batch(moment)
        assert batch == second.live_batch(moment)
        assert 1 <= len(batch) <= 40
        times = [parse_time(m["timestamp"]) for m in batch]
        assert times == sorted(times)
        assert all(previous_end < t <= moment for t in times)
        previous_end = moment


def test_live_batch_same_now_twice():
    simulator = Simulator(users=50, accounts=5, now=NOW)
    simulator.live_batch(NOW + timedelta(seconds=3))
    repeat = simulator.live_batch(NOW + timedelta(seconds=3))
    assert 1 <= len(repeat) <= 40
    assert all(parse_time(m["timestamp"]) == NOW + timedelta(seconds=3) for m in repeat)


def test_empty_company():
    simulator = Simulator(users=0, accounts=0, now=NOW)
    assert simulator.history() == []
    batch = simulator.live_batch(NOW + timedelta(seconds=3))
    assert 1 <= len(batch) <= 40
    assert any(m.get("event") == "Signed Up" for m in batch)


def test_short_history_window():
    history = Simulator(users=100, accounts=10, history_days=20, now=NOW).history()
    assert history
    assert parse_time(history[0]["timestamp"]) > NOW - timedelta(days=20)


@pytest.mark.slow
def test_default_history_fills_every_segment(tmp_path: Path):
    """Evaluated with segops's own engine at `now`, every seed segment but Unstaged has members."""
    from store import segments as seg
    from store.db import open_cache
    from store.engine import evaluate
    from store.ingest import ingest_stream
    from store.settings import Settings

    simulator = Simulator(now=NOW)
    cache = open_cache(tmp_path / "cache.db")
    try:
        items = ((f"demo #{index}", message) for index, message in enumerate(simulator.history()))
        result = ingest_stream(cache, items, source="demo")
        evaluation = evaluate(cache.conn, Settings(), simulator.now_ms)
    finally:
        cache.conn.close()

    assert result.quarantined == 0
    populations = evaluation.populations()
    for definition in seg.ALL_SEGMENTS:
        if definition.name != seg.UNSTAGED:
            assert populations[definition.name] > 0, definition.name
