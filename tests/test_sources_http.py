"""Tests of the HTTP source: paging, authentication, failure classes, backoff and Retry-After."""

from __future__ import annotations

import base64
import json
import random
import socket
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from console.sources import SourceError
from console.sources.http import (
    AuthError,
    HttpSource,
    MalformedPage,
    NotFoundError,
    Page,
    RateLimited,
    ServerError,
    SourceTimeout,
    UnexpectedStatus,
    backoff_delays,
    parse_retry_after,
)

BASE = "http://127.0.0.1:8765"
EVENTS = f"{BASE}/v1/events"
WRITE_KEY = "wk_live_s3cr3t"


def make_source(handler, url: str = BASE, write_key: str = WRITE_KEY, **options) -> HttpSource:
    return HttpSource(url, write_key, transport=httpx.MockTransport(handler), **options)


def answer(status: int = 200, body: object = None, **options):
    """Build a MockTransport handler that gives every request the same response."""

    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, **options)
        return httpx.Response(status, json=body, **options)

    return handler


def raise_error(error_class: type[httpx.TransportError], message: str):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error_class(message, request=request)

    return handler


class FakeFeed:
    """An in-memory pull feed that pages `messages` by an integer cursor, recording requests."""

    def __init__(self, messages: list[object]) -> None:
        self.messages = messages
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path != "/v1/events":
            return httpx.Response(404)
        expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return httpx.Response(401)

        start = int(request.url.params.get("cursor", "0"))
        limit = int(request.url.params["limit"])
        data = self.messages[start : start + limit]
        return httpx.Response(200, json={"data": data, "next": str(start + len(data))})


# Paging


def test_fetch_pages_until_caught_up():
    messages = [{"type": "track", "messageId": f"m-{index}"} for index in range(5)]
    feed = FakeFeed(messages)

    with make_source(feed, page_limit=2) as source:
        pages = []
        cursor = None
        while True:
            page = source.fetch_page(cursor)
            pages.append(page)
            if not page.items:
                break
            cursor = page.next_cursor

    assert [len(page.items) for page in pages] == [2, 2, 1, 0]
    assert [page.next_cursor for page in pages] == ["2", "4", "5", "5"]
    fetched = [value for page in pages for _, value in page.items]
    assert fetched == messages


def test_first_request_omits_cursor():
    feed = FakeFeed([{"a": 1}])

    with make_source(feed, page_limit=50) as source:
        source.fetch_page(None)
        source.fetch_page("1")

    first, second = feed.requests
    assert "cursor" not in first.url.params
    assert first.url.params["limit"] == "50"
    assert second.url.params["cursor"] == "1"
    assert second.url.params["limit"] == "50"


def test_request_uses_basic_auth_with_write_key():
    feed = FakeFeed([])

    with make_source(feed) as source:
        source.fetch_page(None)

    request = feed.requests[0]
    assert request.method == "GET"
    assert request.url.path == "/v1/events"
    decoded = base64.b64decode(request.headers["Authorization"].removeprefix("Basic "))
    assert decoded == f"{WRITE_KEY}:".encode()


def test_item_locations_name_cursor_index():
    feed = FakeFeed([{"a": 1}, {"b": 2}, {"c": 3}])

    with make_source(feed) as source:
        start = source.fetch_page(None)
        later = source.fetch_page("1")

    assert [location for location, _ in start.items] == [
        f"{EVENTS} cursor=(start) #0",
        f"{EVENTS} cursor=(start) #1",
        f"{EVENTS} cursor=(start) #2",
    ]
    assert later.items[0] == (f"{EVENTS} cursor=1 #0", {"b": 2})


def test_page_items_of_any_json_type_passed_through():
    body = {"data": [{"a": 1}, 42, "text", None, [1]], "next": "c2"}

    with make_source(answer(200, body)) as source:
        page = source.fetch_page("c1")

    assert [value for _, value in page.items] == [{"a": 1}, 42, "text", None, [1]]
    assert page == Page(items=page.items, next_cursor="c2")


