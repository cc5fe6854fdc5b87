"""The demo CDP as a destination: it takes playbook actions on 127.0.0.1, drops repeated keys,
and feeds back how simulated users respond, better for treated users than for the holdout."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone

import httpx
import orjson
import pytest

from console.config import parse_config
from console.demo.server import DemoCDP
from console.demo.simulator import ActionResponder, Simulator
from console.dispatch import dispatch_once
from console.playbooks import trigger
from console.sources.http import HttpSource
from console.sync import sync_once
from store import runs
from store.runs import Target

WRITE_KEY = "demo-key"
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)
EMAIL_EVENTS = ("Email Delivered", "Email Opened", "Email Link Clicked")


def action(index: int, **changes) -> dict:
    values = {"user_id": f"user_{index % 50:05d}", "playbook": "first-project-guidance",
              "segment": "Not-Yet-Activated", "run_id": 1 + index // 50, "action_id": index, "step": 0,
              "channel": "email", "content": "email-first-project-guide", "idempotency_key": f"key-{index}",
              "held_out": False}
    values.update(changes)
    return values


@pytest.fixture
def cdp():
    server = DemoCDP(users=50, accounts=5, write_key=WRITE_KEY, live_interval=0, now=NOW,
                     response_delay_scale=0.001)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(cdp):
    # trust_env=False: no proxy from the environment may sit between the test and 127.0.0.1.
    with httpx.Client(base_url=cdp.url, auth=(WRITE_KEY, ""), trust_env=False, timeout=10) as http:
        yield http


def feed(url: str) -> list[dict]:
    messages, cursor = [], None
    while True:
        params = {"limit": "5000", **({"cursor": cursor} if cursor else {})}
        body = httpx.get(url + "/v1/events", params=params, auth=(WRITE_KEY, ""), trust_env=False).json()
        if not body["data"]:
            return messages
        messages += body["data"]
        cursor = body["next"]


def responses(url: str, history: int) -> list[dict]:
    """Wait until the responses stop arriving; return the feed's messages after the history."""
    seen = -1
    messages: list[dict] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.1)
        messages = feed(url)[history:]
        if len(messages) == seen:
            break
        seen = len(messages)
    return messages


def test_action_needs_write_key(cdp):
    missing = httpx.post(cdp.url + "/v1/actions", json=action(0), trust_env=False)
    wrong = httpx.post(cdp.url + "/v1/actions", json=action(0), auth=("other", ""), trust_env=False)
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert cdp.actions == {}


@pytest.mark.parametrize("changes, field", [
    ({"user_id": ""}, "user_id"),
    ({"held_out": "no"}, "held_out"),
    ({"run_id": "3"}, "run_id"),
    ({"channel": "sms"}, "channel"),
    ({"idempotency_key": None}, "idempotency_key"),
    ({"step": "first"}, "step"),
])
def test_invalid_action_rejected(client, cdp, changes, field):
    response = client.post("/v1/actions", json=action(0, **changes))
    assert response.status_code == 400
    assert field in response.json()["message"]
    assert cdp.actions == {}


def test_repeated_key_is_duplicate(client, cdp):
    history = cdp.message_count
    first = client.post("/v1/actions", json=action(1))
    second = client.post("/v1/actions", json=action(1))
    assert first.status_code == 200
    assert first.json() == {"success": True, "duplicate": False}
    assert second.json() == {"success": True, "duplicate": True}
    assert cdp.action_requests == 2
    assert list(cdp.actions) == ["key-1"]
    messages = responses(cdp.url, history)
    assert len({message["messageId"] for message in messages}) == len(messages)
    assert Counter(message.get("event") for message in messages)["Email Delivered"] <= 1


def test_email_responses_reach_feed(client, cdp):
    history = cdp.message_count
    for index in range(100):
        assert client.post("/v1/actions", json=action(index)).status_code == 200
    messages = responses(cdp.url, history)
    events = Counter(message.get("event") for message in messages)
    assert events["Email Delivered"] >= 80
    assert 0 < events["Email Opened"] < events["Email Delivered"]
    assert 0 < events["Email Link Clicked"] < events["Email Opened"]
    assert events["Project Created"] > 0
    delivered = [message for message in messages if message.get("event") == "Email Delivered"]
    for message in delivered:
        assert message["type"] == "track"
        assert message["userId"].startswith("user_")
        assert {"playbook", "run_id", "action_id"} <= set(message["properties"])
        assert message["properties"]["playbook"] == "first-project-guidance"
        assert message["context"]["groupId"].startswith("acct_")
        assert "receivedAt" in message


