"""Generic webhook: one JSON POST per action, signed with HMAC-SHA256.

`X-Segops-Signature: sha256=<hex>` is the HMAC-SHA256 of the raw body under the shared secret, the
scheme GitHub documents for its own webhooks
(https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries): the receiver
recomputes it over the bytes received and compares in constant time. `Idempotency-Key` (also in the
body) stays the same on every retry, so a receiver can drop repeats.
"""

from __future__ import annotations

import hashlib
import hmac

import httpx

from console.destinations.base import USER_AGENT, DestinationClient, OutboundAction, json_body

SIGNATURE_HEADER = "X-Segops-Signature"


def sign(body: bytes, secret: str) -> str:
    """Return the signature header value of a body: `sha256=` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookClient(DestinationClient):
    """POSTs each action as JSON to the configured URL."""

    def configure(self) -> None:
        self.url = self.require_url()
        self.secret = self.require_secret("secret")

    def build_request(self, action: OutboundAction) -> httpx.Request:
        payload = {
            "type": "playbook_action",
            **action.fields(),
            "playbook_name": action.playbook_name,
            "user": {"id": action.user_id, "email": action.email, "account_id": action.account_id},
            "triggered_at": action.timestamp(),
        }
        body = json_body(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": action.idempotency_key,
            SIGNATURE_HEADER: sign(body, self.secret),
        }
        return httpx.Request("POST", self.url, headers=headers, content=body)
