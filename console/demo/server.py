"""The demo CDP: an HTTP server on 127.0.0.1 that takes Segment's HTTP Tracking API and serves a
pull feed of everything it received, preloaded with the simulator's history.

Endpoints (every one but `/health` needs HTTP Basic auth whose user name is the write key):

- `POST /v1/track`, `/v1/identify`, `/v1/group`, `/v1/page`, `/v1/screen`, `/v1/alias`: one message,
  whose type is set from the path. `POST /v1/batch`: `{"batch": [...], "context"?, "integrations"?,
  "sentAt"?}`. As Segment does, the server also takes the write key from a `writeKey` body field. It
  returns 200 `{"success": true}` for whatever it stores, and 400 only for invalid JSON or a payload
  over the limits of 32 KB per message and 500 KB per batch request. It checks no Segment-spec
  semantics, so it stores each message as received, plus `receivedAt`.
- `GET /v1/events?cursor=C&limit=N`: messages in receive order, `{"data": [...], "next": "<cursor>"}`.
  An empty `data` means caught up; the same `next` cursor returns newer messages later.
- `POST /v1/actions`: a playbook action, as a destination receives it: `user_id`, `playbook`,
  `segment`, `run_id`, `action_id`, `step`, `channel`, `content`, `idempotency_key`, `held_out`. It
  returns 200 `{"success": true, "duplicate": false}`, or `"duplicate": true` for an idempotency
  key it already has, which it ignores. A few seconds later the feed carries the simulated users'
  responses (`ActionResponder`): email events with `playbook`, `run_id` and `action_id`, and
  sometimes the outcome the playbook aims at. Held-out users (`held_out: true`) were never sent
  anything, so they get no email events, only the smaller baseline chance of that outcome.
- `GET /health`: `{"ok": true, "messages": N}`, without auth.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import hmac
import json
import logging
import random
import re
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Iterable
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson

from console.demo.simulator import ActionResponder, Simulator, format_iso_ms, to_epoch_ms

logger = logging.getLogger("segops.demo")

# Segment's documented limits for its HTTP Tracking API, in bytes of JSON.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
# A request body over a limit is still read and discarded up to this size, so that the client gets
# the 400 response instead of a connection reset. After a larger one, the connection is closed.
MAX_DRAIN_BYTES = 16 * 1024 * 1024

DEFAULT_FEED_LIMIT = 1000
MAX_FEED_LIMIT = 5000

SINGLE_MESSAGE_TYPES = ("track", "identify", "group", "page", "screen", "alias")
TRACKING_PATHS = {f"/v1/{kind}" for kind in SINGLE_MESSAGE_TYPES} | {"/v1/batch"}
FEED_PATH = "/v1/events"
ACTIONS_PATH = "/v1/actions"
HEALTH_PATH = "/health"
ACTION_CHANNELS = ("email", "in_app", "cs_task")
# Seconds between checks for responses to actions that are due in the feed.
RESPONSE_POLL_SECONDS = 0.05

# History messages are received this many milliseconds after their timestamp.
HISTORY_RECEIVE_DELAY_MS = (500, 5000)
# An idle keep-alive connection is closed after this many seconds.
CONNECTION_TIMEOUT_SECONDS = 30

_CURSOR_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CURSOR_PAYLOAD = re.compile(rb"v1:(0|[1-9][0-9]{0,17})")


class RequestError(Exception):
    """A request the server rejects, with the HTTP status and the message of its JSON body."""

    def __init__(self, status: HTTPStatus, code: str, message: str, *, close: bool = False,
                 allow: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        # Close the connection after the response, because the request body was not read.
        self.close = close
        # The `Allow` header of a 405 response.
        self.allow = allow


def encode_cursor(offset: int) -> str:
    """Encode a log offset as an opaque cursor."""
    return base64.urlsafe_b64encode(b"v1:%d" % offset).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> int:
    """Decode a cursor made by `encode_cursor`; raise `ValueError` for anything else."""
    if not _CURSOR_PATTERN.fullmatch(cursor):
        raise ValueError("invalid characters or length")
    try:
        payload = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError(str(error)) from None
    match = _CURSOR_PAYLOAD.fullmatch(payload)
    if match is None:
        raise ValueError("not a feed cursor")
    return int(match.group(1))


def serialize(message: dict) -> bytes:
    """Serialize a message as compact JSON bytes.

    orjson rejects integers outside 64 bits and lone surrogates, which the stdlib parser accepts, so
    those messages fall back to the stdlib serializer with ASCII escapes.
    """
    try:
        return orjson.dumps(message)
    except orjson.JSONEncodeError:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> object:
    """Parse a request body as strict JSON (no NaN or Infinity); raise `RequestError` (400)."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_json", f"Invalid JSON: {error}") from None


