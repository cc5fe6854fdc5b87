"""Playbook commands: `playbooks`, `trigger`, `dispatch` and `actions` (the audit log)."""

from __future__ import annotations

import json
import sys
import threading

import click

from console.commands import COMMANDS
from console.playbooks.catalog import delay_words


@click.command(name="playbooks")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def playbooks_command(globals_, as_json: bool) -> None:
    """List the configured playbooks: segment, steps, holdout share, cooldown and exclusions."""
    records = [_playbook_record(playbook) for playbook in globals_.config.playbooks.values()]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for record in records:
        automatic = ", on entry" if record["on_entry"] else ""
        click.echo(f"{record['id']}  ({record['name']})")
        click.echo(f"  segment {record['segment']}; holdout {record['holdout_share']:.0%}; "
                   f"cooldown {record['cooldown_days']} days{automatic}")
        if record["exclude_segments"]:
            click.echo(f"  excludes {', '.join(record['exclude_segments'])}")
        if record["description"]:
            click.echo(f"  {record['description']}")
        if record["tone"]:
            click.echo(f"  tone: {record['tone']}")
        for index, step in enumerate(record["steps"], 1):
            click.echo(f"  step {index}: {step['channel']} {step['content']} via {step['destination']}, "
                       f"{delay_words(step['delay_minutes'])}")


def _playbook_record(playbook) -> dict:
    return {
        "id": playbook.id,
        "name": playbook.name,
        "segment": playbook.segment,
        "description": playbook.description,
        "tone": playbook.tone,
        "steps": [
            {"channel": step.channel, "destination": step.destination, "content": step.content,
             "delay_minutes": step.delay_minutes}
            for step in playbook.steps
        ],
        "holdout_share": playbook.holdout_share,
        "cooldown_days": playbook.cooldown_days,
        "exclude_segments": list(playbook.exclude_segments),
        "on_entry": playbook.on_entry,
    }


@click.command()
@click.argument("playbook_id", metavar="PLAYBOOK")
@click.option("--user", "user_id", help="Trigger for this user id.")
@click.option("--account", "account_id", help="Trigger for the users of this account id.")
@click.option("--segment", "segment_name",
              help='Trigger for the members of this segment ("Power Users" or power-users).')
