"""The dispatcher: sends the outbox's due actions to their destinations.

Each action is claimed (status `sending`, with the claim time and this process) in a committed
transaction before its request, and resolved with the attempt in another one after it. A
dispatcher that dies in between leaves the claim behind. The next pass finds it stale, when its
process is gone or its lease expired, and sends it again with the same idempotency key. So every
action is sent at least once, and destinations that take the key (Segment, Customer.io, the
webhook, the demo CDP) see it once.

Responses: 2xx is sent. 408, 429, 5xx, timeouts and connection errors are retried with jittered
exponential backoff, or after `Retry-After` when the destination requests a longer wait. After
`dispatch.max_attempts` the action fails. Any other status fails at once: sending the same request
again would get the same response.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import httpx
import sqlite_utils

from console.config import Config
from console.destinations import (
    DestinationClient,
    DestinationNotConfigured,
    OutboundAction,
    create_client,
    redact,
)
from console.playbooks import ensure_writable
from console.sources.http import parse_retry_after
from store import runs
from store.runs import Action
from store.timeparse import now_ms

logger = logging.getLogger(__name__)

# Characters of a response body kept with an attempt: enough to read an API's error message.
RESPONSE_EXCERPT_CHARS = 300
# A proxy from the environment never fits a destination on this machine, such as the demo CDP.
# httpx routes a mount of None to the client's own transport, without the proxy.
LOOPBACK_WITHOUT_PROXY = {"all://127.0.0.1": None, "all://localhost": None}


@dataclass
class DispatchReport:
    """The counts of one pass. `not_configured` maps a destination to the reason it could not
    send; its actions stay queued."""

    recovered: int = 0
    sent: int = 0
    notices: int = 0
    retried: int = 0
    failed: int = 0
    not_configured: dict[str, str] = field(default_factory=dict)

    @property
    def attempted(self) -> int:
        return self.sent + self.notices + self.retried + self.failed

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Result:
    outcome: str
    status_code: int | None
    excerpt: str | None
    error: str | None
    retry_after: float | None = None


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Return the wait in seconds before retry number `attempt` (1 for the first retry).

    The ceiling doubles per attempt from `base` up to `cap`, and the wait is drawn from its upper
    half, so that actions that failed together spread out but never retry at once.
    """
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def claimant_id() -> str:
    """Return this process's name on its claims: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claimant_alive(claimed_by: str) -> bool:
    """Return whether the process that made a claim may still be running. A claim from another
    host, or one that cannot be read, counts as alive: only its lease can expire it."""
    host, _, pid_text = claimed_by.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dispatch_once(
    db: sqlite_utils.Database,
    config: Config,
    *,
    clock: Callable[[], int] = now_ms,
    transport: httpx.BaseTransport | None = None,
    limit: int = 1000,
    stop: threading.Event | None = None,
    rng: random.Random | None = None,
    environ: Mapping[str, str] | None = None,
) -> DispatchReport:
    """Recover stale claims, then send up to `limit` due actions and held-out notices, one at a
    time; return what happened. `clock` gives epoch ms; `transport` replaces the network (tests).

    Raises `ReadOnlyError` in read-only mode.
    """
    ensure_writable(config, "dispatching actions")
    settings = config.dispatch
    rng = rng or random.Random()
    report = DispatchReport()
    report.recovered = len(runs.recover_stale_claims(
        db, now=clock(), lease_ms=int(settings.claim_timeout_seconds * 1000), claimant_alive=claimant_alive,
        max_attempts=settings.max_attempts,
    ))
    if report.recovered:
        logger.warning("recovered %d actions claimed by a dispatcher that stopped; sending them again",
                       report.recovered)

    claimant = claimant_id()
    clients: dict[str, DestinationClient] = {}
    with httpx.Client(transport=transport, timeout=settings.timeout_seconds, follow_redirects=False,
                      mounts=LOOPBACK_WITHOUT_PROXY) as http:
        for _ in range(limit):
            if stop is not None and stop.is_set():
                break
            claimed = runs.claim_due(db, now=clock(), claimant=claimant, limit=1,
                                     skip_destinations=report.not_configured)
            if not claimed:
                break
            action = claimed[0]
            client = _client(action.destination, config, clients, report, environ)
            if client is None:
                runs.release_claims(db, [action.id])
                continue
            _deliver(db, http, client, action, config, clock, rng, report)
    return report


def _client(
    name: str,
    config: Config,
    clients: dict[str, DestinationClient],
    report: DispatchReport,
    environ: Mapping[str, str] | None,
) -> DestinationClient | None:
    if name in clients:
        return clients[name]
    destination = config.destinations.get(name)
    try:
        if destination is None:
            raise DestinationNotConfigured(f"destination {name} is not in the configuration")
        client = create_client(destination, source_url=config.source_url, source_write_key=config.write_key,
                               environ=environ)
    except DestinationNotConfigured as error:
        report.not_configured[name] = str(error)
        logger.error("not sending to %s: %s", name, error)
        return None
    clients[name] = client
    return client


def _deliver(
    db: sqlite_utils.Database,
    http: httpx.Client,
    client: DestinationClient,
    action: Action,
    config: Config,
    clock: Callable[[], int],
    rng: random.Random,
    report: DispatchReport,
) -> None:
    started = time.monotonic()
    at = clock()
    if action.held_out and not client.accepts_holdout_notices:
        result = _Result("failed", None, None, f"destination {client.name} takes no held-out notices")
    else:
        result = _send(http, client, _outbound(action, config), config.dispatch.timeout_seconds)
    duration_ms = int((time.monotonic() - started) * 1000)

    outcome, next_attempt_at, error = result.outcome, None, result.error
    attempt = action.attempts + 1
    if outcome == "retry":
        if attempt >= config.dispatch.max_attempts:
            outcome, error = "failed", f"gave up after {attempt} attempts; the last: {error}"
        else:
            delay = retry_delay(attempt, config.dispatch.backoff_base_seconds,
                                config.dispatch.backoff_max_seconds, rng)
            if result.retry_after is not None:
                delay = max(delay, result.retry_after)
            next_attempt_at = clock() + int(delay * 1000)

    secrets = client.secrets
    runs.record_attempt(db, action.id, at=at, duration_ms=duration_ms, status_code=result.status_code,
                        response_excerpt=redact(result.excerpt, secrets), error=redact(error, secrets),
                        outcome=outcome, next_attempt_at=next_attempt_at)
    _count(report, action, outcome)
    _log(action, client.name, outcome, redact(error, secrets), next_attempt_at, clock)


def _outbound(action: Action, config: Config) -> OutboundAction:
    playbook = config.playbooks.get(action.playbook)
    return OutboundAction(
        action_id=action.id,
        run_id=action.run_id,
        playbook=action.playbook,
        playbook_name=playbook.name if playbook else action.playbook,
        segment=action.segment,
        user_id=action.user_id,
        email=action.email,
        account_id=action.account_id,
        step=action.step,
        channel=action.channel,
        content=action.content,
        idempotency_key=action.idempotency_key,
        held_out=action.held_out,
        created_at=action.created_at,
    )


def _send(http: httpx.Client, client: DestinationClient, outbound: OutboundAction, timeout: float) -> _Result:
    try:
        request = client.build_request(outbound)
    except (ValueError, TypeError) as error:
        return _Result("failed", None, None, f"cannot build the request: {error}")
    try:
        response = http.send(request)
    except httpx.TimeoutException as error:
        return _Result("retry", None, None, f"timed out: no response within {timeout:g} s ({type(error).__name__})")
    except httpx.TransportError as error:
        return _Result("retry", None, None, f"request failed: {type(error).__name__}: {error}")

    status = response.status_code
    excerpt = response.text[:RESPONSE_EXCERPT_CHARS]
    if 200 <= status < 300:
        return _Result("sent", status, excerpt, None)
    if status in (408, 429) or status >= 500:
        return _Result("retry", status, excerpt, f"HTTP {status} from {client.name}",
                       parse_retry_after(response.headers.get("Retry-After")))
    if 300 <= status < 400:
        return _Result("failed", status, excerpt,
                       f"HTTP {status} from {client.name}: redirects are not followed; set the destination's URL "
                       f"to {response.headers.get('Location', 'where it redirects')}")
    return _Result("failed", status, excerpt, f"HTTP {status} from {client.name}: rejected, so not retried")


def _count(report: DispatchReport, action: Action, outcome: str) -> None:
    if outcome == "sent":
        if action.held_out:
            report.notices += 1
        else:
            report.sent += 1
    elif outcome == "retry":
        report.retried += 1
    else:
        report.failed += 1


def _log(action: Action, destination: str, outcome: str, error: str | None, next_attempt_at: int | None,
         clock: Callable[[], int]) -> None:
    what = f"action {action.id} (run {action.run_id}, user {action.user_id}, step {action.step})"
    if outcome == "sent":
        logger.info("sent %s to %s", what, destination)
    elif outcome == "retry":
        wait = ((next_attempt_at or 0) - clock()) / 1000
        logger.warning("%s to %s failed, retrying in %.0f s: %s", what, destination, wait, error)
    else:
        logger.error("%s to %s failed: %s", what, destination, error)


def run_dispatcher(
    db: sqlite_utils.Database,
    config: Config,
    *,
    stop: threading.Event,
    clock: Callable[[], int] = now_ms,
    transport: httpx.BaseTransport | None = None,
    on_report: Callable[[DispatchReport], None] | None = None,
    on_error: Callable[[Exception, float], None] | None = None,
) -> None:
    """Run `dispatch_once` every `dispatch.interval_seconds` until `stop` is set. A pass that
    raises (a locked or unreadable cache) is logged and reported, and the next one waits twice as
    long, up to `dispatch.backoff_max_seconds`. Raises `ReadOnlyError` in read-only mode."""
    ensure_writable(config, "dispatching actions")
    interval = config.dispatch.interval_seconds
    delay = interval
    logger.info("dispatcher started, every %g s", interval)
    while not stop.is_set():
        try:
            report = dispatch_once(db, config, clock=clock, transport=transport, stop=stop)
        except Exception as error:  # noqa: BLE001 - the loop must survive a failed pass and report it
            delay = min(max(delay * 2, interval), config.dispatch.backoff_max_seconds)
            logger.exception("dispatch pass failed; next pass in %.0f s", delay)
            if on_error is not None:
                on_error(error, delay)
        else:
            delay = interval
            if on_report is not None:
                on_report(report)
        stop.wait(delay)
    logger.info("dispatcher stopped")
