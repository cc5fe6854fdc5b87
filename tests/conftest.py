"""Shared fixtures: a real SQLite cache in a temporary folder and a builder of Segment messages."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from store.db import open_cache
from store.ingest import ingest_batch
from store.settings import DAY_MS, Settings
from store.timeparse import format_ms, parse_time_ms

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"

# The evaluation time of the rule tests: a fixed T, so that every window boundary is exact.
T = parse_time_ms("2026-06-15T12:00:00Z")


@pytest.fixture
def cache(tmp_path):
    """A new cache file in a temporary folder."""
    db = open_cache(tmp_path / "cache.db")
    yield db
    db.conn.close()


class Messages:
    """Builds Segment-spec messages at times relative to T and ingests them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []
        self._ids = itertools.count(1)

    def add(self, message: dict) -> dict:
        message.setdefault("messageId", f"m-{next(self._ids)}")
        self.items.append((f"test #{len(self.items) + 1}", message))
        return message

    def track(self, user: str, event: str, at: int, **properties) -> dict:
        return self.add({"type": "track", "userId": user, "event": event, "timestamp": format_ms(at),
                         "properties": properties})

    def page(self, user: str, at: int, name: str = "Home") -> dict:
        return self.add({"type": "page", "userId": user, "name": name, "timestamp": format_ms(at)})

    def identify(self, user: str, at: int, **traits) -> dict:
        return self.add({"type": "identify", "userId": user, "traits": traits, "timestamp": format_ms(at)})

    def group(self, user: str, account: str, at: int, **traits) -> dict:
        return self.add({"type": "group", "userId": user, "groupId": account, "traits": traits,
                         "timestamp": format_ms(at)})

    def ingest(self, db, settings: Settings | None = None):
        return ingest_batch(db, self.items, source="test", settings=settings)


@pytest.fixture
def messages() -> Messages:
    return Messages()


def days(n: float) -> int:
    """Return n days in milliseconds."""
    return int(n * DAY_MS)


@pytest.fixture(autouse=True, scope="session")
def _private_user_directories(tmp_path_factory):
    """Point the platform's data, state and config directories at a temporary folder, so that the
    tests never write logs, exports or caches into the real user directories."""
    import os

    root = tmp_path_factory.mktemp("xdg")
    saved = {name: os.environ.get(name) for name in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")}
    for name in saved:
        os.environ[name] = str(root / name.lower())
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
