"""The dispatcher: sending, retries with backoff, giving up, recovering a dead dispatcher's claims,
and a real dispatcher process killed mid-run against a slow server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from conftest import Messages, T, days

from console.config import load_config, parse_config
from console.dispatch import claimant_alive, claimant_id, dispatch_once, retry_delay, run_dispatcher
from store import runs
from store.db import open_cache
from store.memberships import refresh
from store.runs import Target
from store.timeparse import now_ms

SECRET_ENV = "SEGOPS_TEST_HOOK_SECRET"
SECRET = "hook-signing-secret-0001"
ENVIRON = {SECRET_ENV: SECRET}
MINUTE_MS = 60_000


def make_config(steps=None, holdout_share=0.0, source_url=None, **dispatch):
    data = {
        "destinations": {"hook": {"type": "webhook", "url": "https://hooks.example.com/segops",
                                  "secret_env": SECRET_ENV}},
        "playbooks": {"welcome": {
            "segment": "New", "holdout_share": holdout_share,
            "steps": steps or [{"channel": "email", "destination": "hook", "content": "email-1"}],
        }},
        "dispatch": {"backoff_base_seconds": 10.0, "backoff_max_seconds": 300.0, **dispatch},
    }
    if source_url:
        data["source"] = {"url": source_url, "write_key": "demo"}
    return parse_config(data, "dispatch.toml")


@pytest.fixture
def outbox(cache, messages):
    """A cache whose New segment has users u0 to u9, and a function that queues a run for them."""
    for index in range(10):
        messages.track(f"u{index}", "Signed Up", T - days(1))
    messages.ingest(cache)

    def queue(config, users=("u0",), at=T):
        refresh(cache, config.settings, T)
        playbook = config.playbooks["welcome"]
        return runs.create_run(cache, playbook, Target("segment", "New"), operator="test", now=at,
                               users=list(users), notice_destinations=["demo"])

    return cache, queue


def transport(*responses):
    """Return a MockTransport that returns the next response to each request (the last one
    repeats), or raises it when it is an exception. `.requests` lists the requests."""
    answers = list(responses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    mock = httpx.MockTransport(handler)
    mock.requests = seen
    return mock


def only_action(cache):
    [action] = runs.list_actions(cache)
    return action


def test_success_marks_sent(outbox):
    cache, queue = outbox
    config = make_config()
    queue(config)
    mock = transport(httpx.Response(200, json={"ok": True}))

    report = dispatch_once(cache, config, clock=lambda: T, transport=mock, environ=ENVIRON)

    assert (report.sent, report.retried, report.failed) == (1, 0, 0)
    action = only_action(cache)
    assert (action.status, action.sent_at, action.attempts, action.claimed_at) == ("sent", T, 1, None)
    [attempt] = runs.list_attempts(cache, action.id)
    assert attempt.status_code == 200
    assert attempt.response_excerpt == '{"ok":true}'
    assert attempt.error is None
    assert dispatch_once(cache, config, clock=lambda: T, transport=mock, environ=ENVIRON).attempted == 0
    assert len(mock.requests) == 1


def test_server_error_retries_with_backoff(outbox):
    cache, queue = outbox
    config = make_config()
    queue(config)
    mock = transport(httpx.Response(503, text="busy"), httpx.Response(200))

    first = dispatch_once(cache, config, clock=lambda: T, transport=mock, environ=ENVIRON, rng=random.Random(1))
    action = only_action(cache)
    assert first.retried == 1
    assert action.status == "queued"
    # Retry 1 waits between half and all of backoff_base_seconds (10 s).
    assert T + 5_000 <= action.next_attempt_at <= T + 10_000
    assert action.last_error == "HTTP 503 from hook"

    early = dispatch_once(cache, config, clock=lambda: action.next_attempt_at - 1, transport=mock, environ=ENVIRON)
    assert early.attempted == 0
    later = dispatch_once(cache, config, clock=lambda: action.next_attempt_at, transport=mock, environ=ENVIRON)
    assert later.sent == 1
    assert [a.status_code for a in runs.list_attempts(cache, action.id)] == [503, 200]
    # Both requests carried the same idempotency key.
    assert {request.headers["Idempotency-Key"] for request in mock.requests} == {action.idempotency_key}


@pytest.mark.parametrize("retry_after, wait_ms", [("120", 120_000), ("Wed, 21 Oct 2099 07:28:00 GMT", None)])
def test_rate_limit_honours_retry_after(outbox, retry_after, wait_ms):
    cache, queue = outbox
    config = make_config()
    queue(config)
    mock = transport(httpx.Response(429, headers={"Retry-After": retry_after}))

    report = dispatch_once(cache, config, clock=lambda: T, transport=mock, environ=ENVIRON)

    action = only_action(cache)
    assert report.retried == 1
    if wait_ms is not None:
        assert action.next_attempt_at == T + wait_ms
    else:
        assert action.next_attempt_at > T + days(365)


@pytest.mark.parametrize("answer, error", [
    (httpx.Response(408), "HTTP 408 from hook"),
    (httpx.ReadTimeout("slow"), "timed out: no response within 10 s (ReadTimeout)"),
    (httpx.ConnectError("refused"), "request failed: ConnectError: refused"),
])
def test_timeouts_and_408_retry(outbox, answer, error):
    cache, queue = outbox
    config = make_config()
    queue(config)
    report = dispatch_once(cache, config, clock=lambda: T, transport=transport(answer), environ=ENVIRON)
    action = only_action(cache)
    assert report.retried == 1
    assert action.status == "queued"
    assert action.last_error == error


def test_client_error_fails_at_once(outbox):
    cache, queue = outbox
    config = make_config()
    run = queue(config)
    report = dispatch_once(cache, config, clock=lambda: T,
                           transport=transport(httpx.Response(400, json={"error": "bad campaign"})), environ=ENVIRON)
    action = only_action(cache)
    assert report.failed == 1
    assert action.status == "failed"
    assert "HTTP 400 from hook: rejected" in action.last_error
    [entry] = runs.list_audit(cache)
    assert (entry["event"], entry["run_id"]) == ("action_failed", run.id)
    assert runs.list_attempts(cache, action.id)[0].response_excerpt == '{"error":"bad campaign"}'


def test_redirect_is_not_followed(outbox):
    cache, queue = outbox
    config = make_config()
    queue(config)
    answer = httpx.Response(301, headers={"Location": "https://elsewhere.example.com/"})
    dispatch_once(cache, config, clock=lambda: T, transport=transport(answer), environ=ENVIRON)
    action = only_action(cache)
    assert action.status == "failed"
    assert "https://elsewhere.example.com/" in action.last_error


def test_gives_up_after_max_attempts(outbox):
    cache, queue = outbox
    config = make_config(max_attempts=3)
    queue(config)
    mock = transport(httpx.Response(500))
    clock = T
    for _ in range(3):
        dispatch_once(cache, config, clock=lambda: clock, transport=mock, environ=ENVIRON)
        clock += days(1)
    action = only_action(cache)
    assert action.status == "failed"
    assert action.attempts == 3
    assert action.last_error.startswith("gave up after 3 attempts")
    assert len(mock.requests) == 3
    assert dispatch_once(cache, config, clock=lambda: clock, transport=mock, environ=ENVIRON).attempted == 0


def test_later_steps_wait_for_their_delay(outbox):
    cache, queue = outbox
    config = make_config(steps=[
        {"channel": "email", "destination": "hook", "content": "first"},
        {"channel": "email", "destination": "hook", "content": "second", "delay_minutes": 60},
    ])
    queue(config)
    mock = transport(httpx.Response(200))
    assert dispatch_once(cache, config, clock=lambda: T + 59 * MINUTE_MS, transport=mock, environ=ENVIRON).sent == 1
    assert dispatch_once(cache, config, clock=lambda: T + 60 * MINUTE_MS, transport=mock, environ=ENVIRON).sent == 1
    assert [json.loads(request.content)["content"] for request in mock.requests] == ["first", "second"]


def test_held_out_notices_go_only_to_demo(outbox):
    cache, queue = outbox
    config = make_config(
        steps=[{"channel": "email", "destination": "hook", "content": "email-1"},
               {"channel": "in_app", "destination": "demo", "content": "inapp-1"}],
        holdout_share=0.5, source_url="http://demo.test",
    )
    users = [f"u{index}" for index in range(10)]
    run = queue(config, users=users)
    held = {user for user in users if runs.is_held_out("welcome", user, 0.5)}
    assert 0 < len(held) < 10
    mock = transport(httpx.Response(200))

    report = dispatch_once(cache, config, clock=lambda: T, transport=mock, environ=ENVIRON)

    hook = [json.loads(r.content) for r in mock.requests if r.url.host == "hooks.example.com"]
    demo = [json.loads(r.content) for r in mock.requests if r.url.host == "demo.test"]
    assert {payload["user"]["id"] for payload in hook} == set(users) - held
    assert {payload["user_id"] for payload in demo if payload["held_out"]} == held
    assert {payload["user_id"] for payload in demo if not payload["held_out"]} == set(users) - held
    assert report.notices == len(held)
    assert report.sent == 2 * (10 - len(held))
    statuses = runs.action_status_counts(cache, run.id)
    assert statuses == {"held_out": 2 * len(held), "sent": 2 * (10 - len(held))}


def test_not_configured_destination_keeps_actions(outbox):
    cache, queue = outbox
    config = make_config()
    queue(config, users=("u0", "u1"))
    report = dispatch_once(cache, config, clock=lambda: T, transport=transport(httpx.Response(200)), environ={})
    assert SECRET_ENV in report.not_configured["hook"]
    assert runs.action_status_counts(cache) == {"queued": 2}
    assert all(action.attempts == 0 for action in runs.list_actions(cache))


def test_dead_claim_is_sent_again_with_same_key(outbox):
    cache, queue = outbox
    config = make_config()
    queue(config)
    [claimed] = runs.claim_due(cache, now=T, claimant=f"{claimant_id().rpartition(':')[0]}:999999999", limit=1)
    assert claimed.status == "sending"
    assert claimed.claimed_at == T
    mock = transport(httpx.Response(200))

    report = dispatch_once(cache, config, clock=lambda: T + 1000, transport=mock, environ=ENVIRON)

    assert report.recovered == 1
    assert report.sent == 1
    action = only_action(cache)
    assert action.status == "sent"
    assert [request.headers["Idempotency-Key"] for request in mock.requests] == [claimed.idempotency_key]
    first, second = runs.list_attempts(cache, action.id)
    assert first.error.startswith("interrupted")
    assert second.status_code == 200


def test_live_claim_waits_for_its_lease(outbox):
    cache, queue = outbox
    config = make_config(claim_timeout_seconds=120.0)
    queue(config)
    runs.claim_due(cache, now=T, claimant="another-host:1", limit=1)
    mock = transport(httpx.Response(200))

    within = dispatch_once(cache, config, clock=lambda: T + 119_000, transport=mock, environ=ENVIRON)
    assert (within.recovered, within.attempted) == (0, 0)
    expired = dispatch_once(cache, config, clock=lambda: T + 120_000, transport=mock, environ=ENVIRON)
    assert (expired.recovered, expired.sent) == (1, 1)


def test_claimant_alive_checks():
    assert claimant_alive(claimant_id())
    assert claimant_alive("another-host:1")
    assert claimant_alive("garbled")
    assert not claimant_alive(f"{claimant_id().rpartition(':')[0]}:999999999")


def test_retry_delay_grows_to_cap():
    rng = random.Random(3)
    delays = [retry_delay(attempt, 2.0, 60.0, rng) for attempt in range(1, 10)]
    ceilings = [min(60.0, 2.0 * 2 ** (attempt - 1)) for attempt in range(1, 10)]
    for delay, ceiling in zip(delays, ceilings):
        assert ceiling / 2 <= delay <= ceiling


def test_loop_stops_when_asked(outbox, monkeypatch):
    cache, queue = outbox
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = make_config(interval_seconds=0.05)
    queue(config)
    stop = threading.Event()
    reports = []

    def on_report(report):
        reports.append(report)
        stop.set()

    run_dispatcher(cache, config, stop=stop, clock=lambda: T, on_report=on_report,
                   transport=transport(httpx.Response(200)))
    assert reports[0].sent == 1


# --- a dispatcher process killed in the middle of a run ------------------------------------------


class DedupingServer(ThreadingHTTPServer):
    """A slow webhook receiver on 127.0.0.1 that checks the signature, counts every request, and
    delivers each idempotency key once. It records a delivery before it responds, so a client
    killed while waiting has delivered an action it never saw accepted."""

    daemon_threads = True

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _DedupingHandler)
        self.delay = delay
        self.lock = threading.Lock()
        self.requests = 0
        self.duplicates = 0
        self.bad_signatures = 0
        self.deliveries: Counter[str] = Counter()

    def handle_error(self, request, client_address) -> None:
        # The killed client's connection breaks while the response is written: expected here.
        pass


class _DedupingHandler(BaseHTTPRequestHandler):
    server: DedupingServer

    def log_message(self, format, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["Idempotency-Key"]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        server = self.server
        with server.lock:
            server.requests += 1
            server.bad_signatures += self.headers["X-Segops-Signature"] != expected
            duplicate = key in server.deliveries
            if duplicate:
                server.duplicates += 1
            else:
                server.deliveries[key] += 1
        time.sleep(server.delay)
        answer = json.dumps({"duplicate": duplicate}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def clean_environment() -> dict:
    environment = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    environment["NO_PROXY"] = "127.0.0.1,localhost"
    environment[SECRET_ENV] = SECRET
    return environment


def test_killed_dispatcher_loses_and_repeats_nothing(tmp_path):
    server = DedupingServer(delay=0.3)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    config_path = tmp_path / "kill.toml"
    config_path.write_text(
        f'[destinations.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:{server.server_address[1]}/hook"\n'
        f'secret_env = "{SECRET_ENV}"\n'
        '[playbooks.welcome]\nsegment = "New"\nholdout_share = 0.0\n'
        '[[playbooks.welcome.steps]]\nchannel = "email"\ndestination = "hook"\ncontent = "email-1"\n'
        # A long lease: only the dead process check can recover the claim within this test.
        "[dispatch]\ninterval_seconds = 0.2\nclaim_timeout_seconds = 600.0\n",
        encoding="utf-8",
    )
    cache_path = tmp_path / "cache.db"
    cache = open_cache(cache_path)
    now = now_ms()
    messages = Messages()
    for index in range(10):
        messages.track(f"user-{index}", "Signed Up", now - days(1))
    messages.ingest(cache)
    config = load_config(config_path)
    refresh(cache, config.settings, now)
    runs.create_run(cache, config.playbooks["welcome"], Target("segment", "New"), operator="test", now=now)
    keys = {action.idempotency_key for action in runs.list_actions(cache)}
    assert len(keys) == 10

    segops = [str(Path(sys.executable).parent / "segops"), "--cache", str(cache_path), "--config", str(config_path)]
    process = subprocess.Popen([*segops, "dispatch"], env=clean_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while server.requests < 4 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        # The 4th request is delivered, and its response is 0.3 s away.
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert server.requests == 4
    assert runs.action_status_counts(cache) == {"queued": 6, "sending": 1, "sent": 3}

    restarted = subprocess.run([*segops, "dispatch", "--once"], env=clean_environment(), capture_output=True,
                               text=True, timeout=60)
    server.shutdown()
    server.server_close()

    assert restarted.returncode == 0, restarted.stderr
    assert runs.action_status_counts(cache) == {"sent": 10}
    # Every action was delivered exactly once; the one in flight was sent again with its key.
    assert set(server.deliveries) == keys
    assert set(server.deliveries.values()) == {1}
    assert server.duplicates == 1
    assert server.requests == 11
    assert server.bad_signatures == 0
    interrupted = [action for action in runs.list_actions(cache) if action.attempts == 2]
    assert len(interrupted) == 1
    assert runs.list_attempts(cache, interrupted[0].id)[0].error.startswith("interrupted")
    cache.conn.close()