def test_cursor_with_special_characters_sent_encoded():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["cursor"])
        return httpx.Response(200, json={"data": [], "next": "a+b/c=&d"})

    with make_source(handler) as source:
        page = source.fetch_page("a+b/c=&d")

    assert seen == ["a+b/c=&d"]
    assert page.next_cursor == "a+b/c=&d"


def test_base_url_with_path_prefix():
    urls = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url.copy_with(query=None)))
        return httpx.Response(200, json={"data": [], "next": "x"})

    with make_source(handler, url="http://127.0.0.1:8765/cdp/") as source:
        source.fetch_page(None)

    assert urls == ["http://127.0.0.1:8765/cdp/v1/events"]
    assert source.name == "http://127.0.0.1:8765/cdp"


# Names and secrets


def test_name_strips_credentials():
    with make_source(FakeFeed([]), url="http://user:password@127.0.0.1:8765/") as source:
        assert source.name == BASE
        assert source.events_url == EVENTS
        assert "password" not in repr(source)
        assert WRITE_KEY not in repr(source)


def test_write_key_taken_from_url_user_name():
    feed = FakeFeed([{"a": 1}])

    with make_source(feed, url=f"http://{WRITE_KEY}@127.0.0.1:8765", write_key="") as source:
        page = source.fetch_page(None)

    assert len(page.items) == 1
    assert WRITE_KEY not in source.name
    assert all(WRITE_KEY not in location for location, _ in page.items)


def test_error_messages_never_contain_write_key(caplog):
    handlers = [
        answer(401),
        answer(404),
        answer(500),
        answer(429),
        answer(200, {"data": {}}),
        raise_error(httpx.ConnectError, "refused"),
    ]
    caplog.set_level("DEBUG")

    for handler in handlers:
        with make_source(handler) as source, pytest.raises(SourceError) as raised:
            source.fetch_page("c")
        assert WRITE_KEY not in str(raised.value)

    assert WRITE_KEY not in caplog.text


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/", "127.0.0.1:8765", "not a url", "http://", "http://[::1"]
)
def test_invalid_url_rejected(url):
    with pytest.raises(SourceError) as raised:
        HttpSource(url, WRITE_KEY)

    assert "invalid source URL" in str(raised.value)


def test_invalid_url_message_hides_password():
    with pytest.raises(SourceError) as raised:
        HttpSource("ftp://user:hunter2@127.0.0.1/", WRITE_KEY)

    assert "hunter2" not in str(raised.value)


def test_invalid_options_rejected():
    with pytest.raises(ValueError):
        HttpSource(BASE, WRITE_KEY, page_limit=0)
    with pytest.raises(ValueError):
        HttpSource(BASE, WRITE_KEY, timeout=0)


def test_close_closes_client():
    source = make_source(FakeFeed([]))
    source.close()

    with pytest.raises(RuntimeError):
        source.fetch_page(None)


# Failure classes


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_write_key_raises_auth_error(status):
    with make_source(answer(status)) as source, pytest.raises(AuthError) as raised:
        source.fetch_page(None)

    assert raised.value.retryable is False
    assert "write key rejected" in str(raised.value)
    assert EVENTS in str(raised.value)
    assert f"HTTP {status}" in str(raised.value)


def test_wrong_write_key_against_feed_raises_auth_error():
    with make_source(FakeFeed([]), write_key="wrong") as source, pytest.raises(AuthError):
        source.fetch_page(None)


def test_missing_feed_raises_not_found():
    with make_source(answer(404)) as source, pytest.raises(NotFoundError) as raised:
        source.fetch_page(None)

    assert raised.value.retryable is False
    assert str(raised.value) == (
        f"no pull feed at {EVENTS} (HTTP 404): is this a segops-compatible CDP?"
    )


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_carries_status(status):
    with make_source(answer(status)) as source, pytest.raises(ServerError) as raised:
        source.fetch_page("c")

    assert raised.value.retryable is True
    assert raised.value.status == status
    assert f"HTTP {status}" in str(raised.value)
    assert EVENTS in str(raised.value)


