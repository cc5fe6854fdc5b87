"""Automatic playbooks: a run for the users who entered a playbook's segment.

Only playbooks with `on_entry = true` take part (none by default). Each entry (a `transitions`
row) triggers its playbook once, subject to the holdout, cooldown and exclusions like a manual
run, and is recorded as a run by the operator "automatic". Nothing is queued while the feed is
stale, because entries computed from a stale feed may not be real, nor while an operator has
paused automatic playbooks, nor in read-only mode.
"""

from __future__ import annotations

import logging

import sqlite_utils

from console.config import Config
from console.playbooks import notice_destinations
from store import runs
from store.timeparse import now_ms

logger = logging.getLogger(__name__)

AUTOMATIC_OPERATOR = "automatic"


def queue_entries(
    db: sqlite_utils.Database,
    config: Config,
    transitions_since: int,
    *,
    stale: bool = False,
    now: int | None = None,
) -> list[runs.Run]:
    """Queue a run of every `on_entry` playbook for the users who entered its segment at or after
    `transitions_since` (epoch ms), except entries already handled. Return the runs created.

    Does nothing and returns [] when `stale` is true, when automatic playbooks are paused
    (`store.runs.set_automatic_paused`), or in read-only mode.
    """
    if stale or config.read_only:
        return []
    if runs.automatic_paused(db):
        logger.info("automatic playbooks are paused; no entry is queued")
        return []
    now = now_ms() if now is None else now
    created = []
    for playbook in config.playbooks.values():
        if not playbook.on_entry:
            continue
        run, entries = runs.create_entry_run(db, playbook, transitions_since, operator=AUTOMATIC_OPERATOR, now=now,
                                             notice_destinations=notice_destinations(config))
        if run is None:
            continue
        logger.info("automatic run %d of %s for %d entries: %d queued, %d held out, %d excluded",
                    run.id, playbook.id, entries, run.counts.queued, run.counts.held_out,
                    run.counts.excluded_cooldown + run.counts.excluded_rule)
        created.append(run)
    return created
