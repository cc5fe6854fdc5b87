"""Slack incoming webhook: one message per customer-success task.

Request shape from Slack's guide to incoming webhooks
(https://docs.slack.dev/tools/java-slack-sdk/guides/incoming-webhooks): a JSON POST of
`{"text": ...}` to the webhook URL. The URL itself is the credential. Slack reads `&`, `<` and
`>` in text as markup, so values from the CDP are escaped. The webhook takes no idempotency key.
"""

from __future__ import annotations

import httpx

from console.destinations.base import DestinationClient, OutboundAction


def escape(text: str) -> str:
    """Escape the three characters Slack's message formatting gives a meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackClient(DestinationClient):
    """Posts a task message for the CS team to the channel of the incoming webhook."""

    def configure(self) -> None:
        self.url = self.require_secret("url")

    def build_request(self, action: OutboundAction) -> httpx.Request:
        who = escape(action.user_id) + (f" ({escape(action.email)})" if action.email else "")
        account = f" at account {escape(action.account_id)}" if action.account_id else ""
        text = (
            f"CS task from playbook {escape(action.playbook_name)} ({escape(action.segment)}): "
            f"{escape(action.content)} for {who}{account}. Run {action.run_id}, action {action.action_id}."
        )
        return self.post_json(self.url, {"text": text})
