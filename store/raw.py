"""The values a source passes to the ingest besides parsed JSON."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unparsed:
    """Text a source read that is not valid JSON, kept whole so that it can be quarantined."""

    text: str
    error: str
