"""The `segops` command line."""

from __future__ import annotations

import getpass
import json
import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import click

from console import paths
from console.config import WRITE_KEY_ENV, Config, ConfigError, default_toml, load_config
from console.sources import SourceError
from store import segments as seg
from store.db import CacheError, open_cache
from store.normalize import REASONS
from store.timeparse import TimeParseError, format_ms, now_ms, parse_time_ms

logger = logging.getLogger("segops.cli")


@dataclass
class Globals:
    """The global options, resolved."""

    cache_path: Path
    config: Config
    cache_given: bool


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _open(globals_: Globals):
    try:
        return open_cache(globals_.cache_path)
    except CacheError as error:
        _fail(str(error))


def _as_of(value: str | None, option: str = "--as-of") -> int:
    if value is None:
        return now_ms()
    try:
        return parse_time_ms(value)
    except TimeParseError as error:
        raise click.BadParameter(f"{error}; use ISO-8601 such as 2026-06-01T00:00:00Z", param_hint=option)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cache", "cache", type=click.Path(dir_okay=False, path_type=Path), envvar=paths.CACHE_ENV,
              help="SQLite cache file. Default: cache.db in the platform's data directory "
                   f"(environment variable {paths.CACHE_ENV}).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML configuration file. Default: config.toml in the platform's config directory, "
                   "if it exists. See `segops config --default`.")
@click.option("--read-only", is_flag=True,
              help="Hide every action that changes anything: no trigger, no dispatch, no automatic playbooks "
                   "(also the configuration key operator.read_only).")
@click.version_option(package_name="segops")
@click.pass_context
def main(context: click.Context, cache: Path | None, config_path: Path | None, read_only: bool) -> None:
    """segops: a terminal console for growth segmentation.

    Without a command, opens the console on the configured source and cache.
    """
    paths.setup_logging()
    if config_path is None and paths.default_config_path().exists():
        config_path = paths.default_config_path()
    try:
        config = load_config(config_path)
    except ConfigError as error:
        _fail(str(error))
    if read_only:
        config.read_only = True
    context.obj = Globals(cache or paths.default_cache_path(), config, cache is not None)
    if context.invoked_subcommand is None:
        _run_console(context.obj, config, title_note=None)


def _run_console(globals_: Globals, config: Config, title_note: str | None) -> None:
    db = _open(globals_)
    db.conn.close()
    from console.app import SegopsApp  # Textual loads only for the console, not for headless commands.

    SegopsApp(cache_path=globals_.cache_path, config=config, title_note=title_note).run()


@main.command()
@click.option("--port", default=0, show_default=True, help="Port of the demo CDP on 127.0.0.1; 0 picks a free one.")
@click.option("--seed", default=7, show_default=True, help="Seed of the simulated company.")
@click.option("--users", default=5000, show_default=True, help="Number of simulated users.")
@click.pass_obj
def demo(globals_: Globals, port: int, seed: int, users: int) -> None:
    """Start the demo CDP on 127.0.0.1 with a simulated company and open the console on it.

    The demo uses its own cache (demo.db in the data directory), rebuilt at each start, unless
    --cache names a file. The console syncs from the demo CDP and sends playbook actions to it.
    """
    from dataclasses import replace

    from console.demo.server import DemoCDP

    # The write key of the feed and of the actions, so that the demo destination sends to this CDP.
    write_key = "demo"
    if not globals_.cache_given:
        globals_.cache_path = paths.demo_cache_path()
        for suffix in ("", "-wal", "-shm"):
            Path(str(globals_.cache_path) + suffix).unlink(missing_ok=True)
    click.echo(f"Generating {users} simulated users (seed {seed})...", err=True)
    server = DemoCDP(port=port, seed=seed, users=users, write_key=write_key)
    try:
        server.start()
    except OSError as error:
        _fail(f"cannot start the demo CDP on 127.0.0.1:{port}: {error.strerror or error}")
    config = replace(
        globals_.config,
        source_url=server.url,
        write_key=write_key,
        sync_interval=3.0,
        # The demo's users respond to actions within seconds, so its reports look at the 10
        # minutes after each action instead of days.
        reporting=globals_.config.reporting.with_windows(10 * 60_000),
    )
    try:
        _run_console(globals_, config, title_note=f"demo CDP at {server.url}")
    finally:
        server.stop()


