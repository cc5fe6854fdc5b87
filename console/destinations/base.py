"""The parts every destination client shares: the action it sends, secret handling, the base class.

A client turns one outbox action into one `httpx.Request`; the dispatcher sends it and decides
what the response means. Secrets are resolved when the client is built, only ever go into request
headers or the URL, and `redact` removes them from anything recorded or logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import httpx
import orjson

from console.playbooks.catalog import Destination

# The event name that Segment, Customer.io and the CDP's journeys see for a playbook action.
PLAYBOOK_EVENT = "Playbook Triggered"

try:
    SEGOPS_VERSION = version("segops")
except PackageNotFoundError:
    SEGOPS_VERSION = "0"
USER_AGENT = f"segops/{SEGOPS_VERSION}"


class DestinationNotConfigured(Exception):
    """A destination that cannot send: a missing secret, URL or field, which the message names."""


@dataclass(frozen=True)
class OutboundAction:
    """One action as a destination receives it."""

    action_id: int
    run_id: int
    playbook: str
    playbook_name: str
    segment: str
    user_id: str
    email: str | None
    account_id: str | None
    step: int
    channel: str
    content: str
    idempotency_key: str
    held_out: bool
    # Epoch ms of the trigger.
    created_at: int

    def properties(self) -> dict:
        """Return the properties every destination carries: which playbook, run, action and step."""
        return {
            "playbook": self.playbook,
            "run_id": self.run_id,
            "action_id": self.action_id,
            "step": self.step,
            "channel": self.channel,
            "content": self.content,
        }

    def fields(self) -> dict:
        """Return the properties plus the playbook's segment and the idempotency key: what the
        webhook and the demo CDP receive besides the user."""
        return {**self.properties(), "segment": self.segment, "idempotency_key": self.idempotency_key}

    def timestamp(self) -> str:
        """Return the trigger time as ISO-8601 UTC with milliseconds."""
        moment = datetime.fromtimestamp(self.created_at / 1000, timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mask_secret(value: str | None) -> str:
    """Return a secret as it may be shown: its first and last two characters around `****` when
    it is 12 characters or longer, `****` when shorter, `(not set)` when empty. A URL keeps its
    scheme and host, because a webhook URL's secret part is its path."""
    if not value:
        return "(not set)"
    if value.startswith(("http://", "https://")):
        url = httpx.URL(value)
        return f"{url.scheme}://{url.host}/****"
    if len(value) < 12:
        return "****"
    return f"{value[:2]}****{value[-2:]}"


def redact(text: str | None, secrets: list[str]) -> str | None:
    """Replace every occurrence of each secret in `text` with its masked form. For a URL secret,
    each path segment of 8 or more characters is masked on its own too, because the token of a
    webhook URL is in its path and a response may quote just that part."""
    if text is None:
        return None
    for secret in secrets:
        # A very short secret would mask ordinary words; such secrets are not worth the name.
        if len(secret) >= 4:
            text = text.replace(secret, mask_secret(secret))
        if secret.startswith(("http://", "https://")):
            for segment in httpx.URL(secret).path.split("/"):
                if len(segment) >= 8:
                    text = text.replace(segment, "****")
    return text


def json_body(payload: object) -> bytes:
    """Serialize a request body as compact JSON bytes."""
    return orjson.dumps(payload)


class DestinationClient:
    """Base class of the destination clients: `build_request` makes one request per action.

    `source_url` and `source_write_key` are the configured CDP's, which the demo destination uses
    when it names none of its own. Raises `DestinationNotConfigured` when a required field or
    secret is missing.
    """

    def __init__(
        self,
        destination: Destination,
        *,
        source_url: str | None = None,
        source_write_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.destination = destination
        self._environ = environ
        self._source_url = source_url
        self._source_write_key = source_write_key
        self._secrets: list[str] = []
        self.configure()

    @property
    def name(self) -> str:
        return self.destination.name

    @property
    def accepts_holdout_notices(self) -> bool:
        """Whether held-out users are announced to this destination (only the demo CDP's type)."""
        return self.destination.kind.takes_holdout_notices

    @property
    def secrets(self) -> list[str]:
        """The resolved secret values, for `redact`."""
        return list(self._secrets)

    def configure(self) -> None:
        """Resolve fields and secrets; subclasses read what they need with `require_*`."""

    def build_request(self, action: OutboundAction) -> httpx.Request:
        raise NotImplementedError

    def require_secret(self, key: str) -> str:
        """Return a secret field or raise `DestinationNotConfigured` saying how to set it."""
        value = self.destination.secret(key, self._environ)
        if not value:
            reference = self.destination.secrets.get(key)
            where = f"the environment variable {reference.env} is not set" if reference and reference.env \
                else f"set destinations.{self.name}.{key}_env to the environment variable that holds it"
            raise DestinationNotConfigured(f"destination {self.name}: the {key} is missing: {where}")
        self._secrets.append(value)
        return value

    def require_url(self, key: str = "url") -> str:
        """Return a URL field without a trailing slash, or raise `DestinationNotConfigured`."""
        value = self.destination.field_value(key).rstrip("/")
        if not value:
            raise DestinationNotConfigured(f"destination {self.name}: set destinations.{self.name}.{key}")
        return value

    def post_json(self, url: str, payload: object, headers: Mapping[str, str] | None = None,
                  auth: tuple[str, str] | None = None) -> httpx.Request:
        """Build a JSON POST request, with HTTP Basic auth when `auth` is given."""
        all_headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        all_headers.update(headers or {})
        request = httpx.Request("POST", url, headers=all_headers, content=json_body(payload))
        if auth is not None:
            request = next(httpx.BasicAuth(*auth).auth_flow(request))
        return request
