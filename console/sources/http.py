"""HTTP source: a client of the pull feed that a segops-compatible CDP serves.

The feed is `GET {base}/v1/events?cursor=C&limit=N` with HTTP Basic auth (the write key as user
name, an empty password). `cursor` is omitted to start from the beginning. The response body is
`{"data": [message, ...], "next": "cursor"}`, and an empty `data` means the client has caught up.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import orjson

from console.sources import SourceError

logger = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"

# A proxy's HTML error page can be long, and only its start helps to recognise it.
_BODY_EXCERPT_CHARS = 200


class HttpSourceError(SourceError):
    """A request to the pull feed failed. `url` is the feed's URL, without credentials."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class AuthError(HttpSourceError):
    """The CDP rejected the write key (HTTP 401 or 403)."""

    retryable = False


class NotFoundError(HttpSourceError):
    """The URL serves no pull feed (HTTP 404)."""

    retryable = False


class UnexpectedStatus(HttpSourceError):
    """An HTTP status that no other error class covers, such as a redirect or a 400."""

    retryable = False

    def __init__(self, message: str, *, url: str, status: int) -> None:
        super().__init__(message, url=url)
        self.status = status


class ServerError(HttpSourceError):
    """The CDP failed with a 5xx status."""

    retryable = True

    def __init__(self, message: str, *, url: str, status: int) -> None:
        super().__init__(message, url=url)
        self.status = status


class RateLimited(HttpSourceError):
    """The CDP rejected the request with HTTP 429.

    `retry_after` is the wait in seconds that the CDP requested, or None.
    """

    retryable = True

    def __init__(self, message: str, *, url: str, retry_after: float | None) -> None:
        super().__init__(message, url=url)
        self.retry_after = retry_after


class SourceTimeout(HttpSourceError):
    """The CDP could not be reached: connection refused or failed, or a connect or read timeout."""

    retryable = True


class MalformedPage(HttpSourceError):
    """The response is not a valid page. Retryable, because a proxy can garble a single page."""

    retryable = True


@dataclass
class Page:
    """One page of the feed: `(location, message)` items and the cursor of the next page."""

    items: list[tuple[str, object]]
    next_cursor: str | None


