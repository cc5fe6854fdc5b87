"""Sources: connectors that deliver raw messages from a CDP or from files to the ingest.

A source yields `(location, value)` pairs. `location` is a human-readable string naming where the
message came from (`path:LINE`, `path:LINE:batch[3]`, `path:[5]`, `URL cursor=... #17`). `value` is
the parsed JSON value, whatever its type, or a `store.raw.Unparsed` for text that is not valid JSON.
The ingest decides what to accept and quarantines the rest, so a source drops nothing.
"""

from __future__ import annotations


class SourceError(Exception):
    """A source cannot deliver: a missing or unreadable file, an unreachable or rejecting CDP.

    `retryable` is True when the same request may succeed later without a change by the operator,
    so the sync loop backs off and retries instead of stopping.
    """

    retryable: bool = False