@main.command()
@click.option("--port", default=8765, show_default=True, help="Port to listen on, on 127.0.0.1.")
@click.option("--seed", default=7, show_default=True, help="Seed of the simulated company.")
@click.option("--write-key", default="demo", show_default=True, help="Write key clients must send.")
@click.option("--users", default=5000, show_default=True, help="Number of simulated users; 0 starts empty.")
@click.option("--live-interval", default=3.0, show_default=True,
              help="Seconds between batches of live events; 0 turns live events off.")
def cdp(port: int, seed: int, write_key: str, users: int, live_interval: float) -> None:
    """Run the demo CDP alone in the foreground until interrupted (Ctrl+C)."""
    from console.demo.server import DemoCDP

    server = DemoCDP(port=port, seed=seed, users=users, write_key=write_key, live_interval=live_interval)
    try:
        server.start()
    except OSError as error:
        _fail(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}")
    click.echo(f"demo CDP listening at {server.url} (write key {write_key!r}); Ctrl+C stops it", err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.command()
@click.option("--source", "source_url", help="Pull feed URL of the CDP. Default: source.url of the configuration.")
@click.option("--write-key", help="Write key of the feed. Default: SEGOPS_WRITE_KEY or source.write_key.")
@click.option("--once", "mode", flag_value="once", help="Sync until caught up, evaluate, and exit.")
@click.option("--follow", "mode", flag_value="follow", help="Keep syncing on the configured interval.")
@click.pass_obj
def sync(globals_: Globals, source_url: str | None, write_key: str | None, mode: str | None) -> None:
    """Pull new messages from the CDP into the cache and evaluate the segments."""
    from console.sources.http import HttpSource
    from console.sync import follow, sync_once

    if mode is None:
        raise click.UsageError("choose --once or --follow")
    source_url = source_url or globals_.config.source_url
    if not source_url:
        raise click.UsageError("no source: pass --source URL or set source.url in the configuration")
    write_key = write_key or globals_.config.write_key or ""
    db = _open(globals_)
    try:
        source = HttpSource(source_url, write_key)
    except SourceError as error:
        _fail(str(error))

    def show_progress(report) -> None:
        if sys.stderr.isatty():
            click.echo(f"\r{report.pages} pages, {report.result.read} messages", err=True, nl=False)

    queue = _automatic_playbooks(globals_.config)
    with source:
        if mode == "once":
            try:
                report = sync_once(db, source, globals_.config.settings, progress=show_progress,
                                   stale_after_ms=int(globals_.config.stale_after * 1000),
                                   after_evaluation=queue)
            except SourceError as error:
                hint = ""
                if not write_key and getattr(error, "retryable", True) is False and "write key" in str(error):
                    hint = f"; no write key was given: pass --write-key or set {WRITE_KEY_ENV}"
                _fail(f"sync failed: {error}{hint}")
            if sys.stderr.isatty():
                click.echo("", err=True)
            _print_sync(report)
            if report.first:
                _backfill(db, globals_.config.settings, globals_.config.backfill_days)
            return
        stop = threading.Event()
        click.echo(f"following {source.name} every {globals_.config.sync_interval:g} s; Ctrl+C stops", err=True)
        try:
            follow(
                db, source, globals_.config.settings, interval=globals_.config.sync_interval, stop=stop,
                on_report=_print_sync,
                on_error=lambda error, delay: click.echo(f"sync failed: {error}; retrying in {delay:.0f} s", err=True),
                stale_after_ms=int(globals_.config.stale_after * 1000),
                backfill_days=globals_.config.backfill_days,
                after_evaluation=queue,
            )
        except KeyboardInterrupt:
            stop.set()


def _backfill(db, settings, days: int) -> None:
    from store.memberships import backfill

    def show(done: int, total: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\rbackfilling daily snapshots: {done}/{total} days", err=True, nl=False)

    click.echo(f"computing daily snapshots of the last {days} days from the cache for the trends...", err=True)
    evaluated = backfill(db, settings, days, progress=show)
    if sys.stderr.isatty() and evaluated:
        click.echo("", err=True)
    click.echo(f"backfilled {evaluated} days of snapshots", err=True)


@main.command(name="backfill")
@click.option("--days", type=click.IntRange(min=1, max=3660), default=90, show_default=True,
              help="Number of past UTC days to compute.")
@click.pass_obj
def backfill_command(globals_: Globals, days: int) -> None:
    """Compute a snapshot of every population at the end of each past day from the cached events,
    so that trends are meaningful at once. Days that already have a snapshot are skipped."""
    _backfill(_open(globals_), globals_.config.settings, days)


def _automatic_playbooks(config: Config):
    """Return the after-evaluation hook that queues the runs of `on_entry` playbooks."""
    from console.playbooks.automatic import queue_entries

    def queue(db, report, previous_evaluated_at: int | None) -> None:
        if previous_evaluated_at is None:
            return  # A first evaluation finds its members: no entry to react to.
        created = queue_entries(db, config, previous_evaluated_at, stale=report.stale)
        for run in created:
            click.echo(f"automatic run {run.id} of {run.playbook}: {run.counts.queued} queued", err=True)

    return queue


def _print_sync(report) -> None:
    result = report.result
    click.echo(
        f"{format_ms(now_ms())} {report.source}: {report.pages} pages, {result.read} read, "
        f"{result.stored} stored, {result.duplicates} duplicates, {result.quarantined} quarantined "
        f"in {report.seconds:.1f} s" + (" (feed stale: no new messages)" if report.stale else "")
    )


@main.command(name="import")
@click.argument("paths_", metavar="FILE_OR_FOLDER...", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the counts.")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Evaluate the segments at the current time after the import.")
@click.pass_obj
def import_(globals_: Globals, paths_: tuple[Path, ...], as_json: bool, evaluate: bool) -> None:
    """Import Segment-spec messages from NDJSON, JSON array or batch files (.gz too) or folders.

    Prints messages read, stored, duplicates, and quarantined by reason. Every message read is
    stored, counted as a duplicate of a messageId already cached, or quarantined with its reason
    (browse them with `segops quarantine`).
    """
    from console.sources.files import count_hint, iter_file_items
    from store.ingest import ingest_stream
    from store.memberships import refresh_incremental

    db = _open(globals_)
    try:
        total_bytes = count_hint(paths_)
    except SourceError as error:
        _fail(str(error))
    show = sys.stderr.isatty() and not as_json

    def progress(result) -> None:
        if show:
            click.echo(f"\r{result.read} messages read ({total_bytes / 1e6:.1f} MB in all)", err=True, nl=False)

    source = "import:" + ",".join(str(path) for path in paths_)[:200]
    try:
        result = ingest_stream(db, iter_file_items(paths_), source=source, settings=globals_.config.settings,
                               progress=progress)
    except SourceError as error:
        _fail(str(error))
    if show:
        click.echo("", err=True)
    if evaluate:
        refresh_incremental(db, globals_.config.settings)
    if as_json:
        counts = result.as_dict()
        click.echo(json.dumps({key: counts[key] for key in ("read", "stored", "duplicates", "quarantined",
                                                             "reasons", "conflicts")}))
        return
    click.echo(f"read         {result.read}")
    click.echo(f"stored       {result.stored}")
    click.echo(f"duplicates   {result.duplicates}"
               + (f" ({result.conflicts} with a different payload; the first one is kept)" if result.conflicts else ""))
    click.echo(f"quarantined  {result.quarantined}")
    for reason, count in sorted(result.reasons.items()):
        click.echo(f"  {reason:<20} {count:>8}  {REASONS.get(reason, '')}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--as-of", help="Evaluate at this ISO-8601 time instead of now.")
@click.pass_obj
def segments(globals_: Globals, as_json: bool, as_of: str | None) -> None:
    """Evaluate every segment at now (or --as-of) from the cache and print the populations."""
    from store.engine import evaluate

    t = _as_of(as_of)
    db = _open(globals_)
    populations = evaluate(db.conn, globals_.config.settings, t).populations()
    rows = [
        {"name": definition.name, "kind": definition.kind, "entity": definition.entity,
         "population": populations[definition.name]}
        for definition in seg.ALL_SEGMENTS
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"Segments at {format_ms(t)}")
    for kind in ("lifecycle", "behavioral"):
        click.echo(f"\n{kind}")
        for row in rows:
            if row["kind"] == kind:
                entity = row["entity"] if row["population"] == 1 else row["entity"] + "s"
                click.echo(f"  {row['name']:<26} {row['population']:>9}  {entity}")


@main.command()
@click.argument("segment")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of members.")
@click.option("--as-of", help="Evaluate at this ISO-8601 time instead of now.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Print at most N members (default 100).")
@click.option("--all", "all_", is_flag=True, help="Print every member.")
@click.pass_obj
def members(globals_: Globals, segment: str, as_json: bool, as_of: str | None, limit: int | None,
            all_: bool) -> None:
    """List the members of SEGMENT (a name such as "Power Users" or power-users), sorted by id."""
    from store.engine import evaluate

    if all_ and limit is not None:
        raise click.UsageError("use either --limit or --all")
    definition = seg.find_segment(segment)
    if definition is None:
        names = ", ".join(d.name for d in seg.ALL_SEGMENTS)
        raise click.BadParameter(f"unknown segment {segment!r}; segments: {names}", param_hint="SEGMENT")
    t = _as_of(as_of)
    db = _open(globals_)
    evaluation = evaluate(db.conn, globals_.config.settings, t)
    ids = evaluation.members[definition.name]
    shown = ids if all_ else ids[: limit or 100]
    if as_json:
        click.echo(json.dumps([_member_record(evaluation, definition, entity_id) for entity_id in shown], indent=2))
        return
    entity = definition.entity if len(ids) == 1 else definition.entity + "s"
    click.echo(f"{definition.name}: {len(ids)} {entity} at {format_ms(t)}")
    for entity_id in shown:
        click.echo(f"  {entity_id}")
    if len(shown) < len(ids):
        click.echo(f"  ... {len(ids) - len(shown)} more (use --all or --limit)")


def _member_record(evaluation, definition, entity_id: str) -> dict:
    if definition.entity == "account":
        account = evaluation.accounts[entity_id]
        return {"id": entity_id, "name": account.name, "plan": account.plan, "seats_used": len(account.users),
                "teams": len(account.teams)}
    user = evaluation.users[entity_id]
    return {
        "id": entity_id,
        "email": user.email,
        "lifecycle": evaluation.stages[entity_id],
        "account_id": user.account_id,
        "signup_at": format_ms(user.signup_at) or None,
        "last_active_at": format_ms(user.last_active_at) or None,
        "active_days_30": user.active_days_30,
        "features_30": user.features_30,
        "usage_score": user.usage_score,
    }


@main.command()
@click.argument("entity_id", metavar="ID")
@click.option("--as-of", help="Evaluate at this ISO-8601 time instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: segment name -> {member, conditions}.")
@click.pass_obj
def explain(globals_: Globals, entity_id: str, as_of: str | None, as_json: bool) -> None:
    """Explain why user or account ID is or is not in each segment: every condition, its value and
    its threshold."""
    from store.engine import explain_account, explain_user

    t = _as_of(as_of)
    db = _open(globals_)
    settings = globals_.config.settings
    verdicts = explain_user(db.conn, settings, t, entity_id)
    if verdicts is None:
        account = explain_account(db.conn, settings, t, entity_id)
        if account is None:
            _fail(f"no user or account {entity_id!r} in the cache at {format_ms(t)}")
        verdicts = {seg.EXPANSION_READY: account}
    if as_json:
        click.echo(json.dumps({name: verdict.as_dict() for name, verdict in verdicts.items()}, indent=2))
        return
    click.echo(f"{entity_id} at {format_ms(t)}")
    for name, verdict in verdicts.items():
        mark = "IN " if verdict.member else "out"
        miss = verdict.near_miss()
        note = f"  one condition from {'entering' if miss[0] == 'enter' else 'leaving'}: {miss[1].name}" if miss else ""
        click.echo(f"\n{mark} {name}  ({verdict.combine} of){note}")
        for condition in verdict.conditions:
            check = "yes" if condition.passed else "no "
            value = "none" if condition.value is None else condition.value
            click.echo(f"    {check} {condition.name}: {value}  [{condition.threshold}]")


@main.command()
@click.option("--segment", help="Only transitions of this segment.")
@click.option("--since", help="Only transitions at or after this ISO-8601 time (default: 7 days ago).")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def transitions(globals_: Globals, segment: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """List entries into and exits from segments, newest first, with the condition behind each."""
    from store.settings import DAY_MS

    since_ms = _as_of(since, "--since") if since else now_ms() - 7 * DAY_MS
    where, parameters = ["at >= ?"], [since_ms]
    if segment:
        definition = seg.find_segment(segment)
        if definition is None:
            raise click.BadParameter(f"unknown segment {segment!r}", param_hint="--segment")
        where.append("segment = ?")
        parameters.append(definition.name)
    rows = _open(globals_).conn.execute(
        f"SELECT segment, entity_id, entered, at, reason FROM transitions WHERE {' AND '.join(where)}"
        " ORDER BY at DESC, id DESC LIMIT ?",
        (*parameters, limit),
    ).fetchall()
    records = [
        {"segment": name, "id": entity_id, "entered": bool(entered), "at": format_ms(at), "reason": reason}
        for name, entity_id, entered, at, reason in rows
    ]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for record in records:
        arrow = "entered" if record["entered"] else "left   "
        click.echo(f"{record['at']}  {arrow} {record['segment']:<24} {record['id']}  ({record['reason']})")
    if not records:
        click.echo(f"no transitions since {format_ms(since_ms)}")


@main.command(name="evaluate")
@click.option("--full", is_flag=True, help="Recompute every user and account instead of only those that "
                                           "new messages or the passing time can have changed.")
@click.pass_obj
def evaluate_command(globals_: Globals, full: bool) -> None:
    """Evaluate the segments at now and store memberships, transitions and a snapshot."""
    from store.memberships import refresh, refresh_incremental

    run = refresh if full else refresh_incremental
    evaluation = run(_open(globals_), globals_.config.settings)
    click.echo(f"evaluated {len(evaluation.users)} users and {len(evaluation.accounts)} accounts "
               f"at {format_ms(evaluation.t)}" + ("" if full else " (incremental)"))


@main.command()
@click.option("--config", "other", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The configuration to compare with the one in use.")
@click.option("--as-of", help="Evaluate at this ISO-8601 time instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: segment -> {enter: [...], leave: [...]}.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Ids listed per segment and direction in the table output.")
@click.pass_obj
def diff(globals_: Globals, other: Path, as_of: str | None, as_json: bool, limit: int) -> None:
    """Dry run of a definition change: who would enter and who would leave each segment."""
    from store.engine import evaluate

    try:
        proposed = load_config(other)
    except ConfigError as error:
        _fail(str(error))
    t = _as_of(as_of)
    db = _open(globals_)
    current = evaluate(db.conn, globals_.config.settings, t).members
    changed = evaluate(db.conn, proposed.settings, t).members
    result = {}
    for definition in seg.ALL_SEGMENTS:
        before, after = set(current[definition.name]), set(changed[definition.name])
        result[definition.name] = {"enter": sorted(after - before), "leave": sorted(before - after)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{other} against {globals_.config.path or 'the defaults'} at {format_ms(t)}")
    for name, change in result.items():
        click.echo(f"  {name:<26} +{len(change['enter']):<6} -{len(change['leave'])}")
        for direction, sign in (("enter", "+"), ("leave", "-")):
            ids = change[direction]
            if ids:
                more = f" ... {len(ids) - limit} more" if len(ids) > limit else ""
                click.echo(f"      {sign} {', '.join(ids[:limit])}{more}")


@main.command()
@click.pass_obj
def info(globals_: Globals) -> None:
    """Show paths, the configured source and destinations with their secrets masked, and cache
    counts."""
    from console.destinations import mask_secret
    from store.queries import cache_status

    config = globals_.config
    masked = mask_secret(config.write_key)
    click.echo(f"cache          {globals_.cache_path}")
    click.echo(f"configuration  {config.path or '(built-in defaults)'}")
    click.echo(f"log            {paths.log_path()}")
    click.echo(f"source         {config.source_url or '(none)'}")
    click.echo(f"write key      {masked}")
    click.echo(f"operator       {config.operator or getpass.getuser()}")
    click.echo(f"read-only      {'yes' if config.read_only else 'no'}")
    for name, destination in config.destinations.items():
        fields = [f"{key} {destination.field_value(key)}" for key in destination.kind.fields
                  if destination.field_value(key)]
        secrets = [f"{key} {mask_secret(destination.secret(key))} (from {reference.describe()})"
                   for key, reference in destination.secrets.items()]
        click.echo(f"destination    {name}: {destination.type}" + "".join(f"; {item}" for item in fields + secrets))
    if globals_.cache_path.exists():
        status = cache_status(_open(globals_).conn)
        click.echo(f"messages       {status.messages}")
        click.echo(f"quarantined    {status.quarantined}")
        click.echo(f"duplicates     {status.duplicates}")
        click.echo(f"evaluated at   {format_ms(status.evaluated_at) or 'never'}")


@main.command()
@click.option("--default", "show_default", is_flag=True, help="Print the full default configuration.")
@click.pass_obj
def config(globals_: Globals, show_default: bool) -> None:
    """Print the default configuration (--default), or the path of the configuration in use."""
    if show_default:
        click.echo(default_toml(), nl=False)
        return
    click.echo(f"configuration in use: {globals_.config.path or '(built-in defaults)'}")
    click.echo(f"default location: {paths.default_config_path()}")
    click.echo("print every key with its default and meaning: segops config --default")


@main.command()
@click.option("--reason", help="Only this reason code.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print NDJSON: one quarantined message per line.")
@click.pass_obj
def quarantine(globals_: Globals, reason: str | None, limit: int, as_json: bool) -> None:
    """List quarantined messages with their reason and where they came from."""
    from store.queries import quarantine_counts

    if reason is not None and reason not in REASONS:
        raise click.BadParameter(f"unknown reason {reason!r}; reasons: {', '.join(sorted(REASONS))}",
                                 param_hint="--reason")
    db = _open(globals_)
    where, parameters = ("WHERE reason = ?", (reason, limit)) if reason else ("", (limit,))
    rows = db.conn.execute(
        f"SELECT id, source, location, reason, detail, received_at, payload FROM quarantine {where}"
        " ORDER BY id LIMIT ?",
        parameters,
    ).fetchall()
    if as_json:
        for row in rows:
            record = dict(zip(("id", "source", "location", "reason", "detail", "received_at", "payload"), row))
            record["received_at"] = format_ms(record["received_at"])
            click.echo(json.dumps(record))
        return
    for name, count in quarantine_counts(db.conn).items():
        click.echo(f"{name:<20} {count:>8}  {REASONS.get(name, '')}")
    for row in rows:
        click.echo(f"\n#{row[0]} {row[3]}: {row[4]}\n  from {row[2]}\n  {row[6][:200]}")


def _register_extra_commands() -> None:
    """Add the command groups that live in modules of their own (`console.commands.*`)."""
    import importlib
    import pkgutil

    import console.commands
    from console.commands import COMMANDS

    # Importing a command module appends its commands to COMMANDS.
    for module in pkgutil.iter_modules(console.commands.__path__):
        importlib.import_module(f"console.commands.{module.name}")
    for command in COMMANDS:
        main.add_command(command)


_register_extra_commands()