@click.option("--dry-run", is_flag=True, help="Record the run and its counts, queue nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed when input is not a terminal).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: run_id, targeted, held_out, excluded, queued and more.")
@click.pass_obj
def trigger(globals_, playbook_id: str, user_id: str | None, account_id: str | None, segment_name: str | None,
            dry_run: bool, yes: bool, as_json: bool) -> None:
    """Trigger PLAYBOOK for a user, an account or a segment: record a run and queue its actions.

    Held-out, excluded and cooling-down users are counted and not sent anything. `segops
    dispatch` sends what is queued.
    """
    from console.cli import _fail, _open
    from console.playbooks import ReadOnlyError, ensure_writable, plan
    from console.playbooks import trigger as trigger_run
    from console.playbooks.catalog import find_playbook
    from store.runs import RunError, Target
    from store.timeparse import now_ms

    config = globals_.config
    targets = [(kind, value) for kind, value in (("user", user_id), ("account", account_id),
                                                 ("segment", segment_name)) if value]
    if len(targets) != 1:
        raise click.UsageError("name exactly one target: --user ID, --account ID or --segment NAME")
    try:
        ensure_writable(config, "triggering a playbook")
    except ReadOnlyError as error:
        _fail(str(error))
    playbook = find_playbook(config.playbooks, playbook_id)
    if playbook is None:
        raise click.BadParameter(
            f"unknown playbook {playbook_id!r}; playbooks: {', '.join(config.playbooks)}", param_hint="PLAYBOOK")

    db = _open(globals_)
    now = now_ms()
    try:
        target = Target(*targets[0])
        if not dry_run and not yes:
            _confirm(plan(db, playbook, target, now=now, preview_limit=5))
        run = trigger_run(db, config, playbook, target, now=now, dry_run=dry_run)
    except RunError as error:
        _fail(str(error))

    counts = run.counts
    record = {
        "run_id": run.id,
        "playbook": run.playbook,
        "target": {"kind": run.target_kind, "id": run.target_id},
        "dry_run": run.dry_run,
        "operator": run.operator,
        "targeted": counts.targeted,
        "held_out": counts.held_out,
        "excluded": counts.excluded_cooldown + counts.excluded_rule,
        "excluded_cooldown": counts.excluded_cooldown,
        "excluded_rule": counts.excluded_rule,
        "queued": counts.queued,
        "actions_queued": 0 if run.dry_run else counts.queued * len(playbook.steps),
    }
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    what = "dry run" if run.dry_run else "run"
    click.echo(f"{what} {run.id}: {playbook.id} on {run.target_kind} {run.target_id} by {run.operator}")
    click.echo(f"  targeted {counts.targeted}, held out {counts.held_out}, excluded {record['excluded']} "
               f"(cooldown {counts.excluded_cooldown}, rule {counts.excluded_rule}), "
               + (f"would queue {counts.queued} (dry run: nothing queued)" if run.dry_run else f"queued {counts.queued}"))
    if not run.dry_run and counts.queued:
        click.echo(f"  {record['actions_queued']} actions in the outbox; `segops dispatch --once` sends the due ones")


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _confirm(run_plan) -> None:
    from console.cli import _fail

    if not _stdin_is_terminal():
        _fail("not triggered: confirmation needs a terminal; pass --yes to confirm, or --dry-run to see the counts")
    counts = run_plan.counts
    click.echo(f"{run_plan.playbook} on {run_plan.target.kind} {run_plan.target.id}: {counts.targeted} targeted, "
               f"{counts.held_out} held out, {counts.excluded_cooldown} in cooldown, "
               f"{counts.excluded_rule} excluded by rule, {counts.queued} to queue")
    for warning in run_plan.warnings:
        click.echo(f"  note: {warning}")
    for recipient in run_plan.preview:
        click.echo(f"  {recipient.user_id:<20} {recipient.email or '':<40} {recipient.decision}")
    click.confirm(f"Queue the actions for {counts.queued} users?", abort=True)


@click.command()
@click.option("--once", is_flag=True, help="Send what is due now and exit, instead of running until Ctrl+C.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the report as JSON.")
@click.pass_obj
def dispatch(globals_, once: bool, as_json: bool) -> None:
    """Send the outbox's due actions to their destinations, retrying failures with backoff.

    Without --once, passes repeat every dispatch.interval_seconds until Ctrl+C. Exits with 1 when
    a destination is not configured (its actions stay queued).
    """
    from console.cli import _fail, _open
    from console.dispatch import dispatch_once, run_dispatcher
    from console.playbooks import ReadOnlyError, ensure_writable

    config = globals_.config
    try:
        ensure_writable(config, "dispatching actions")
    except ReadOnlyError as error:
        _fail(str(error))
    db = _open(globals_)
    if once:
        report = dispatch_once(db, config)
        if as_json:
            click.echo(json.dumps(report.as_dict(), indent=2))
        else:
            _print_report(report, always=True)
        if report.not_configured:
            sys.exit(1)
        return

    stop = threading.Event()
    click.echo(f"dispatching every {config.dispatch.interval_seconds:g} s; Ctrl+C stops", err=True)
    try:
        run_dispatcher(
            db, config, stop=stop, on_report=_print_report,
            on_error=lambda error, delay: click.echo(f"dispatch failed: {error}; retrying in {delay:.0f} s", err=True),
        )
    except KeyboardInterrupt:
        stop.set()


