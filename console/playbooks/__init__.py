"""Playbooks: the catalog from the configuration, triggering a run, and automatic triggers.

`plan` shows what a trigger would do without writing; `trigger` records the run and queues its
actions. Both take the playbook and target from the caller, so the command line and the console
share them.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import sqlite_utils

from store import runs
from store.timeparse import now_ms

if TYPE_CHECKING:
    from console.config import Config
    from console.playbooks.catalog import Playbook


class ReadOnlyError(Exception):
    """An operation that would queue or send actions, refused because `operator.read_only` is set."""


def ensure_writable(config: Config, operation: str) -> None:
    """Raise `ReadOnlyError` naming `operation` when the configuration is in read-only mode."""
    if config.read_only:
        where = f" in {config.path}" if config.path else ""
        raise ReadOnlyError(
            f"{operation} is not allowed in read-only mode (the --read-only option, or "
            f"operator.read_only = true{where}); drop the option or set the key to false to queue or "
            "send actions"
        )


def operator_name(config: Config) -> str:
    """Return the name recorded on runs: `operator.name` of the configuration, else the OS user."""
    return config.operator or getpass.getuser()


def notice_destinations(config: Config) -> list[str]:
    """Return the names of the destinations that receive held-out notices (the demo CDP's type)."""
    return [name for name, destination in config.destinations.items() if destination.kind.takes_holdout_notices]


def plan(
    db: sqlite_utils.Database, playbook: Playbook, target: runs.Target, *, now: int | None = None,
    preview_limit: int = 20,
) -> runs.RunPlan:
    """Return what triggering `playbook` on `target` would do, without writing anything.

    Raises `store.runs.RunError` for an unknown user, account or segment.
    """
    return runs.plan_run(db, playbook, target, now=now_ms() if now is None else now, preview_limit=preview_limit)


def trigger(
    db: sqlite_utils.Database,
    config: Config,
    playbook: Playbook,
    target: runs.Target,
    *,
    now: int | None = None,
    dry_run: bool = False,
) -> runs.Run:
    """Record a run of `playbook` on `target` by the configured operator and queue its actions
    (none for a dry run). Raises `ReadOnlyError` in read-only mode and `store.runs.RunError` for
    an unknown user, account or segment."""
    ensure_writable(config, "triggering a playbook")
    return runs.create_run(
        db, playbook, target, operator=operator_name(config), now=now_ms() if now is None else now,
        dry_run=dry_run, notice_destinations=notice_destinations(config),
    )
