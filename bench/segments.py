"""Benchmark of the segment engine: a full evaluation of N users and an incremental pass.

Generates a cache of `--users` users (default 1,000,000) with realistic event histories over 180
days (about 10 messages per user: signups, activation or not, core features, pages, NPS responses,
referrals, churn signals, cancellations, group calls), through the real ingest. Then measures:

- a full evaluation at T (`refresh`), with the peak memory of the process;
- an incremental pass after `--new` (default 10,000) new messages (`refresh_incremental`).

Run: python bench/segments.py [--users N] [--new N] [--cache PATH] [--keep]
The cache is generated again unless --cache names an existing one built with the same --users.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.db import open_cache  # noqa: E402
from store.ingest import ingest_batch  # noqa: E402
from store.memberships import refresh, refresh_incremental  # noqa: E402
from store.settings import DAY_MS, Settings  # noqa: E402
from store.timeparse import format_ms, parse_time_ms  # noqa: E402

T = parse_time_ms("2026-06-15T12:00:00Z")
FEATURES = ["Task Created", "Comment Added", "File Uploaded", "Report Viewed", "Integration Connected",
            "Automation Created", "Dashboard Shared"]


def user_history(rng: random.Random, user: int, accounts: int) -> list[dict]:
    """Return one user's messages: ~10 on average, shaped by a persona."""
    user_id = f"user-{user:07d}"
    signup = T - rng.randint(1, 180) * DAY_MS + rng.randint(0, DAY_MS - 1)
    account = f"acct-{rng.randrange(accounts):06d}"
    messages = [
        {"type": "identify", "userId": user_id, "timestamp": format_ms(signup),
         "traits": {"email": f"{user_id}@example.com", "team": rng.choice(["eng", "design", "ops", "sales"])}},
        {"type": "group", "userId": user_id, "groupId": account, "timestamp": format_ms(signup),
         "traits": {"plan": rng.choice(["free", "starter", "growth", "enterprise"]),
                    "projects_used": rng.randint(0, 60)}},
        {"type": "track", "userId": user_id, "event": "Signed Up", "timestamp": format_ms(signup)},
    ]
    persona = rng.random()
    if persona < 0.2:  # never activates
        return messages
    activated = signup + rng.randint(0, 3) * DAY_MS
    messages.append({"type": "track", "userId": user_id, "event": "Project Created",
                     "timestamp": format_ms(min(activated, T))})
    horizon = T if persona > 0.4 else max(activated, T - rng.randint(15, 90) * DAY_MS)
    for _ in range(rng.randint(2, 10)):
        at = rng.randint(min(activated, horizon), horizon)
        kind = rng.random()
        if kind < 0.6:
            messages.append({"type": "track", "userId": user_id, "event": rng.choice(FEATURES),
                             "timestamp": format_ms(at)})
        elif kind < 0.85:
            messages.append({"type": "page", "userId": user_id, "name": "Board", "timestamp": format_ms(at)})
        elif kind < 0.9:
            messages.append({"type": "track", "userId": user_id, "event": "NPS Survey Submitted",
                             "timestamp": format_ms(at), "properties": {"score": rng.randint(0, 10)}})
        elif kind < 0.95:
            messages.append({"type": "track", "userId": user_id, "event": "Invite Sent",
                             "timestamp": format_ms(at)})
        elif kind < 0.98:
            messages.append({"type": "track", "userId": user_id, "event": "Payment Failed",
                             "timestamp": format_ms(at)})
        else:
            messages.append({"type": "track", "userId": user_id, "event": "Subscription Cancelled",
                             "timestamp": format_ms(at)})
    return messages


def generate(db, users: int, seed: int) -> int:
    rng = random.Random(seed)
    accounts = max(users // 10, 1)
    batch: list[tuple[str, dict]] = []
    total = 0
    started = time.perf_counter()
    for user in range(users):
        batch.extend(("bench", message) for message in user_history(rng, user, accounts))
        if len(batch) >= 50_000:
            total += ingest_batch(db, batch, source="bench", received_at=T).stored
            batch.clear()
            rate = total / (time.perf_counter() - started)
            print(f"\r  generated {user + 1:,} users, {total:,} messages ({rate:,.0f}/s)", end="", flush=True)
    if batch:
        total += ingest_batch(db, batch, source="bench", received_at=T).stored
    print()
    return total


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000, help="messages added before the incremental pass")
    parser.add_argument("--cache", type=Path, default=Path("bench-segments.db"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the cache file afterwards")
    arguments = parser.parse_args()

    fresh = not arguments.cache.exists()
    db = open_cache(arguments.cache)
    if fresh:
        print(f"generating {arguments.users:,} users into {arguments.cache} ...")
        messages = generate(db, arguments.users, arguments.seed)
        db.conn.execute("ANALYZE")
    else:
        messages = db.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        db.conn.execute("DELETE FROM evaluations")
    print(f"cache: {messages:,} messages")

    settings = Settings()
    memory_before = peak_memory_mb()
    started = time.perf_counter()
    evaluation = refresh(db, settings, T)
    full_seconds = time.perf_counter() - started
    print(f"full evaluation: {len(evaluation.users):,} users, {len(evaluation.accounts):,} accounts "
          f"in {full_seconds:.1f} s (peak memory {peak_memory_mb():,.0f} MB, before {memory_before:,.0f} MB)")

    rng = random.Random(arguments.seed + 1)
    new_messages = [
        ("bench-new", {"type": "track", "userId": f"user-{rng.randrange(arguments.users):07d}",
                       "event": rng.choice(FEATURES), "timestamp": format_ms(T + 60_000 + index)})
        for index in range(arguments.new)
    ]
    ingest_batch(db, new_messages, source="bench", received_at=T + 60_000)
    started = time.perf_counter()
    partial = refresh_incremental(db, settings, T + 120_000)
    incremental_seconds = time.perf_counter() - started
    print(f"incremental pass after {arguments.new:,} new messages: {len(partial.users):,} users re-evaluated "
          f"in {incremental_seconds:.2f} s")
    db.conn.close()
    if fresh and not arguments.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(str(arguments.cache) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