def merge_under(defaults: dict, overrides: dict) -> dict:
    """Return `overrides` merged over `defaults`, recursing where both values are objects."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_under(merged[key], value)
        else:
            merged[key] = value
    return merged


class EventLog:
    """The receive-ordered log of serialized messages. Safe for concurrent appends and reads.

    Messages are kept back to back in one buffer, each followed by a comma, so that a feed page is
    one slice of it. That is faster than joining a page from separate bytes objects, and 300,000
    messages take one allocation instead of 300,000.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        # _ends[i] is the buffer offset just after message i and its comma.
        self._ends = array("Q")
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ends)

    def extend(self, entries: Iterable[bytes]) -> None:
        """Append serialized messages, each one JSON value."""
        with self._lock:
            buffer, ends = self._buffer, self._ends
            for entry in entries:
                buffer += entry
                buffer += b","
                ends.append(len(buffer))

    def page(self, offset: int, limit: int) -> tuple[bytes, int, int]:
        """Return up to `limit` messages from `offset` as one comma-separated byte string, their
        count, and the offset after them.

        Raises `ValueError` when `offset` is past the end of the log.
        """
        with self._lock:
            size = len(self._ends)
            if offset > size:
                raise ValueError(f"offset {offset} is past the end of the log ({size} messages)")
            end = min(size, offset + limit)
            if end == offset:
                return b"", 0, offset
            first = self._ends[offset - 1] if offset else 0
            # Leave out the comma after the last message.
            return bytes(self._buffer[first:self._ends[end - 1] - 1]), end - offset, end