def test_rate_limited_with_retry_after_seconds():
    handler = answer(429, headers={"Retry-After": "7"})

    with make_source(handler) as source, pytest.raises(RateLimited) as raised:
        source.fetch_page("c")

    assert raised.value.retryable is True
    assert raised.value.retry_after == 7.0
    assert "retry after 7 s" in str(raised.value)


def test_rate_limited_without_retry_after():
    with make_source(answer(429)) as source, pytest.raises(RateLimited) as raised:
        source.fetch_page("c")

    assert raised.value.retry_after is None
    assert str(raised.value) == f"rate limited by {EVENTS} (HTTP 429)"


def test_rate_limited_with_retry_after_date():
    later = datetime.now(timezone.utc) + timedelta(seconds=120)
    handler = answer(429, headers={"Retry-After": format_datetime(later, usegmt=True)})

    with make_source(handler) as source, pytest.raises(RateLimited) as raised:
        source.fetch_page("c")

    assert 100 <= raised.value.retry_after <= 120


@pytest.mark.parametrize(
    "error_class", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout]
)
def test_timeouts_raise_source_timeout(error_class):
    with make_source(raise_error(error_class, "timed out"), timeout=2.5) as source:
        with pytest.raises(SourceTimeout) as raised:
            source.fetch_page("c")

    assert raised.value.retryable is True
    assert f"cannot reach {EVENTS}" in str(raised.value)
    assert "no response within 2.5 s" in str(raised.value)


@pytest.mark.parametrize(
    "error_class", [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError]
)
def test_connection_failures_raise_source_timeout(error_class):
    with make_source(raise_error(error_class, "connection broke")) as source:
        with pytest.raises(SourceTimeout) as raised:
            source.fetch_page("c")

    assert raised.value.retryable is True
    assert f"cannot reach {EVENTS}" in str(raised.value)
    assert "connection broke" in str(raised.value)


def test_connection_refused_on_closed_local_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with HttpSource(f"http://127.0.0.1:{port}", WRITE_KEY, timeout=2) as source:
        with pytest.raises(SourceTimeout) as raised:
            source.fetch_page(None)

    assert f"cannot reach http://127.0.0.1:{port}/v1/events" in str(raised.value)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>Bad gateway</html>", "body is not JSON"),
        (b"", "body is not JSON"),
        (b'[{"a": 1}]', "body is an array, expected an object with 'data' and 'next'"),
        (b'"text"', "body is a string"),
        (b'{"next": "c"}', "'data' is missing, expected an array"),
        (b'{"data": {"a": 1}, "next": "c"}', "'data' is an object, expected an array"),
        (b'{"data": null, "next": "c"}', "'data' is null"),
        (b'{"data": "x", "next": "c"}', "'data' is a string"),
        (b'{"data": []}', "'next' is missing, expected a string"),
        (b'{"data": [], "next": null}', "'next' is null"),
        (b'{"data": [], "next": 5}', "'next' is a number"),
        (b'{"data": [], "next": true}', "'next' is a boolean"),
        (b'{"data": [], "next": ["c"]}', "'next' is an array"),
    ],
)
def test_malformed_page(body, problem):
    with make_source(answer(200, content=body)) as source, pytest.raises(MalformedPage) as raised:
        source.fetch_page("abc")

    assert raised.value.retryable is True
    assert problem in str(raised.value)
    assert f"{EVENTS} cursor=abc" in str(raised.value)


def test_malformed_page_shows_start_of_body():
    body = b"<html>" + b"x" * 1000 + b"</html>"

    with make_source(answer(200, content=body)) as source, pytest.raises(MalformedPage) as raised:
        source.fetch_page(None)

    assert "'<html>xxx" in str(raised.value)
    assert "</html>" not in str(raised.value)


def test_redirect_reported_not_followed():
    handler = answer(301, headers={"Location": "https://127.0.0.1:8443/v1/events"})

    with make_source(handler) as source, pytest.raises(UnexpectedStatus) as raised:
        source.fetch_page(None)

    assert raised.value.retryable is False
    assert raised.value.status == 301
    assert "redirects to https://127.0.0.1:8443/v1/events" in str(raised.value)


