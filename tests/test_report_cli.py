"""`segops report` on a real cache, the reporting configuration, and the demo's short windows."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from conftest import Messages, days
from test_reports import make_playbook, split_users, start_run

import console.cli
from console.cli import main
from console.config import load_config
from store import segments as seg
from store.db import open_cache
from store.memberships import refresh
from store.reports import OutcomeRule, newcombe_interval
from store.settings import DAY_MS, Settings
from store.timeparse import now_ms

# A default playbook, so that a configuration file can give it an outcome.
PLAYBOOK_ID = "first-project-guidance"


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    """Build a cache with times relative to now, because the command reports at the current time.

    70 users signed up 3 days ago. A run of the Not-Yet-Activated playbook 2 days ago has 40
    treated and 30 held-out users. Every treated user got the email, 10 opened it, 4 clicked, and
    20 activated since."""
    path = tmp_path_factory.mktemp("report") / "cache.db"
    now = now_ms()
    playbook = make_playbook(PLAYBOOK_ID)
    treated, held = split_users(playbook, 40, 30)
    db = open_cache(path)
    messages = Messages()
    for user in treated + held:
        messages.track(user, "Signed Up", now - days(3))
    messages.ingest(db)
    refresh(db, Settings(), now - days(2))
    run = start_run(db, playbook, treated + held, now - days(2))

    # The same builder numbers the next messages on, so their messageIds are new.
    messages.items.clear()
    for user in treated:
        messages.track(user, "Email Delivered", now - days(2) + 60_000, run_id=run.id)
    for user in treated[:10]:
        messages.track(user, "Email Opened", now - days(2) + 120_000, run_id=run.id)
    for user in treated[:4]:
        messages.track(user, "Email Link Clicked", now - days(2) + 180_000, run_id=run.id)
    for user in treated[:20]:
        messages.track(user, "Project Created", now - days(1))
    messages.ingest(db)
    refresh(db, Settings(), now)
    db.conn.close()
    return path


def run_report(cache_path, *arguments, config=None):
    options = ["--cache", str(cache_path)] + (["--config", str(config)] if config else [])
    return CliRunner().invoke(main, [*options, "report", *arguments], catch_exceptions=False)


def test_json_has_every_figure(cache_path):
    result = run_report(cache_path, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["segment"]: row for row in json.loads(result.output)}
    assert list(rows) == [definition.name for definition in seg.ALL_SEGMENTS]

    nya = rows[seg.NOT_YET_ACTIVATED]
    assert nya["population"] == 50
    assert nya["stale"] is False
    assert nya["latest"]["run"]["playbook"] == PLAYBOOK_ID
    performance = nya["latest"]["performance"]
    assert performance["sent"] == 40
    assert performance["delivered"] == 40
    assert performance["open_rate"] == pytest.approx(0.25)
    assert performance["cta_rate"] == pytest.approx(0.1)
    outcome = nya["latest"]["outcome"]
    assert outcome["treated"] == {"users": 40, "reached": 20, "rate": 0.5}
    assert outcome["held_out"] == {"users": 30, "reached": 0, "rate": 0.0}
    assert outcome["difference_pp"] == pytest.approx(50.0)
    _, low, high = newcombe_interval(20, 40, 0, 30)
    assert outcome["ci_95_pp"] == pytest.approx([100 * low, 100 * high])
    assert outcome["window_open_until"].endswith("Z")
    assert rows[seg.POWER_USERS]["latest"] is None


def test_csv_has_one_flat_row_per_segment(cache_path):
    result = run_report(cache_path, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = {row["segment"]: row for row in csv.DictReader(io.StringIO(result.output))}
    assert len(rows) == len(seg.ALL_SEGMENTS)
    nya = rows[seg.NOT_YET_ACTIVATED]
    assert nya["delivered"] == "40"
    assert nya["treated_rate"] == "0.5"
    assert nya["difference_pp"] == "50.0"
    assert float(nya["ci_low_pp"]) < 50 < float(nya["ci_high_pp"])
    assert rows[seg.CHURNED]["run_id"] == ""


def test_table_shows_rates_and_interval(cache_path):
    result = run_report(cache_path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Segment")
    assert "Difference [95% CI]" in lines[0]
    nya = next(line for line in lines if line.startswith(seg.NOT_YET_ACTIVATED))
    _, low, high = newcombe_interval(20, 40, 0, 30)
    assert f"+50.0 pp [{100 * low:+.1f}, {100 * high:+.1f}] (window open)" in nya
    assert "50.0% (20/40)" in nya
    assert "0.0% (0/30)" in nya
    assert "25.0%" in nya
    assert f"#1 {PLAYBOOK_ID}" in nya
    assert "no run" in next(line for line in lines if line.startswith(seg.CHURNED))


def test_markdown_table(cache_path):
    result = run_report(cache_path, "--format", "markdown", "--segment", "not-yet-activated")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("| Segment | Population |")
    assert lines[1].startswith("| --- | ---: |")
    assert lines[2].startswith(f"| {seg.NOT_YET_ACTIVATED} | 50 |")


def test_unknown_segment_is_rejected(cache_path):
    result = run_report(cache_path, "--segment", "nobody")
    assert result.exit_code == 2
    assert "unknown segment 'nobody'" in result.output


def test_configured_minimum_and_outcome(cache_path, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        "[reporting]\nmin_users_per_arm = 41\n"
        f"[playbooks.{PLAYBOOK_ID}]\noutcome = {{ kind = \"activated\", to_days = 0.5 }}\n",
        encoding="utf-8",
    )
    result = run_report(cache_path, "--segment", seg.NOT_YET_ACTIVATED, config=config)
    assert result.exit_code == 0, result.output
    assert "too few users" in result.output
    assert "activated (Project Created) within 12 hours" in result.output
    assert "0.0% (0/40)" in result.output


def test_config_reads_reporting_and_outcomes(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[reporting]\ncta_event = "Trial Started"\ncta_window_days = 2\n'
        f"[playbooks.{PLAYBOOK_ID}]\noutcome = {{ kind = \"active_in_days\", from_days = 7, to_days = 21 }}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.reporting.cta_event == "Trial Started"
    assert config.reporting.cta_window_ms == 2 * DAY_MS
    assert config.reporting.min_users_per_arm == 30
    assert config.reporting.outcomes == {PLAYBOOK_ID: OutcomeRule("active_in_days", 7 * DAY_MS, 21 * DAY_MS)}
    assert config.playbooks[PLAYBOOK_ID].segment == seg.NOT_YET_ACTIVATED


@pytest.mark.parametrize(("text", "message"), [
    ("[reporting]\nwindow = 3\n", "unknown key reporting.window"),
    (f'[playbooks.{PLAYBOOK_ID}]\noutcome = {{ kind = "sales" }}\n', f"playbooks.{PLAYBOOK_ID}.outcome.kind"),
])
def test_invalid_reporting_config_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(path), "--cache", str(tmp_path / "c.db"), "report"])
    assert result.exit_code == 1
    assert str(path) in result.output
    assert message in result.output


def test_demo_reports_on_minute_windows(tmp_path, monkeypatch):
    seen = {}

    def capture(globals_, config, *arguments, **options):
        seen["reporting"] = config.reporting
        seen["config"] = config

    monkeypatch.setattr(console.cli, "_run_console", capture)
    result = CliRunner().invoke(main, ["--cache", str(tmp_path / "demo.db"), "demo", "--users", "5"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    reporting = seen["reporting"]
    assert reporting.cta_window_ms == 10 * 60_000
    rule = reporting.outcome_for("reengagement-sequence", seg.ACTIVATED_NOT_RETAINED, Settings().taxonomy)
    assert (rule.from_ms, rule.to_ms) == (0, 10 * 60_000)
    # The demo destination sends actions to the demo CDP that the console syncs from.
    assert seen["config"].source_url.startswith("http://127.0.0.1:")
    assert seen["config"].write_key == "demo"