class DemoCDP:
    """The demo CDP server. `start()` serves in a daemon thread; `serve_forever()` in the foreground.

    `users=0` gives an empty CDP with no live messages. `live_interval` is in seconds; 0 disables
    the live messages. `now` (default: the current time) is the end of the history; live messages
    are timed from it as the wall clock advances. `response_delay_scale` multiplies the delays of
    the simulated responses to playbook actions (a few seconds each at 1.0).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 7,
        write_key: str = "demo",
        users: int = 5000,
        accounts: int = 500,
        history_days: int = 180,
        live_interval: float = 3.0,
        now: datetime | None = None,
        response_delay_scale: float = 1.0,
    ) -> None:
        if not write_key:
            raise ValueError("write_key must not be empty")
        if live_interval < 0:
            raise ValueError(f"live_interval must be 0 or more seconds, got {live_interval}")
        if response_delay_scale < 0:
            raise ValueError(f"response_delay_scale must be 0 or more, got {response_delay_scale}")
        self.host = host
        self.port = port
        self.seed = seed
        self.write_key = write_key
        self.live_interval = live_interval
        self.simulator = Simulator(seed=seed, users=users, accounts=accounts,
                                   history_days=history_days, now=now)
        # With the real clock, live time runs on from the moment the simulator read it, so that
        # generating the history does not leave the live messages seconds behind real time.
        self._clock_origin = time.monotonic() if now is None else None
        self.log = EventLog()

        self.response_delay_scale = response_delay_scale
        self.responder = ActionResponder(self.simulator)
        # Actions by idempotency key, and the number of action requests, duplicates included.
        self.actions: dict[str, dict] = {}
        self.action_requests = 0
        # Responses waiting for their time: (time.monotonic() when due, sequence, message).
        self._responses: list[tuple[float, int, dict]] = []
        self._response_sequence = 0
        self._actions_lock = threading.Lock()

        # Seconds that generating and serializing the history took, at the first `start()`.
        self.history_seconds = 0.0
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        # The origin of the live clock: time.monotonic() when the simulator read the real clock,
        # else at the first start().
        self._started_monotonic: float | None = None
        self._history_loaded = False
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL of the running server, `http://HOST:PORT`."""
        if self._server is None:
            raise RuntimeError("the demo CDP is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def message_count(self) -> int:
        """Number of messages in the log."""
        return len(self.log)

    def start(self) -> None:
        """Load the history (first start only), bind the port and serve in daemon threads.

        Returns once the server is listening. Raises `OSError` when the port cannot be bound.
        """
        with self._lock:
            if self._server is not None:
                return
            if not self._history_loaded:
                self._load_history()
            server = _Server((self.host, self.port), _Handler)
            server.cdp = self
            self._server = server
            self._stopping.clear()
            if self._started_monotonic is None:
                self._started_monotonic = self._clock_origin or time.monotonic()
            # A short poll interval makes stop() return within 0.1 s instead of the default 0.5 s.
            serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="demo-cdp-http", daemon=True)
            responding = threading.Thread(target=self._run_responses, name="demo-cdp-responses", daemon=True)
            self._threads = [serving, responding]
            if self.live_interval > 0 and self.simulator.users:
                self._threads.append(threading.Thread(target=self._run_live, name="demo-cdp-live",
                                                      daemon=True))
            for thread in self._threads:
                thread.start()
        logger.info("demo CDP listening on %s with %d messages", self.url, len(self.log))

    def stop(self) -> None:
        """Stop serving and the live messages; the log is kept, so `start()` serves it again."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            self._stopping.set()
            server.shutdown()
            server.server_close()
            for thread in self._threads:
                thread.join()
            self._threads = []
        logger.info("demo CDP stopped with %d messages", len(self.log))

    def serve_forever(self) -> None:
        """Start, and serve in the foreground until KeyboardInterrupt; then stop."""
        self.start()
        try:
            while not self._stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            logger.info("demo CDP interrupted")
        finally:
            self.stop()

    def append(self, messages: Iterable[dict]) -> None:
        """Append messages to the log as if received now; `receivedAt` is added when missing."""
        received_at = format_iso_ms(to_epoch_ms(datetime.now(timezone.utc)))
        entries = []
        for message in messages:
            if "receivedAt" not in message:
                message = dict(message, receivedAt=received_at)
            entries.append(serialize(message))
        self.log.extend(entries)

    def clock(self) -> datetime:
        """Return the simulated time: the simulator's `now` plus the time since the first `start()`."""
        if self._started_monotonic is None:
            return self.simulator.now
        elapsed = time.monotonic() - self._started_monotonic
        return datetime.fromtimestamp(self.simulator.now_ms / 1000 + elapsed, timezone.utc)

    def _load_history(self) -> None:
        started = time.perf_counter()
        history = self.simulator.history()
        rng = random.Random(f"segops-demo/{self.seed}/received")
        now_ms = self.simulator.now_ms
        low, high = HISTORY_RECEIVE_DELAY_MS
        received_ms = 0
        for message in history:
            timestamp_ms = to_epoch_ms(datetime.fromisoformat(message["timestamp"]))
            delay_ms = low + int(rng.random() * (high - low))
            # Receive times keep the log's order and never pass the end of the history.
            received_ms = min(max(received_ms, timestamp_ms + delay_ms), now_ms)
            message["receivedAt"] = format_iso_ms(received_ms)
        self.log.extend(serialize(message) for message in history)
        self._history_loaded = True
        self.history_seconds = time.perf_counter() - started
        logger.info("demo CDP generated %d history messages in %.2f s", len(history), self.history_seconds)

    def _run_live(self) -> None:
        failures = 0
        while not self._stopping.wait(self.live_interval):
            try:
                moment = self.clock()
                received_at = format_iso_ms(to_epoch_ms(moment))
                batch = self.simulator.live_batch(moment)
                self.log.extend(serialize(dict(message, receivedAt=received_at)) for message in batch)
            except Exception:
                failures += 1
                # Log the first failure and then every 100th, so a persistent bug cannot flood the log.
                if failures == 1 or failures % 100 == 0:
                    logger.exception("demo CDP live batch failed (%d failures so far)", failures)

    def _run_responses(self) -> None:
        while not self._stopping.wait(RESPONSE_POLL_SECONDS):
            self.release_due_responses()

    def release_due_responses(self) -> int:
        """Append the responses to actions whose time has come to the log; return how many."""
        now = time.monotonic()
        due = []
        with self._actions_lock:
            while self._responses and self._responses[0][0] <= now:
                due.append(heapq.heappop(self._responses)[2])
        if due:
            self.append(due)
        return len(due)

    def receive_action(self, payload: object) -> bool:
        """Take one playbook action; return True when its idempotency key was seen before (the
        action is then ignored). Raises `RequestError` (400) for an invalid action."""
        action = _check_action(payload)
        key = action["idempotency_key"]
        with self._actions_lock:
            self.action_requests += 1
            if key in self.actions:
                return True
            self.actions[key] = action
            at_ms = to_epoch_ms(self.clock())
            started = time.monotonic()
            for delay, message in self.responder.respond(action, at_ms, self.response_delay_scale):
                self._response_sequence += 1
                heapq.heappush(self._responses, (started + delay, self._response_sequence, message))
        logger.debug("demo CDP received action %s of run %s for user %s (held out: %s)",
                    action["action_id"], action["run_id"], action["user_id"], action["held_out"])
        return False

    # Request handling, called by `_Handler` in the server's threads.

    def authorized(self, header: str | None, body_write_key: object = None) -> bool:
        """Return whether the Basic auth header, or the body's `writeKey` when there is no header,
        carries the write key."""
        if header is None:
            return isinstance(body_write_key, str) and hmac.compare_digest(
                body_write_key.encode(), self.write_key.encode())
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, _, _password = decoded.partition(b":")
        return hmac.compare_digest(user, self.write_key.encode())

    def receive(self, kind: str, payload: object, header_authorized: bool) -> int:
        """Store the messages of one tracking request; return how many were stored.

        `kind` is a message type, or "batch". Raises `RequestError` for a payload that is not a
        JSON object, a batch that is not a list of objects, a message over 32 KB, or no valid key.
        """
        if not isinstance(payload, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request",
                               "The request body must be a JSON object.")
        if not header_authorized and not self.authorized(None, payload.get("writeKey")):
            raise _unauthorized()
        received_at = format_iso_ms(to_epoch_ms(datetime.now(timezone.utc)))
        if kind == "batch":
            messages = _batch_messages(payload)
        else:
            message = dict(payload)
            message["type"] = kind
            messages = [message]
        entries = []
        for message in messages:
            # The write key is a credential, so it is not stored with the message.
            message.pop("writeKey", None)
            message["receivedAt"] = received_at
            entries.append(serialize(message))
        self.log.extend(entries)
        return len(entries)

    def feed_page(self, query: str) -> bytes:
        """Return the JSON body of one feed page for the query string `cursor=C&limit=N`.

        Raises `RequestError` (400) for an invalid cursor or limit.
        """
        parameters = parse_qs(query, keep_blank_values=True)
        cursor = parameters.get("cursor", [""])[0]
        limit_text = parameters.get("limit", [str(DEFAULT_FEED_LIMIT)])[0]
        limit = _parse_limit(limit_text)
        if limit is None:
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_limit",
                               f"Invalid limit {limit_text[:40]!r}: expected a positive whole number "
                               f"(values over {MAX_FEED_LIMIT} are lowered to {MAX_FEED_LIMIT}).")
        try:
            offset = decode_cursor(cursor) if cursor else 0
            messages, _count, next_offset = self.log.page(offset, limit)
        except ValueError as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_cursor",
                               f"Invalid cursor {cursor[:80]!r} ({error}): use the `next` value of a "
                               "previous page, or omit the cursor to start from the beginning.") from None
        next_cursor = encode_cursor(next_offset).encode("ascii")
        return b'{"data":[' + messages + b'],"next":"' + next_cursor + b'"}'


