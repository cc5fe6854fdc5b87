"""Benchmark of the ingest: NDJSON file to cache, against SQLite's raw insert rate.

Writes `--messages` (default 1,000,000) Segment-spec messages to an NDJSON file, then measures in
the same run:

- segops's ingest of that file (`segops import` without evaluation: read, parse, validate,
  dedupe, link identities, store);
- the raw SQLite insert rate: the same rows, already built as tuples, inserted with `executemany`
  into a cache with the same schema and indexes, with no parsing or validation.

Run: python bench/ingest.py [--messages N] [--folder DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from console.sources.files import iter_file_items  # noqa: E402
from store.db import open_cache  # noqa: E402
from store.ingest import ingest_stream  # noqa: E402
from store.timeparse import format_ms, parse_time_ms  # noqa: E402

T = parse_time_ms("2026-06-15T12:00:00Z")
EVENTS = ["Task Created", "Comment Added", "File Uploaded", "Report Viewed", "Project Created"]


def write_messages(path: Path, count: int) -> None:
    rng = random.Random(1)
    with path.open("wb") as handle:
        for index in range(count):
            user = f"user-{rng.randrange(count // 10 + 1):07d}"
            at = format_ms(T - rng.randrange(180 * 86_400_000))
            if index % 20 == 0:
                message = {"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}}
            elif index % 7 == 0:
                message = {"type": "page", "userId": user, "name": "Board"}
            else:
                message = {"type": "track", "userId": user, "event": rng.choice(EVENTS),
                           "properties": {"project_id": rng.randrange(1000)}}
            message.update(messageId=f"msg-{index}", timestamp=at,
                           context={"library": {"name": "analytics-python", "version": "2.3.0"}})
            handle.write(orjson.dumps(message) + b"\n")


def raw_insert_rate(path: Path, folder: Path) -> float:
    """Insert the file's rows as prepared tuples, timing only the inserts."""
    rows = []
    for seq, line in enumerate(path.open("rb"), 1):
        message = orjson.loads(line)
        rows.append((seq, message["messageId"], message["type"], message["userId"], None, message["userId"],
                     message.get("event") or message.get("name"), None, parse_time_ms(message["timestamp"]),
                     "timestamp", T, "raw", None, line.decode().rstrip("\n")))
    db = open_cache(folder / "raw.db")
    started = time.perf_counter()
    for start in range(0, len(rows), 20_000):
        db.conn.execute("BEGIN")
        db.conn.executemany(
            "INSERT INTO messages (seq, message_id, type, user_id, anonymous_id, user_key, event, group_id,"
            " event_time, time_field, received_at, source, team_id, payload)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows[start:start + 20_000],
        )
        db.conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.conn.close()
    return len(rows) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--folder", type=Path, help="where to write the file and caches (default: a temp folder)")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=arguments.folder) as name:
        folder = Path(name)
        path = folder / "messages.ndjson"
        write_messages(path, arguments.messages)
        size_mb = path.stat().st_size / 1e6
        print(f"{arguments.messages:,} messages, {size_mb:,.0f} MB of NDJSON")

        db = open_cache(folder / "cache.db")
        started = time.perf_counter()
        result = ingest_stream(db, iter_file_items([path]), source="bench")
        seconds = time.perf_counter() - started
        db.conn.close()
        rate = result.read / seconds
        print(f"segops ingest: {result.stored:,} stored in {seconds:.1f} s = {rate:,.0f} messages/s")

        raw = raw_insert_rate(path, folder)
        print(f"raw SQLite insert of the same rows: {raw:,.0f} rows/s")
        print(f"ingest / raw insert: {rate / raw:.0%}")


if __name__ == "__main__":
    main()
