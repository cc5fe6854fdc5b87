"""Playbooks: the catalog in the configuration, planning and recording runs, automatic runs, and
the trigger, playbooks and actions commands, on a real cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib

import orjson
import pytest
from click.testing import CliRunner
from conftest import T, days

from console.cli import main
from console.config import ConfigError, default_toml, load_config, parse_config
from console.playbooks import ReadOnlyError, plan, trigger
from console.playbooks.automatic import queue_entries
from console.playbooks.catalog import Playbook, Step
from store import runs
from store import segments as seg
from store.memberships import refresh
from store.runs import RunError, Target
from store.timeparse import format_ms, now_ms

LIFECYCLE_TONES = {
    "Churned": "acknowledging, value-reiterating",
    "At-Risk": "concerned, helpful",
    "Champion": "celebratory, exclusive",
    "New": "welcoming, educational",
    "Established": "informative, inspiring",
}


def make_playbook(**changes) -> Playbook:
    values = dict(
        id="test-playbook", name="Test", segment=seg.NOT_YET_ACTIVATED, description="", tone="",
        steps=(Step("email", "demo", "email-a"), Step("in_app", "demo", "inapp-b", delay_minutes=60)),
        holdout_share=0.10, cooldown_days=7, exclude_segments=(seg.CHURNED,),
    )
    values.update(changes)
    return Playbook(**values)


def company(messages, at: int = T):
    """Build the test company. Not-yet-activated users n00-n39 are at account acme (n00-n19) or
    globex. gone is activated and Churned, idle is activated and idle for 20 days, and account
    small (s1-s3) is at its seat limit."""
    for index in range(40):
        user = f"n{index:02d}"
        messages.identify(user, at - days(3), email=f"{user}@example.com")
        messages.track(user, "Signed Up", at - days(3))
        messages.group(user, "acme" if index < 20 else "globex", at - days(3), plan="growth")
    messages.track("gone", "Signed Up", at - days(120))
    messages.track("gone", "Project Created", at - days(119))
    messages.track("idle", "Signed Up", at - days(60))
    messages.track("idle", "Project Created", at - days(59))
    messages.track("idle", "Task Created", at - days(20))
    for index, user in enumerate(("s1", "s2", "s3")):
        messages.track(user, "Signed Up", at - days(10))
        messages.track(user, "Project Created", at - days(9))
        messages.track(user, "Task Created", at - days(1) - index)
        messages.group(user, "small", at - days(10), plan="free")


@pytest.fixture
def cached(cache, messages):
    company(messages)
    messages.ingest(cache)
    refresh(cache, load_config(None).settings, T)
    return cache


# --- the catalog ---------------------------------------------------------------------------------


def test_defaults_cover_each_seed_segment():
    config = load_config(None)
    by_segment = {playbook.segment: playbook for playbook in config.playbooks.values()}
    assert len(config.playbooks) == 10
    assert set(by_segment) == {definition.name for definition in seg.ALL_SEGMENTS} - {seg.UNSTAGED}
    for name, tone in LIFECYCLE_TONES.items():
        assert by_segment[name].tone == tone
    for playbook in config.playbooks.values():
        assert playbook.on_entry is False
        assert playbook.holdout_share == 0.10
        assert playbook.steps
        assert playbook.description
        assert all(step.destination == "demo" for step in playbook.steps)
    assert config.destinations["demo"].type == "demo"


def test_default_catalog_round_trips():
    defaults = load_config(None)
    parsed = parse_config(tomllib.loads(default_toml()), "default.toml")
    assert parsed.playbooks == defaults.playbooks
    assert parsed.destinations == defaults.destinations
    assert parsed.dispatch == defaults.dispatch
    assert parsed.read_only is False


def test_file_changes_one_key_of_a_default():
    config = parse_config({"playbooks": {"churned-winback": {"on_entry": True, "holdout_share": 0.2}}}, "c.toml")
    playbook = config.playbooks["churned-winback"]
    assert playbook.on_entry is True
    assert playbook.holdout_share == 0.2
    assert playbook.tone == LIFECYCLE_TONES["Churned"]
    assert len(config.playbooks) == 10


def test_file_adds_playbook_and_destination():
    config = parse_config({
        "destinations": {"braze": {"type": "braze", "rest_endpoint": "https://rest.iad-01.braze.com",
                                   "api_key_env": "BRAZE_API_KEY"}},
        "playbooks": {"vip": {"segment": "power-users", "exclude_segments": ["churned"],
                              "steps": [{"channel": "email", "destination": "braze", "content": "cmp-1"}]}},
    }, "c.toml")
    playbook = config.playbooks["vip"]
    assert playbook.segment == "Power Users"
    assert playbook.exclude_segments == ("Churned",)
    assert playbook.name == "vip"
    assert playbook.steps == (Step("email", "braze", "cmp-1", 0),)
    assert config.destinations["braze"].secrets["api_key"].env == "BRAZE_API_KEY"


@pytest.mark.parametrize("data, key", [
    ({"playbooks": {"x": {"segment": "Whales", "steps": [{"channel": "email", "destination": "demo",
                                                          "content": "c"}]}}}, "playbooks.x.segment"),
    ({"playbooks": {"x": {"segment": "New"}}}, "playbooks.x.steps"),
    ({"playbooks": {"new-user-welcome": {"holdout_share": 1.0}}}, "playbooks.new-user-welcome.holdout_share"),
    ({"playbooks": {"new-user-welcome": {"cooldown_days": -1}}}, "playbooks.new-user-welcome.cooldown_days"),
    ({"playbooks": {"new-user-welcome": {"colour": "red"}}}, "playbooks.new-user-welcome.colour"),
    ({"playbooks": {"new-user-welcome": {"exclude_segments": ["Whales"]}}},
     "playbooks.new-user-welcome.exclude_segments[0]"),
    ({"playbooks": {"x": {"segment": "New", "steps": [{"channel": "sms", "destination": "demo", "content": "c"}]}}},
     "playbooks.x.steps[0].channel"),
    ({"playbooks": {"x": {"segment": "New", "steps": [{"channel": "email", "destination": "nope", "content": "c"}]}}},
     "playbooks.x.steps[0].destination"),
    ({"playbooks": {"x": {"segment": "New", "steps": [{"channel": "email", "destination": "demo"}]}}},
     "playbooks.x.steps[0].content"),
    ({"destinations": {"hook": {"type": "pigeon"}}}, "destinations.hook.type"),
    ({"destinations": {"hook": {"type": "webhook", "url": "https://example.com/h"}}}, "destinations.hook"),
    ({"destinations": {"hook": {"type": "webhook", "url": "ftp://x", "secret_env": "S"}}}, "destinations.hook.url"),
    ({"destinations": {"b": {"type": "braze", "api_key_env": "with space", "rest_endpoint": "https://r.example"}}},
     "destinations.b.api_key_env"),
    ({"destinations": {"i": {"type": "iterable", "api_key_env": "K"}},
      "playbooks": {"x": {"segment": "New", "steps": [{"channel": "email", "destination": "i", "content": "abc"}]}}},
     "playbooks.x.steps[0].content"),
    ({"operator": {"read_only": "yes"}}, "operator.read_only"),
    ({"dispatch": {"max_attempts": 0}}, "dispatch.max_attempts"),
    ({"dispatch": {"claim_timeout_seconds": 5.0}}, "dispatch.claim_timeout_seconds"),
])
def test_invalid_catalog_names_the_key(data, key):
    with pytest.raises(ConfigError) as raised:
        parse_config(data, "c.toml")
    assert key in str(raised.value)
    assert str(raised.value).startswith("c.toml: ")


def test_secret_from_environment_first():
    config = parse_config({"destinations": {"seg": {"type": "segment", "write_key_env": "SEG_KEY",
                                                    "write_key": "literal-key"}}}, "c.toml")
    destination = config.destinations["seg"]
    assert destination.secret("write_key", {"SEG_KEY": "from-env"}) == "from-env"
    assert destination.secret("write_key", {}) == "literal-key"
    assert destination.secret("write_key", {"SEG_KEY": ""}) == "literal-key"
    assert destination.field_value("url") == "https://api.segment.io"


# --- holdout -------------------------------------------------------------------------------------


def test_holdout_is_stable_and_near_share():
    users = [f"user-{index}" for index in range(4000)]
    held = [user for user in users if runs.is_held_out("p", user, 0.10)]
    assert held == [user for user in users if runs.is_held_out("p", user, 0.10)]
    assert 0.08 < len(held) / len(users) < 0.12
    # The fraction comes from SHA-256, not from Python's per-process hash(), so it is the same
    # in every process.
    digest = hashlib.sha256(b"first-project-guidance\nuser_00001").digest()
    expected = int.from_bytes(digest[:8], "big") / 2**64
    assert runs.holdout_fraction("first-project-guidance", "user_00001") == expected


def test_holdout_differs_between_playbooks():
    users = [f"user-{index}" for index in range(2000)]
    first = {user for user in users if runs.is_held_out("a", user, 0.5)}
    second = {user for user in users if runs.is_held_out("b", user, 0.5)}
    assert first != second
    assert not any(runs.is_held_out("a", user, 0.0) for user in users)


def test_idempotency_keys_are_ulids():
    keys = {runs.new_idempotency_key(T) for _ in range(1000)}
    assert len(keys) == 1000
    assert all(len(key) == 26 and key.isalnum() and key.isupper() for key in keys)
    assert runs.new_idempotency_key(T) < runs.new_idempotency_key(T + 1)


# --- planning and recording runs -----------------------------------------------------------------


def test_plan_writes_nothing(cached):
    before = cached.conn.execute("SELECT total_changes()").fetchone()[0]
    result = runs.plan_run(cached, make_playbook(), Target("segment", "not-yet-activated"), now=T, preview_limit=5)
    assert cached.conn.execute("SELECT total_changes()").fetchone()[0] == before
    assert cached.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert result.target == Target("segment", seg.NOT_YET_ACTIVATED)
    assert result.counts.targeted == 40
    assert result.counts.held_out + result.counts.queued == 40
    assert [recipient.user_id for recipient in result.preview] == ["n00", "n01", "n02", "n03", "n04"]
    assert result.preview[0].email == "n00@example.com"
    assert result.preview[0].account_id == "acme"
    assert set(result.decisions) == {f"n{index:02d}" for index in range(40)}


def test_create_run_queues_actions(cached):
    playbook = make_playbook()
    run = runs.create_run(cached, playbook, Target("segment", "Not-Yet-Activated"), operator="alice", now=T,
                          notice_destinations=["demo"])
    counts = run.counts
    assert (run.operator, run.created_at, run.dry_run) == ("alice", T, False)
    assert counts.targeted == 40
    assert counts.held_out == sum(runs.is_held_out(playbook.id, f"n{i:02d}", 0.10) for i in range(40))
    assert counts.queued == 40 - counts.held_out

    actions = runs.list_actions(cached, run_id=run.id, limit=1000)
    assert len(actions) == 40 * 2
    assert len({action.idempotency_key for action in actions}) == 80
    treated = [action for action in actions if not action.held_out]
    assert {action.status for action in treated} == {"queued"}
    assert {action.due_at - T for action in treated if action.step == 1} == {60 * 60_000}
    assert all(action.next_attempt_at == action.due_at for action in treated)
    held = [action for action in actions if action.held_out]
    assert {action.status for action in held} == {"held_out"}
    # Held-out users are announced once, on the first step to a destination that takes notices.
    assert {(action.step, action.notice) for action in held} == {(0, "queued"), (1, None)}
    assert runs.get_run(cached, run.id) == run


def test_dry_run_records_counts_only(cached):
    run = runs.create_run(cached, make_playbook(), Target("segment", "Not-Yet-Activated"), operator="alice",
                          now=T, dry_run=True)
    assert run.dry_run
    assert run.counts.targeted == 40
    assert runs.list_actions(cached, run_id=run.id) == []
    assert runs.list_runs(cached)[0].dry_run is True


def test_cooldown_excludes_recent_users(cached):
    playbook = make_playbook(holdout_share=0.0)
    runs.create_run(cached, playbook, Target("user", "n01"), operator="a", now=T)
    second = runs.create_run(cached, playbook, Target("account", "acme"), operator="a", now=T + days(6.9))
    assert second.counts.excluded_cooldown == 1
    assert second.counts.queued == 19

    after = runs.plan_run(cached, playbook, Target("user", "n01"), now=T + days(7))
    assert after.counts.queued == 1


def test_cooldown_ignores_failed_actions(cached):
    playbook = make_playbook(holdout_share=0.0, steps=(Step("email", "demo", "e"),))
    run = runs.create_run(cached, playbook, Target("user", "n01"), operator="a", now=T)
    cached.conn.execute("UPDATE actions SET status = 'failed' WHERE run_id = ?", (run.id,))
    assert runs.plan_run(cached, playbook, Target("user", "n01"), now=T + 1).counts.queued == 1


def test_exclusion_by_current_membership(cached):
    playbook = make_playbook(segment=seg.ACTIVATED_NOT_RETAINED, holdout_share=0.0)
    result = runs.plan_run(cached, playbook, Target("segment", seg.ACTIVATED_NOT_RETAINED), now=T)
    # gone is idle for 119 days: in Activated-Not-Retained and in Churned, so excluded by rule.
    assert result.decisions == {"gone": "excluded_rule", "idle": "queued"}
    assert result.counts.excluded_rule == 1


def test_account_target_users_or_contact(cached):
    user_playbook = make_playbook()
    account_playbook = make_playbook(id="upgrade", segment=seg.EXPANSION_READY, exclude_segments=())
    assert runs.plan_run(cached, user_playbook, Target("account", "globex"), now=T).counts.targeted == 20
    contact = runs.plan_run(cached, account_playbook, Target("account", "small"), now=T)
    # The contact is the account's user with the highest usage score: s1, active most recently.
    assert list(contact.decisions) == ["s1"]
    segment = runs.plan_run(cached, account_playbook, Target("segment", seg.EXPANSION_READY), now=T)
    assert set(segment.decisions) == {"s1"}


@pytest.mark.parametrize("target, message", [
    (Target("user", "nobody"), "no user 'nobody'"),
    (Target("account", "nowhere"), "no account 'nowhere'"),
    (Target("segment", "Whales"), "unknown segment 'Whales'"),
])
def test_unknown_target_is_clear(cached, target, message):
    with pytest.raises(RunError) as raised:
        runs.plan_run(cached, make_playbook(), target, now=T)
    assert message in str(raised.value)


def test_invalid_target_kind():
    with pytest.raises(RunError):
        Target("team", "x")


def test_unevaluated_cache_warns(cache):
    result = runs.plan_run(cache, make_playbook(), Target("segment", "New"), now=T)
    assert result.counts.targeted == 0
    assert any("not been evaluated" in warning for warning in result.warnings)


def test_read_only_refuses_trigger(cached):
    config = dataclasses.replace(load_config(None), read_only=True)
    playbook = config.playbooks["first-project-guidance"]
    with pytest.raises(ReadOnlyError):
        trigger(cached, config, playbook, Target("user", "n01"), now=T)
    assert plan(cached, playbook, Target("user", "n01"), now=T).counts.targeted == 1
    assert runs.list_runs(cached) == []


# --- automatic playbooks -------------------------------------------------------------------------


def automatic_config(**playbook_changes):
    data = {"playbooks": {"new-user-welcome": {"on_entry": True, "holdout_share": 0.0, **playbook_changes}}}
    return parse_config(data, "automatic.toml")


def enter_new_users(cache, messages, count: int, at: int) -> None:
    for index in range(count):
        messages.track(f"late{index}", "Signed Up", at - 60_000)
    messages.ingest(cache)
    refresh(cache, load_config(None).settings, at)


def test_entries_queue_once(cached, messages):
    config = automatic_config()
    enter_new_users(cached, messages, 3, T + days(1))

    created = queue_entries(cached, config, T, now=T + days(1))
    again = queue_entries(cached, config, T, now=T + days(1))

    assert len(created) == 1
    run = created[0]
    assert (run.playbook, run.operator, run.target_kind, run.target_id) == (
        "new-user-welcome", "automatic", "segment", "New")
    assert run.counts.queued == 3
    assert {action.user_id for action in runs.list_actions(cached, run_id=run.id)} == {"late0", "late1", "late2"}
    assert again == []


def test_entries_ignored_when_off_stale_or_paused(cached, messages):
    enter_new_users(cached, messages, 2, T + days(1))
    assert queue_entries(cached, load_config(None), T) == []
    assert queue_entries(cached, automatic_config(), T, stale=True) == []
    assert queue_entries(cached, dataclasses.replace(automatic_config(), read_only=True), T) == []

    runs.set_automatic_paused(cached, True, operator="alice", now=T)
    assert queue_entries(cached, automatic_config(), T) == []
    runs.set_automatic_paused(cached, False, operator="alice", now=T)
    assert len(queue_entries(cached, automatic_config(), T)) == 1
    events = [entry["event"] for entry in runs.list_audit(cached)]
    assert events == ["automatic_resumed", "automatic_paused"]


def test_entries_respect_cooldown_and_since(cached, messages):
    config = automatic_config()
    enter_new_users(cached, messages, 2, T + days(1))
    manual = config.playbooks["new-user-welcome"]
    runs.create_run(cached, manual, Target("user", "late0"), operator="alice", now=T + days(1))

    assert queue_entries(cached, config, T + days(2)) == []
    run = queue_entries(cached, config, T, now=T + days(1))[0]
    assert run.counts.excluded_cooldown == 1
    assert run.counts.queued == 1


# --- the commands --------------------------------------------------------------------------------


def write_company(tmp_path):
    """A cache file with the company at the current time, and a configuration naming an operator."""
    now = now_ms()

    class Collect:
        def __init__(self):
            self.items = []

        def add(self, message):
            self.items.append(message)

        def track(self, user, event, at, **properties):
            self.add({"type": "track", "userId": user, "event": event, "timestamp": format_ms(at),
                      "properties": properties})

        def identify(self, user, at, **traits):
            self.add({"type": "identify", "userId": user, "traits": traits, "timestamp": format_ms(at)})

        def group(self, user, account, at, **traits):
            self.add({"type": "group", "userId": user, "groupId": account, "traits": traits,
                      "timestamp": format_ms(at)})

    collected = Collect()
    company(collected, now)
    path = tmp_path / "company.ndjson"
    path.write_text("".join(orjson.dumps(message).decode() + "\n" for message in collected.items), encoding="utf-8")
    config = tmp_path / "c.toml"
    config.write_text('[operator]\nname = "ops-alice"\n', encoding="utf-8")
    cache = tmp_path / "c.db"
    result = CliRunner().invoke(main, ["--cache", str(cache), "import", str(path)])
    assert result.exit_code == 0, result.output
    return cache, config


def segops(cache, config, *args, input=None):
    return CliRunner().invoke(main, ["--cache", str(cache), "--config", str(config), *args], input=input)


def test_trigger_json_counts(tmp_path):
    cache, config = write_company(tmp_path)
    result = segops(cache, config, "trigger", "first-project-guidance", "--segment", "not-yet-activated",
                    "--yes", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["targeted"] == 40
    assert record["held_out"] + record["excluded"] + record["queued"] == 40
    assert record["operator"] == "ops-alice"
    assert record["actions_queued"] == record["queued"] * 3
    assert {"run_id", "targeted", "held_out", "excluded", "queued"} <= set(record)


def test_trigger_without_terminal_refuses(tmp_path):
    cache, config = write_company(tmp_path)
    result = segops(cache, config, "trigger", "first-project-guidance", "--user", "n01")
    assert result.exit_code == 1
    assert "--yes" in result.output
    assert "Traceback" not in result.output
    listed = json.loads(segops(cache, config, "actions", "--json").output)
    assert listed == []


@pytest.mark.parametrize("reply, runs_recorded", [("y\n", 1), ("n\n", 0)])
def test_trigger_asks_on_terminal(tmp_path, monkeypatch, reply, runs_recorded):
    cache, config = write_company(tmp_path)
    monkeypatch.setattr("console.commands.playbooks._stdin_is_terminal", lambda: True)
    result = segops(cache, config, "trigger", "first-project-guidance", "--account", "acme", input=reply)
    assert "first-project-guidance on account acme: 20 targeted" in result.output
    assert "n00@example.com" in result.output
    assert "Queue the actions for" in result.output
    assert result.exit_code == (0 if runs_recorded else 1)
    assert len(json.loads(segops(cache, config, "actions", "--json").output)) == runs_recorded


def test_trigger_dry_run_needs_no_confirmation(tmp_path):
    cache, config = write_company(tmp_path)
    result = segops(cache, config, "trigger", "first-project-guidance", "--user", "n01", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dry_run"] is True


@pytest.mark.parametrize("args, message", [
    (["trigger", "first-project-guidance"], "exactly one target"),
    (["trigger", "first-project-guidance", "--user", "n01", "--account", "acme"], "exactly one target"),
    (["trigger", "no-such-playbook", "--user", "n01", "--yes"], "unknown playbook"),
    (["trigger", "first-project-guidance", "--user", "nobody", "--yes"], "no user 'nobody'"),
])
def test_trigger_usage_errors(tmp_path, args, message):
    cache, config = write_company(tmp_path)
    result = segops(cache, config, *args)
    assert result.exit_code != 0
    assert message in result.output


def test_read_only_commands_refuse(tmp_path):
    cache, config = write_company(tmp_path)
    config.write_text('[operator]\nread_only = true\n', encoding="utf-8")
    for args in (["trigger", "first-project-guidance", "--user", "n01", "--yes"], ["dispatch", "--once"]):
        result = segops(cache, config, *args)
        assert result.exit_code == 1
        assert "read-only mode" in result.output


def test_playbooks_json(tmp_path):
    cache, config = write_company(tmp_path)
    records = json.loads(segops(cache, config, "playbooks", "--json").output)
    assert len(records) == 10
    first = next(record for record in records if record["id"] == "first-project-guidance")
    assert first["segment"] == "Not-Yet-Activated"
    assert first["steps"][2]["delay_minutes"] == 2880
    assert "segment Not-Yet-Activated" in segops(cache, config, "playbooks").output


def test_actions_audit_log(tmp_path):
    cache, config = write_company(tmp_path)
    segops(cache, config, "trigger", "feature-discovery", "--account", "small", "--yes")
    segops(cache, config, "trigger", "first-project-guidance", "--user", "n01", "--dry-run")

    listed = json.loads(segops(cache, config, "actions", "--json").output)
    assert [record["dry_run"] for record in listed] == [True, False]
    real = listed[1]
    assert real["operator"] == "ops-alice"
    assert (real["target_kind"], real["target_id"], real["playbook"]) == ("account", "small", "feature-discovery")
    assert real["counts"]["targeted"] == 3
    assert sum(real["results"].values()) == (real["counts"]["queued"] + real["counts"]["held_out"]) * 2

    one = json.loads(segops(cache, config, "actions", "--run", str(real["id"]), "--json").output)
    assert len(one["actions"]) == sum(real["results"].values())
    assert one["actions"][0]["attempts"] == []
    text = segops(cache, config, "actions").output
    assert "ops-alice" in text
    assert "(dry run)" in text


def test_info_masks_destination_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_BRAZE_KEY", "braze-secret-key-123456")
    config = tmp_path / "c.toml"
    config.write_text(
        '[destinations.braze]\ntype = "braze"\nrest_endpoint = "https://rest.iad-01.braze.com"\n'
        'api_key_env = "TEST_BRAZE_KEY"\n'
        '[destinations.cs]\ntype = "slack"\nurl = "https://hooks.slack.com/services/T0/B0/secretpath"\n',
        encoding="utf-8",
    )
    result = segops(tmp_path / "c.db", config, "info")
    assert result.exit_code == 0, result.output
    assert "braze-secret-key-123456" not in result.output
    assert "secretpath" not in result.output
    assert "br****56 (from environment variable TEST_BRAZE_KEY)" in result.output
    assert "https://hooks.slack.com/****" in result.output
    assert "destination    demo: demo" in result.output


def test_list_actions_newest_first_pages_down(cache):
    from store.runs import list_actions

    cache.conn.executescript(
        "INSERT INTO runs (id, playbook, segment, operator, target_kind, target_id, created_at, dry_run,"
        " targeted, held_out, excluded_cooldown, excluded_rule, queued)"
        " VALUES (1, 'p', 'New', 'op', 'user', 'u', 0, 0, 1, 0, 0, 0, 1);"
    )
    for index in range(1, 6):
        cache.conn.execute(
            "INSERT INTO actions (id, run_id, playbook, user_id, step, channel, destination, content,"
            " idempotency_key, held_out, status, created_at, due_at)"
            " VALUES (?, 1, 'p', 'u', 0, 'email', 'demo', 'c', ?, 0, 'queued', ?, ?)",
            (index, f"key-{index}", index, index),
        )
    newest = list_actions(cache, user_id="u", limit=2, newest_first=True)
    assert [action.id for action in newest] == [5, 4]
    older = list_actions(cache, user_id="u", limit=2, newest_first=True, after_id=4)
    assert [action.id for action in older] == [3, 2]
    assert [action.id for action in list_actions(cache, user_id="u", limit=2)] == [1, 2]
