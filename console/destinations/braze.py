"""Braze: an API-triggered campaign send.

Request shape from Braze's REST API reference
(https://braze.com/docs/api/endpoints/messaging/send_messages/post_send_triggered_campaigns/):
`POST {rest_endpoint}/campaigns/trigger/send` with `Authorization: Bearer <REST API key>`, a
`campaign_id` and `recipients: [{external_user_id, trigger_properties}]`. The endpoint takes no
idempotency key, so a retry after a lost response can send the campaign twice.
"""

from __future__ import annotations

import httpx

from console.destinations.base import DestinationClient, OutboundAction


class BrazeClient(DestinationClient):
    """Triggers the step's campaign (its `content`) for the user, by external user id."""

    def configure(self) -> None:
        self.url = self.require_url("rest_endpoint") + "/campaigns/trigger/send"
        self.api_key = self.require_secret("api_key")

    def build_request(self, action: OutboundAction) -> httpx.Request:
        payload = {
            "campaign_id": action.content,
            "recipients": [{"external_user_id": action.user_id, "trigger_properties": action.properties()}],
        }
        return self.post_json(self.url, payload, headers={"Authorization": f"Bearer {self.api_key}"})