def test_held_out_users_get_no_email(client, cdp):
    history = cdp.message_count
    for index in range(100):
        client.post("/v1/actions", json=action(index, held_out=True))
    messages = responses(cdp.url, history)
    assert not [message for message in messages if message.get("event") in EMAIL_EVENTS]
    # Some held-out users activate on their own: the baseline.
    assert [message for message in messages if message.get("event") == "Project Created"]


def test_treated_outcome_beats_holdout():
    responder = ActionResponder(Simulator(users=50, accounts=5, now=NOW))
    outcomes = Counter()
    for index in range(2000):
        held_out = index % 2 == 1
        events = {message.get("event") for _, message in responder.respond(
            action(index, run_id=index, held_out=held_out), 0)}
        outcomes[held_out] += "Project Created" in events
    treated_rate, holdout_rate = outcomes[False] / 1000, outcomes[True] / 1000
    assert 0.28 < treated_rate < 0.42
    assert 0.06 < holdout_rate < 0.14


def test_outcome_once_per_run_and_user():
    responder = ActionResponder(Simulator(users=50, accounts=5, now=NOW))
    activations = 0
    for step in range(40):
        events = [message.get("event") for _, message in responder.respond(
            action(step, user_id="user_00001", run_id=7, step=step, idempotency_key=f"s{step}"), 0)]
        activations += events.count("Project Created")
    assert activations <= 1


def test_responses_depend_on_key_only():
    first = ActionResponder(Simulator(users=50, accounts=5, now=NOW))
    second = ActionResponder(Simulator(users=50, accounts=5, now=NOW))
    second.respond(action(5), 0)
    assert first.respond(action(9), 1000) == second.respond(action(9), 1000)
    assert first.respond(action(10), 1000) != second.respond(action(11), 1000)


def test_response_delays_are_seconds():
    responder = ActionResponder(Simulator(users=50, accounts=5, now=NOW))
    delays = [delay for index in range(50) for delay, _ in responder.respond(action(index), 0)]
    assert delays
    assert all(1.0 <= delay <= 30.0 for delay in delays)
    scaled = [delay for delay, _ in ActionResponder(Simulator(users=50, accounts=5, now=NOW)).respond(
        action(3), 0, delay_scale=0.5)]
    assert scaled == sorted(scaled)


def test_playbook_loop_end_to_end(cache):
    """Sync the demo company, trigger a playbook on Not-Yet-Activated, dispatch it to the demo CDP
    over HTTP, sync again: the email events carry the run, and held-out users got none."""
    server = DemoCDP(users=300, accounts=30, write_key=WRITE_KEY, live_interval=0, response_delay_scale=0.01)
    server.start()
    try:
        config = parse_config({"source": {"url": server.url, "write_key": WRITE_KEY},
                               "operator": {"name": "e2e"}}, "e2e.toml")
        with HttpSource(server.url, WRITE_KEY) as source:
            sync_once(cache, source, config.settings)
            playbook = config.playbooks["first-project-guidance"]
            run = trigger(cache, config, playbook, Target("segment", "Not-Yet-Activated"))
            assert run.counts.queued > 10
            assert run.counts.held_out > 0

            report = dispatch_once(cache, config)
            assert report.not_configured == {}
            assert report.sent == 2 * run.counts.queued
            assert report.notices == run.counts.held_out

            # Sending the same actions again, as after a crash, reaches the CDP but is dropped.
            cache.conn.execute("UPDATE actions SET status = 'queued', next_attempt_at = 0 WHERE status = 'sent'")
            assert dispatch_once(cache, config).sent == 2 * run.counts.queued
            assert server.action_requests == 2 * (2 * run.counts.queued) + run.counts.held_out
            assert len(server.actions) == 2 * run.counts.queued + run.counts.held_out

            time.sleep(0.5)
            server.release_due_responses()
            sync_once(cache, source, config.settings)
    finally:
        server.stop()

    rows = cache.conn.execute(
        "SELECT user_key, event, payload FROM messages WHERE event IN (?, ?, ?)", EMAIL_EVENTS).fetchall()
    assert rows
    held_out = {action.user_id for action in runs.list_actions(cache, run_id=run.id, limit=10_000)
                if action.held_out}
    for user_id, _event, payload in rows:
        properties = orjson.loads(payload)["properties"]
        assert properties["run_id"] == run.id
        assert properties["playbook"] == "first-project-guidance"
        assert user_id not in held_out
