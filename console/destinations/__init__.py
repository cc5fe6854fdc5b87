"""Destination clients (httpx), one module per destination type, and `create_client` to pick one."""

from __future__ import annotations

from collections.abc import Mapping

from console.destinations.base import (
    DestinationClient,
    DestinationNotConfigured,
    OutboundAction,
    mask_secret,
    redact,
)
from console.destinations.braze import BrazeClient
from console.destinations.customerio import CustomerIoClient
from console.destinations.demo import DemoClient
from console.destinations.iterable import IterableClient
from console.destinations.segment import SegmentClient
from console.destinations.slack import SlackClient
from console.destinations.webhook import WebhookClient
from console.playbooks.catalog import Destination

CLIENTS: dict[str, type[DestinationClient]] = {
    "webhook": WebhookClient,
    "segment": SegmentClient,
    "customerio": CustomerIoClient,
    "braze": BrazeClient,
    "iterable": IterableClient,
    "slack": SlackClient,
    "demo": DemoClient,
}

__all__ = [
    "CLIENTS",
    "DestinationClient",
    "DestinationNotConfigured",
    "OutboundAction",
    "create_client",
    "mask_secret",
    "redact",
]


def create_client(
    destination: Destination,
    *,
    source_url: str | None = None,
    source_write_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> DestinationClient:
    """Build the client of a configured destination, resolving its secrets now.

    Raises `DestinationNotConfigured` when a field or secret it needs is missing.
    """
    return CLIENTS[destination.type](destination, source_url=source_url, source_write_key=source_write_key,
                                     environ=environ)