class HttpSource:
    """Reader of a CDP's pull feed, one page per `fetch_page` call, over one `httpx.Client`.

    The write key may also be given as the user name in `url`. It is sent only in the
    Authorization header, and `name`, `repr()`, locations and error messages leave it out.
    """

    def __init__(
        self,
        url: str,
        write_key: str,
        *,
        page_limit: int = 1000,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = _parse_base_url(url)
        if not write_key and base.username:
            write_key = base.username
        if page_limit < 1:
            raise ValueError(f"page_limit must be at least 1, got {page_limit}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")

        base = base.copy_with(username=None, password=None, query=None, fragment=None)
        self._name = str(base).rstrip("/")
        self._events_url = str(base.copy_with(path=base.path.rstrip("/") + EVENTS_PATH))
        self._page_limit = page_limit
        self._timeout = timeout
        self._client = httpx.Client(
            auth=httpx.BasicAuth(write_key, ""),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "segops"},
            # A redirect is reported instead of followed, so that the operator fixes the URL
            # and the write key is not sent on to a host that was not configured.
            follow_redirects=False,
        )

    @property
    def name(self) -> str:
        """The CDP's base URL without credentials."""
        return self._name

    @property
    def events_url(self) -> str:
        """The URL of the pull feed, without credentials or query."""
        return self._events_url

    def __repr__(self) -> str:
        return f"HttpSource({self._name!r})"

    def __enter__(self) -> HttpSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch_page(self, cursor: str | None) -> Page:
        """Fetch the page that starts at `cursor`, or at the start of the feed when it is None.

        Raises a `SourceError` subclass when the request fails or the page is malformed. Its
        `retryable` attribute is True when the same request may succeed later.
        """
        params = {"limit": str(self._page_limit)}
        if cursor is not None:
            params["cursor"] = cursor

        response = self._send(params)
        self._check_status(response)
        data, next_cursor = self._decode_page(response, cursor)

        where = self._describe_request(cursor)
        items = [(f"{where} #{index}", message) for index, message in enumerate(data)]
        logger.debug("fetched %d messages from %s", len(items), where)
        return Page(items=items, next_cursor=next_cursor)

    def _describe_request(self, cursor: str | None) -> str:
        return f"{self._events_url} cursor={'(start)' if cursor is None else cursor}"

    def _send(self, params: dict[str, str]) -> httpx.Response:
        url = self._events_url
        try:
            return self._client.get(url, params=params)
        except httpx.TimeoutException as error:
            raise SourceTimeout(
                f"cannot reach {url}: no response within {self._timeout:g} s "
                f"({type(error).__name__}): check that the CDP is running, or raise the timeout",
                url=url,
            ) from error
        except httpx.ConnectError as error:
            raise SourceTimeout(
                f"cannot reach {url}: {error}: check that the CDP is running and the URL is right",
                url=url,
            ) from error
        except httpx.TransportError as error:
            raise SourceTimeout(
                f"cannot reach {url}: the connection failed ({type(error).__name__}: {error})",
                url=url,
            ) from error

    def _check_status(self, response: httpx.Response) -> None:
        url = self._events_url
        status = response.status_code
        if response.is_success:
            return
        if status in (401, 403):
            raise AuthError(
                f"write key rejected by {url} (HTTP {status}): check the source's write key",
                url=url,
            )
        if status == 404:
            raise NotFoundError(
                f"no pull feed at {url} (HTTP 404): is this a segops-compatible CDP?", url=url
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = "" if retry_after is None else f", retry after {retry_after:g} s"
            raise RateLimited(
                f"rate limited by {url} (HTTP 429){wait}", url=url, retry_after=retry_after
            )
        if status >= 500:
            raise ServerError(
                f"server error at {url}: HTTP {status} {response.reason_phrase}: "
                "the CDP failed, so retry later or check its logs",
                url=url,
                status=status,
            )
        if response.is_redirect:
            location = response.headers.get("Location", "(no Location header)")
            raise UnexpectedStatus(
                f"{url} redirects to {location} (HTTP {status}): "
                "set the source URL to the new address",
                url=url,
                status=status,
            )
        raise UnexpectedStatus(
            f"unexpected response from {url}: HTTP {status} {response.reason_phrase}: "
            f"{_excerpt(response.content)}",
            url=url,
            status=status,
        )

    def _decode_page(
        self, response: httpx.Response, cursor: str | None
    ) -> tuple[list[object], str]:
        url = self._events_url
        where = self._describe_request(cursor)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            raise MalformedPage(
                f"malformed page from {where}: body is not JSON ({error}), "
                f"body starts with {_excerpt(response.content)}",
                url=url,
            ) from error

        if not isinstance(body, dict):
            raise MalformedPage(
                f"malformed page from {where}: body is {_describe_json_type(body)}, "
                "expected an object with 'data' and 'next'",
                url=url,
            )
        data = body.get("data")
        if not isinstance(data, list):
            found = "missing" if "data" not in body else _describe_json_type(data)
            raise MalformedPage(
                f"malformed page from {where}: 'data' is {found}, expected an array", url=url
            )
        next_cursor = body.get("next")
        if not isinstance(next_cursor, str):
            found = "missing" if "next" not in body else _describe_json_type(next_cursor)
            raise MalformedPage(
                f"malformed page from {where}: 'next' is {found}, expected a string", url=url
            )
        return data, next_cursor


def _parse_base_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise SourceError(f"invalid source URL: {error}") from error
    if parsed.scheme not in ("http", "https") or not parsed.host:
        without_credentials = parsed.copy_with(username=None, password=None)
        raise SourceError(
            f"invalid source URL {str(without_credentials)!r}: "
            "expected http:// or https:// and a host, such as http://127.0.0.1:8765"
        )
    return parsed


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the wait in seconds that a `Retry-After` header requests, or None if it is invalid.

    The header is either a number of seconds or an HTTP date, and a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def backoff_delays(
    base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Yield an endless series of retry delays in seconds: exponential backoff with full jitter.

    Delay n is drawn uniformly from [0, min(cap, base * 2**n)], so clients that failed together
    do not retry together.
    """
    if not base > 0:
        raise ValueError(f"base must be a positive number of seconds, got {base}")
    if not cap >= base:
        raise ValueError(f"cap must be at least base ({base}), got {cap}")
    return _full_jitter(base, cap, rng or random.Random())


def _full_jitter(base: float, cap: float, rng: random.Random) -> Iterator[float]:
    ceiling = base
    while True:
        yield rng.uniform(0.0, ceiling)
        ceiling = min(cap, ceiling * 2)


def _describe_json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _excerpt(content: bytes) -> str:
    text = content.decode("utf-8", errors="replace")
    if len(text) > _BODY_EXCERPT_CHARS:
        text = text[:_BODY_EXCERPT_CHARS] + "..."
    return repr(text)