def test_other_client_error_raises_unexpected_status():
    handler = answer(400, content=b"limit too large")

    with make_source(handler) as source, pytest.raises(UnexpectedStatus) as raised:
        source.fetch_page(None)

    assert raised.value.status == 400
    assert "HTTP 400" in str(raised.value)
    assert "limit too large" in str(raised.value)


def test_every_failure_is_a_source_error():
    for error_class in (
        AuthError,
        NotFoundError,
        ServerError,
        RateLimited,
        SourceTimeout,
        MalformedPage,
        UnexpectedStatus,
    ):
        assert issubclass(error_class, SourceError)


# Retry-After and backoff


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", 0.0),
        ("30", 30.0),
        (" 2.5 ", 2.5),
        ("-1", None),
        ("soon", None),
        ("", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header, expected):
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=timezone.utc)

    assert parse_retry_after(header, now=now) == expected


def test_parse_retry_after_missing_header():
    assert parse_retry_after(None) is None


def test_backoff_delays_stay_under_doubling_ceiling():
    delays = backoff_delays(base=1.0, cap=60.0, rng=random.Random(7))

    drawn = [next(delays) for _ in range(12)]

    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60]
    for delay, ceiling in zip(drawn, ceilings):
        assert 0.0 <= delay <= ceiling


def test_backoff_delays_are_jittered_and_reach_cap():
    delays = backoff_delays(base=0.5, cap=10.0, rng=random.Random(1))

    drawn = [next(delays) for _ in range(1000)]

    assert len(set(drawn)) == len(drawn)
    assert max(drawn[10:]) > 9.0
    assert max(drawn) <= 10.0


def test_backoff_delays_deterministic_with_seed():
    first = backoff_delays(rng=random.Random(42))
    second = backoff_delays(rng=random.Random(42))

    assert [next(first) for _ in range(20)] == [next(second) for _ in range(20)]


def test_backoff_delays_endless_without_overflow():
    delays = backoff_delays(base=1.0, cap=5.0, rng=random.Random(3))

    for _ in range(5000):
        assert 0.0 <= next(delays) <= 5.0


@pytest.mark.parametrize(("base", "cap"), [(0, 60), (-1, 60), (10, 5)])
def test_backoff_delays_invalid_arguments(base, cap):
    with pytest.raises(ValueError):
        backoff_delays(base=base, cap=cap)


# A real HTTP server on 127.0.0.1


class FeedRequestHandler(BaseHTTPRequestHandler):
    messages = [{"type": "track", "messageId": f"m-{index}"} for index in range(3)]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        expected = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        if parts.path != "/v1/events":
            self.reply(404, {"error": "not found"})
        elif self.headers.get("Authorization") != expected:
            self.reply(401, {"error": "unauthorized"})
        else:
            start = int(query.get("cursor", ["0"])[0])
            limit = int(query["limit"][0])
            data = self.messages[start : start + limit]
            self.reply(200, {"data": data, "next": str(start + len(data))})

    def reply(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_feed_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FeedRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_real_server_paging(local_feed_url):
    with HttpSource(local_feed_url, WRITE_KEY, page_limit=2, timeout=5) as source:
        first = source.fetch_page(None)
        second = source.fetch_page(first.next_cursor)
        caught_up = source.fetch_page(second.next_cursor)

    assert [value["messageId"] for _, value in first.items] == ["m-0", "m-1"]
    assert [value["messageId"] for _, value in second.items] == ["m-2"]
    assert caught_up.items == []
    assert caught_up.next_cursor == "3"


def test_real_server_rejects_wrong_key(local_feed_url):
    with HttpSource(local_feed_url, "wrong", timeout=5) as source, pytest.raises(AuthError):
        source.fetch_page(None)


def test_real_server_without_feed(local_feed_url):
    with HttpSource(local_feed_url + "/other", WRITE_KEY, timeout=5) as source:
        with pytest.raises(NotFoundError):
            source.fetch_page(None)