def _parse_limit(text: str) -> int | None:
    """Return the feed page size for a `limit` value, clamped to MAX_FEED_LIMIT, or None when the
    value is not a positive whole number."""
    if not re.fullmatch(r"[0-9]+", text):
        return None
    digits = text.lstrip("0")
    if not digits:
        return None
    # Any number with more digits than the maximum is over it; this also keeps int() cheap.
    if len(digits) > len(str(MAX_FEED_LIMIT)):
        return MAX_FEED_LIMIT
    return min(int(digits), MAX_FEED_LIMIT)


def _batch_messages(payload: dict) -> list[dict]:
    batch = payload.get("batch")
    if not isinstance(batch, list):
        raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request",
                           'The batch request must have a "batch" array of messages.')
    context = payload.get("context")
    integrations = payload.get("integrations")
    sent_at = payload.get("sentAt")
    messages = []
    for index, item in enumerate(batch):
        if not isinstance(item, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request",
                               f"Message {index} of the batch is not a JSON object.")
        if len(serialize(item)) > MAX_MESSAGE_BYTES:
            raise RequestError(HTTPStatus.BAD_REQUEST, "message_too_large",
                               f"Message {index} of the batch is larger than {MAX_MESSAGE_BYTES} bytes.")
        message = dict(item)
        if isinstance(context, dict):
            own = message.get("context")
            message["context"] = merge_under(context, own if isinstance(own, dict) else {})
        if isinstance(integrations, dict):
            own = message.get("integrations")
            message["integrations"] = merge_under(integrations, own if isinstance(own, dict) else {})
        if sent_at is not None and "sentAt" not in message:
            message["sentAt"] = sent_at
        messages.append(message)
    return messages


