"""The demo CDP: `POST {url}/v1/actions` with the write key as HTTP Basic user name.

The demo CDP drops a repeated idempotency key (returning `{"duplicate": true}`), simulates how
users respond, and feeds the responses back through its pull feed. It is the only destination
that receives notices of held-out users (`held_out: true`), so it can simulate their baseline.
"""

from __future__ import annotations

import httpx

from console.destinations.base import DestinationClient, DestinationNotConfigured, OutboundAction

ACTIONS_PATH = "/v1/actions"


class DemoClient(DestinationClient):
    """Sends actions and held-out notices to the demo CDP, by default the configured source."""

    def configure(self) -> None:
        base = self.destination.field_value("url").rstrip("/") or (self._source_url or "").rstrip("/")
        if not base:
            raise DestinationNotConfigured(
                f"destination {self.name}: set destinations.{self.name}.url or source.url to the demo CDP"
            )
        self.url = base + ACTIONS_PATH
        write_key = self.destination.secret("write_key", self._environ) or self._source_write_key
        if not write_key:
            raise DestinationNotConfigured(
                f"destination {self.name}: no write key: set destinations.{self.name}.write_key_env or the "
                "source's write key"
            )
        self._secrets.append(write_key)
        self.write_key = write_key

    def build_request(self, action: OutboundAction) -> httpx.Request:
        payload = {
            "user_id": action.user_id,
            "email": action.email,
            "account_id": action.account_id,
            **action.fields(),
            "held_out": action.held_out,
        }
        return self.post_json(self.url, payload, auth=(self.write_key, ""))
