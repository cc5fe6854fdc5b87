"""Iterable: a workflow trigger.

The request is `POST {base}/api/workflows/triggerWorkflow` with the key in the `Api-Key` header and a
body of an integer `workflowId`, the user's `email` (or `userId`) and `dataFields`. That shape is the
one Iterable's clients use: the iterable-api-client gem
(https://rubydoc.info/gems/iterable-api-client/Iterable/Workflows) and the API's description at
https://capabilities.apis.io/capabilities/iterable/rest-workflows/. The endpoint takes no idempotency
key, so a retry after a lost response can trigger the workflow twice.
"""

from __future__ import annotations

import httpx

from console.destinations.base import DestinationClient, OutboundAction


class IterableClient(DestinationClient):
    """Triggers the step's workflow (its `content`, a workflow id) for the user."""

    def configure(self) -> None:
        self.url = self.require_url() + "/api/workflows/triggerWorkflow"
        self.api_key = self.require_secret("api_key")

    def build_request(self, action: OutboundAction) -> httpx.Request:
        payload: dict = {"workflowId": int(action.content)}
        if action.email:
            payload["email"] = action.email
        else:
            payload["userId"] = action.user_id
        payload["dataFields"] = action.properties()
        return self.post_json(self.url, payload, headers={"Api-Key": self.api_key})
