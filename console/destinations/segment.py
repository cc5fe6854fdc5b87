"""Segment: a `Playbook Triggered` track call through the HTTP Tracking API.

Request shape from Segment's documentation of the HTTP API source
(https://www.twilio.com/docs/segment/connections/sources/catalog/libraries/server/http-api):
`POST {base}/v1/track` with HTTP Basic auth whose user name is the write key and whose password is
empty. `messageId` is the action's idempotency key, so Segment drops a retried duplicate.
"""

from __future__ import annotations

import httpx

from console.destinations.base import PLAYBOOK_EVENT, SEGOPS_VERSION, DestinationClient, OutboundAction


class SegmentClient(DestinationClient):
    """Sends each action as a track call, so the CDP records it and its journeys can react."""

    def configure(self) -> None:
        self.url = self.require_url() + "/v1/track"
        self.write_key = self.require_secret("write_key")

    def build_request(self, action: OutboundAction) -> httpx.Request:
        payload = {
            "type": "track",
            "userId": action.user_id,
            "event": PLAYBOOK_EVENT,
            "properties": action.properties(),
            "messageId": action.idempotency_key,
            "timestamp": action.timestamp(),
            "context": {"library": {"name": "segops", "version": SEGOPS_VERSION}},
        }
        return self.post_json(self.url, payload, auth=(self.write_key, ""))
