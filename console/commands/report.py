"""`segops report`: each segment's health with the performance and the outcome of its latest run.

The figures are those of the console's health screen, from `store.reports.health_rows`.
"""

from __future__ import annotations

import csv
import io
import json

import click

from console.commands import COMMANDS

FORMATS = ("table", "json", "csv", "markdown")
# Columns of the table and markdown formats: header, and whether the values are numbers (right-aligned).
TEXT_COLUMNS = (
    ("Segment", False), ("Population", True), ("Δ 24h", True), ("Δ 7d", True), ("Latest run", False),
    ("Sent", True), ("Delivered", True), ("Open rate", True), ("CTA", True), ("Outcome", False),
    ("Treated", True), ("Held out", True), ("Difference [95% CI]", False), ("Snapshot", False),
)


@click.command()
@click.option("--segment", "segment_name", help='Only this segment ("Power Users" or power-users).')
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format. json keeps every figure; csv has one flat row per segment.")
@click.pass_obj
def report(globals_, segment_name: str | None, output_format: str) -> None:
    """Show each segment's population, changes over 24 hours and 7 days, and freshness.

    With them comes the latest run of the segment's playbooks: sent, delivered, open rate and CTA
    completion, and the outcome rate of treated against held-out users, with the difference and
    its 95% confidence interval."""
    from console.cli import _open
    from store import segments as seg
    from store.reports import health_rows
    from store.timeparse import now_ms

    names = None
    if segment_name is not None:
        definition = seg.find_segment(segment_name)
        if definition is None:
            known = ", ".join(d.name for d in seg.ALL_SEGMENTS)
            raise click.BadParameter(f"unknown segment {segment_name!r}; segments: {known}", param_hint="--segment")
        names = [definition.name]

    config = globals_.config
    db = _open(globals_)
    rows = health_rows(db.conn, config.settings, config.reporting, now=now_ms(),
                       stale_after_ms=int(config.stale_after * 1000), segments=names)
    if output_format == "json":
        click.echo(json.dumps([_json_record(row) for row in rows], indent=2, ensure_ascii=False))
    elif output_format == "csv":
        click.echo(_csv(rows), nl=False)
    elif output_format == "markdown":
        click.echo(_markdown([_cells(row) for row in rows]))
    else:
        click.echo(_table([_cells(row) for row in rows]))


def _json_record(row) -> dict:
    from store.timeparse import format_ms

    record = row.as_dict()
    record["snapshot_at"] = format_ms(row.snapshot_at) or None
    latest = record["latest"]
    if latest is not None:
        latest["run"]["created_at"] = format_ms(row.latest.run.created_at)
        outcome = latest["outcome"]
        outcome["window_open_until"] = format_ms(outcome["window_open_until"]) or None
    return record


def _flat_record(row) -> dict:
    """Return a row as one level of columns, for CSV: rates as fractions, differences in points."""
    from store.timeparse import format_ms

    record = {
        "segment": row.segment, "kind": row.kind, "entity": row.entity, "population": row.population,
        "change_24h": row.change_24h, "change_7d": row.change_7d,
        "snapshot_at": format_ms(row.snapshot_at), "stale": row.stale,
    }
    latest = row.latest
    run = latest.run if latest else None
    performance = latest.performance if latest else None
    outcome = latest.outcome if latest else None
    record.update({
        "run_id": run.id if run else None,
        "playbook": run.playbook if run else None,
        "run_at": format_ms(run.created_at) if run else None,
        "sent": performance.sent if performance else None,
        "delivered": performance.delivered if performance else None,
        "opened": performance.opened if performance else None,
        "clicked": performance.clicked if performance else None,
        "cta_completed": performance.cta_completed if performance else None,
        "open_rate": _round(performance.open_rate, 4) if performance else None,
        "cta_rate": _round(performance.cta_rate, 4) if performance else None,
        "outcome": outcome.outcome if outcome else None,
        "treated_users": outcome.treated.users if outcome else None,
        "treated_reached": outcome.treated.reached if outcome else None,
        "treated_rate": _round(outcome.treated.rate, 4) if outcome else None,
        "held_out_users": outcome.held_out.users if outcome else None,
        "held_out_reached": outcome.held_out.reached if outcome else None,
        "held_out_rate": _round(outcome.held_out.rate, 4) if outcome else None,
        "too_few_users": outcome.too_few_users if outcome else None,
        "difference_pp": _round(outcome.difference_pp, 2) if outcome else None,
        "ci_low_pp": _round(outcome.ci_pp[0], 2) if outcome and outcome.ci_pp else None,
        "ci_high_pp": _round(outcome.ci_pp[1], 2) if outcome and outcome.ci_pp else None,
        "window_open_until": format_ms(outcome.window_open_until) if outcome else None,
    })
    return record


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _csv(rows) -> str:
    records = [_flat_record(row) for row in rows]
    output = io.StringIO()
    writer = csv.DictWriter(output, fieldnames=list(records[0]) if records else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return output.getvalue()


def _cells(row) -> list[str]:
    """Return a row's cells for the table and markdown formats, in the order of TEXT_COLUMNS."""
    from store.reports import percent
    from store.timeparse import format_ms

    snapshot = format_ms(row.snapshot_at)[:16].replace("T", " ") or "none"
    cells = [row.segment, f"{row.population:,}", _change(row.change_24h), _change(row.change_7d)]
    latest = row.latest
    if latest is None:
        return cells + ["no run", "", "", "", "", "", "", "", "", snapshot + (" (stale)" if row.stale else "")]
    run, performance, outcome = latest.run, latest.performance, latest.outcome
    cells += [
        f"#{run.id} {run.playbook} {format_ms(run.created_at)[:16].replace('T', ' ')}",
        f"{performance.sent:,}", f"{performance.delivered:,}",
        percent(performance.open_rate), percent(performance.cta_rate),
        outcome.outcome, outcome.treated.describe(), outcome.held_out.describe(), _difference(outcome),
        snapshot + (" (stale)" if row.stale else ""),
    ]
    return cells


def _change(value: int | None) -> str:
    if value is None:
        return "–"
    return f"+{value:,}" if value > 0 else f"{value:,}"


def _difference(outcome) -> str:
    return outcome.describe_difference() + (" (window open)" if outcome.window_open_until is not None else "")


def _table(rows: list[list[str]]) -> str:
    headers = [header for header, _ in TEXT_COLUMNS]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    lines = []
    for cells in [headers, *rows]:
        lines.append("  ".join(
            cell.rjust(width) if numeric else cell.ljust(width)
            for cell, width, (_, numeric) in zip(cells, widths, TEXT_COLUMNS)
        ).rstrip())
    return "\n".join(lines)


def _markdown(rows: list[list[str]]) -> str:
    headers = [header for header, _ in TEXT_COLUMNS]
    rule = ["---:" if numeric else "---" for _, numeric in TEXT_COLUMNS]
    lines = [headers, rule, *([cell.replace("|", "\\|") for cell in cells] for cells in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


COMMANDS.append(report)