def _print_report(report, always: bool = False) -> None:
    from store.timeparse import format_ms, now_ms

    if report.attempted or report.recovered or always:
        click.echo(f"{format_ms(now_ms())} sent {report.sent}, held-out notices {report.notices}, "
                   f"retrying {report.retried}, failed {report.failed}, recovered {report.recovered}")
    for name, reason in report.not_configured.items():
        click.echo(f"not sent to {name}: {reason}", err=True)


@click.command()
@click.option("--run", "run_id", type=int, help="Show this run with every action and its attempts.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Runs to list (newest first), or with --run, actions to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def actions(globals_, run_id: int | None, limit: int, as_json: bool) -> None:
    """Show the audit log: each run with its operator, time, playbook, target, counts and whether it
    was a dry run, and what became of its actions."""
    from console.cli import _fail, _open
    from store import runs

    db = _open(globals_)
    if run_id is None:
        records = [_run_record(db, run, action_limit=0) for run in runs.list_runs(db, limit=limit)]
    else:
        run = runs.get_run(db, run_id)
        if run is None:
            _fail(f"no run {run_id}; `segops actions` lists the runs")
        records = [_run_record(db, run, action_limit=limit)]
    if as_json:
        click.echo(json.dumps(records if run_id is None else records[0], indent=2))
        return
    if not records:
        click.echo("no runs yet: `segops trigger` starts one")
    for record in records:
        _print_run(record)


def _run_record(db, run, action_limit: int) -> dict:
    """Return a run as the audit log shows it: its fields, its actions by status and its failed
    actions, and with `action_limit`, its first actions with their attempts."""
    from store import runs
    from store.timeparse import format_ms

    record = run.as_dict()
    record["created_at"] = format_ms(run.created_at)
    record["results"] = runs.action_status_counts(db, run.id)
    record["failed"] = [
        {"action_id": action.id, "user_id": action.user_id, "step": action.step, "error": action.last_error}
        for action in runs.list_actions(db, run_id=run.id, status="failed", limit=50)
    ]
    if action_limit:
        record["actions"] = []
        for action in runs.list_actions(db, run_id=run.id, limit=action_limit):
            item = action.as_dict()
            for key in ("created_at", "due_at", "next_attempt_at", "claimed_at", "sent_at"):
                item[key] = format_ms(item[key]) or None
            item["attempts"] = [
                dict(attempt.as_dict(), at=format_ms(attempt.at)) for attempt in runs.list_attempts(db, action.id)
            ]
            record["actions"].append(item)
    return record


def _print_run(record: dict) -> None:
    counts = record["counts"]
    dry = " (dry run)" if record["dry_run"] else ""
    click.echo(f"run {record['id']}{dry}  {record['created_at']}  {record['operator']}  {record['playbook']} on "
               f"{record['target_kind']} {record['target_id']}")
    click.echo(f"  targeted {counts['targeted']}, held out {counts['held_out']}, excluded "
               f"{counts['excluded_cooldown']} by cooldown and {counts['excluded_rule']} by rule, "
               f"queued {counts['queued']}")
    if record["results"]:
        click.echo("  actions: " + ", ".join(f"{status} {count}" for status, count in record["results"].items()))
    for failed in record["failed"]:
        click.echo(f"  failed: action {failed['action_id']} for {failed['user_id']} (step {failed['step']}): "
                   f"{failed['error']}")
    for action in record.get("actions", []):
        notice = f", notice {action['notice']}" if action["notice"] else ""
        click.echo(f"    action {action['id']} {action['user_id']} step {action['step']} {action['channel']} via "
                   f"{action['destination']}: {action['status']}{notice}, {len(action['attempts'])} attempts"
                   + (f", last error: {action['last_error']}" if action["last_error"] else ""))
        for attempt in action["attempts"]:
            code = attempt["status_code"] if attempt["status_code"] is not None else "no response"
            click.echo(f"      {attempt['at']}  {code}  {attempt['duration_ms']} ms  {attempt['error'] or ''}")


COMMANDS.extend([playbooks_command, trigger, dispatch, actions])
