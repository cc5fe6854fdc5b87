"""Customer.io: a `Playbook Triggered` event through the Track API.

Request shape from Customer.io's Track API reference
(https://docs.customer.io/integrations/api/track/tag/track-events/track/):
`POST {base}/api/v1/customers/{identifier}/events` with HTTP Basic auth `site_id:api_key` and a body
of `name` and `data`. The optional `id` must be a ULID; Customer.io does not process a second event
with the same id, and the action's idempotency key is a ULID, so retries are dropped.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from console.destinations.base import PLAYBOOK_EVENT, DestinationClient, OutboundAction


class CustomerIoClient(DestinationClient):
    """Sends each action as an event on the user's Customer.io profile, to trigger a campaign."""

    def configure(self) -> None:
        self.base = self.require_url()
        self.site_id = self.require_secret("site_id")
        self.api_key = self.require_secret("api_key")

    def build_request(self, action: OutboundAction) -> httpx.Request:
        url = f"{self.base}/api/v1/customers/{quote(action.user_id, safe='')}/events"
        payload = {
            "name": PLAYBOOK_EVENT,
            "id": action.idempotency_key,
            # Customer.io takes event times in Unix seconds.
            "timestamp": action.created_at // 1000,
            "data": action.properties(),
        }
        return self.post_json(url, payload, auth=(self.site_id, self.api_key))