def _check_action(payload: object) -> dict:
    """Return a playbook action with only its known fields; raise `RequestError` (400) naming the
    first invalid one."""
    if not isinstance(payload, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_action", "The action must be a JSON object.")
    checks = {
        "user_id": lambda value: isinstance(value, str) and value != "",
        "playbook": lambda value: isinstance(value, str) and value != "",
        "idempotency_key": lambda value: isinstance(value, str) and 0 < len(value) <= 128,
        "run_id": lambda value: isinstance(value, int) and not isinstance(value, bool),
        "action_id": lambda value: isinstance(value, int) and not isinstance(value, bool),
        "held_out": lambda value: isinstance(value, bool),
        "channel": lambda value: value in ACTION_CHANNELS,
    }
    for name, valid in checks.items():
        if not valid(payload.get(name)):
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_action",
                               f"Invalid or missing {name!r} in the action: {payload.get(name)!r:.80}.")
    optional = {"segment": str, "content": str, "email": str, "account_id": str, "step": int}
    for name, kind in optional.items():
        if payload.get(name) is not None and not isinstance(payload[name], kind):
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_action",
                               f"Invalid {name!r} in the action: expected {kind.__name__}.")
    return {name: payload.get(name) for name in (*checks, *optional)}


def _unauthorized() -> RequestError:
    return RequestError(HTTPStatus.UNAUTHORIZED, "unauthorized",
                        "Missing or invalid write key: send it as the HTTP Basic auth user name.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    cdp: DemoCDP

    def handle_error(self, request: object, client_address: tuple) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("demo CDP client %s disconnected: %s", client_address[0], error)
        else:
            logger.exception("demo CDP failed to handle a request from %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "segops-demo-cdp/0.1"
    timeout = CONNECTION_TIMEOUT_SECONDS
    # The headers and the body are written separately, and with Nagle's algorithm the body then
    # waits for the client's delayed ACK: about 40 ms per request on Linux.
    disable_nagle_algorithm = True
    server: _Server

    @property
    def cdp(self) -> DemoCDP:
        return self.server.cdp

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        try:
            if path == HEALTH_PATH:
                self._require_method(method, "GET")
                body = orjson.dumps({"ok": True, "messages": self.cdp.message_count})
                self._send(HTTPStatus.OK, body)
            elif path == FEED_PATH:
                self._require_method(method, "GET")
                if not self.cdp.authorized(self.headers.get("Authorization")):
                    raise _unauthorized()
                self._send(HTTPStatus.OK, self.cdp.feed_page(parts.query))
            elif path in TRACKING_PATHS:
                self._require_method(method, "POST")
                self._track(path.removeprefix("/v1/"))
            elif path == ACTIONS_PATH:
                self._require_method(method, "POST")
                self._action()
            else:
                self._discard_body()
                raise RequestError(HTTPStatus.NOT_FOUND, "not_found",
                                   f"Not found: {path[:200]}. The endpoints are /v1/events, /v1/batch, "
                                   "/v1/track, /v1/identify, /v1/group, /v1/page, /v1/screen, "
                                   "/v1/alias, /v1/actions and /health.")
        except RequestError as error:
            logger.info("demo CDP rejected %s %s from %s: %d %s", method, path[:200],
                        self.client_address[0], error.status, error.code)
            if error.close:
                self.close_connection = True
            body = orjson.dumps({"success": False, "code": error.code, "message": error.message})
            self._send(error.status, body, allow=error.allow)

    def _require_method(self, method: str, allowed: str) -> None:
        if method != allowed:
            self._discard_body()
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed",
                               f"{method} is not allowed here; use {allowed}.", allow=allowed)

    def _track(self, kind: str) -> None:
        limit = MAX_BATCH_BYTES if kind == "batch" else MAX_MESSAGE_BYTES
        body = self._read_body(limit)
        header = self.headers.get("Authorization")
        if header is not None and not self.cdp.authorized(header):
            raise _unauthorized()
        payload = parse_json(body)
        self.cdp.receive(kind, payload, header_authorized=header is not None)
        self._send(HTTPStatus.OK, b'{"success":true}')

    def _action(self) -> None:
        body = self._read_body(MAX_MESSAGE_BYTES)
        if not self.cdp.authorized(self.headers.get("Authorization")):
            raise _unauthorized()
        duplicate = self.cdp.receive_action(parse_json(body))
        self._send(HTTPStatus.OK, orjson.dumps({"success": True, "duplicate": duplicate}))

    def _content_length(self) -> int:
        text = self.headers.get("Content-Length")
        if text is None:
            if self.headers.get("Transfer-Encoding"):
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "length_required",
                                   "Chunked request bodies are not supported; send Content-Length.",
                                   close=True)
            return 0
        if not text.isdigit():
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request",
                               f"Invalid Content-Length {text[:40]!r}.", close=True)
        return int(text)

    def _discard_body(self) -> None:
        length = self._content_length()
        if length > MAX_DRAIN_BYTES:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def _read_body(self, limit: int) -> bytes:
        """Read the request body, gunzipped when its Content-Encoding is gzip; raise `RequestError`
        (400) when it is larger than `limit` bytes before or after decompression."""
        length = self._content_length()
        too_large = RequestError(HTTPStatus.BAD_REQUEST, "payload_too_large",
                                 f"The request body is larger than {limit} bytes.")
        if length > limit:
            self._discard_body()
            raise too_large
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "identity":
            return body
        if encoding != "gzip":
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request",
                               f"Unsupported Content-Encoding {encoding[:40]!r}; use gzip or none.")
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            plain = decompressor.decompress(body, limit + 1)
        except zlib.error as error:
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request",
                               f"Invalid gzip body: {error}.") from None
        if len(plain) > limit:
            raise too_large
        if not decompressor.eof:
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_request",
                               "Invalid gzip body: the stream is truncated.")
        return plain

    def _send(self, status: HTTPStatus, body: bytes, allow: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if allow is not None:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
