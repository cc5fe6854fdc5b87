"""The command line on real files and a real cache."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, REALDATA

from console.cli import main

AS_OF = "2026-06-15T12:00:00Z"


def invoke(cache_path, *args):
    runner = CliRunner()
    return runner.invoke(main, ["--cache", str(cache_path), *args], catch_exceptions=False)


def write_ndjson(path, messages):
    path.write_text("".join(orjson.dumps(message).decode() + "\n" for message in messages), encoding="utf-8")
    return path


def company(tmp_path):
    return write_ndjson(tmp_path / "company.ndjson", [
        {"type": "track", "userId": "new-user", "event": "Signed Up", "timestamp": "2026-06-10T00:00:00Z"},
        {"type": "track", "userId": "quiet", "event": "Signed Up", "timestamp": "2026-03-01T00:00:00Z"},
        {"type": "track", "userId": "quiet", "event": "Project Created", "timestamp": "2026-03-02T00:00:00Z"},
        {"type": "track", "userId": "quiet", "event": "Task Created", "timestamp": "2026-05-20T00:00:00Z"},
        {"type": "group", "userId": "quiet", "groupId": "acme", "traits": {"plan": "free", "projects_used": 5},
         "timestamp": "2026-03-01T00:00:00Z"},
        {"type": "track", "userId": "gone", "event": "Subscription Cancelled", "timestamp": "2026-06-01T00:00:00Z"},
        {"type": "track", "event": "Broken"},
        "not an object",
    ])


def test_import_counts_json(tmp_path):
    result = invoke(tmp_path / "c.db", "import", str(company(tmp_path)), "--json")
    assert result.exit_code == 0
    counts = json.loads(result.output)
    assert counts["read"] == 8
    assert counts["stored"] == 6
    assert counts["duplicates"] == 0
    assert counts["quarantined"] == 2
    assert counts["reasons"] == {"missing_identity": 1, "not_an_object": 1}


def test_import_twice_counts_duplicates(tmp_path):
    path = company(tmp_path)
    invoke(tmp_path / "c.db", "import", str(path))
    counts = json.loads(invoke(tmp_path / "c.db", "import", str(path), "--json").output)
    # Messages without a messageId get a deterministic one, so a re-import stores nothing twice.
    assert counts["stored"] == 0
    assert counts["duplicates"] == 6


def test_import_table_output(tmp_path):
    result = invoke(tmp_path / "c.db", "import", str(company(tmp_path)))
    assert result.exit_code == 0
    assert "read         8" in result.output
    assert "missing_identity" in result.output


def test_import_gz_and_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    with gzip.open(folder / "a.ndjson.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": "page", "userId": "u1"}) + "\n")
    (folder / "b.json").write_text(json.dumps({"batch": [{"type": "page", "userId": "u2"}]}), encoding="utf-8")
    counts = json.loads(invoke(tmp_path / "c.db", "import", str(folder), "--json").output)
    assert counts["read"] == 2
    assert counts["stored"] == 2


def test_import_missing_file_is_clear(tmp_path):
    result = CliRunner().invoke(main, ["--cache", str(tmp_path / "c.db"), "import", str(tmp_path / "nope.ndjson")])
    assert result.exit_code != 0
    assert "nope.ndjson" in result.output
    assert "Traceback" not in result.output


def test_segments_json_as_of(tmp_path):
    invoke(tmp_path / "c.db", "import", str(company(tmp_path)))
    rows = json.loads(invoke(tmp_path / "c.db", "segments", "--json", "--as-of", AS_OF).output)
    by_name = {row["name"]: row for row in rows}
    assert len(rows) == 11
    assert by_name["New"]["population"] == 1
    assert by_name["Churned"]["population"] == 1
    assert by_name["Activated-Not-Retained"]["population"] == 1
    assert by_name["Account Expansion Ready"] == {
        "name": "Account Expansion Ready", "kind": "behavioral", "entity": "account", "population": 1}
    assert by_name["Champion"]["kind"] == "lifecycle"
    assert by_name["Champion"]["entity"] == "user"


def test_segments_as_of_replays_history(tmp_path):
    invoke(tmp_path / "c.db", "import", str(company(tmp_path)))
    rows = json.loads(invoke(tmp_path / "c.db", "segments", "--json", "--as-of", "2026-03-05T00:00:00Z").output)
    by_name = {row["name"]: row["population"] for row in rows}
    # Before the cancellation and before new-user's signup, only quiet existed: New and activated.
    assert by_name["New"] == 1
    assert by_name["Churned"] == 0


def test_members_json(tmp_path):
    invoke(tmp_path / "c.db", "import", str(company(tmp_path)))
    members = json.loads(invoke(tmp_path / "c.db", "members", "not-yet-activated", "--json", "--as-of", AS_OF).output)
    assert [member["id"] for member in members] == ["new-user"]
    accounts = json.loads(invoke(tmp_path / "c.db", "members", "Account Expansion Ready", "--json",
                                 "--as-of", AS_OF).output)
    assert [account["id"] for account in accounts] == ["acme"]


def test_members_limit_and_all(tmp_path):
    messages = [{"type": "page", "userId": f"u{index:03}", "timestamp": "2026-06-14T00:00:00Z"} for index in range(150)]
    invoke(tmp_path / "c.db", "import", str(write_ndjson(tmp_path / "many.ndjson", messages)))
    default = json.loads(invoke(tmp_path / "c.db", "members", "New", "--json", "--as-of", AS_OF).output)
    limited = json.loads(invoke(tmp_path / "c.db", "members", "New", "--json", "--as-of", AS_OF, "--limit", "7").output)
    everything = json.loads(invoke(tmp_path / "c.db", "members", "New", "--json", "--as-of", AS_OF, "--all").output)
    assert len(default) == 100
    assert len(limited) == 7
    assert len(everything) == 150


def test_members_unknown_segment(tmp_path):
    result = CliRunner().invoke(main, ["--cache", str(tmp_path / "c.db"), "members", "Whales"])
    assert result.exit_code == 2
    assert "unknown segment 'Whales'" in result.output
    assert "Power Users" in result.output


def test_bad_as_of_is_clear(tmp_path):
    result = CliRunner().invoke(main, ["--cache", str(tmp_path / "c.db"), "segments", "--as-of", "yesterday"])
    assert result.exit_code == 2
    assert "--as-of" in result.output


def test_explain_json(tmp_path):
    invoke(tmp_path / "c.db", "import", str(company(tmp_path)))
    verdicts = json.loads(invoke(tmp_path / "c.db", "explain", "quiet", "--json", "--as-of", AS_OF).output)
    assert verdicts["Activated-Not-Retained"]["member"] is True
    condition = verdicts["Activated-Not-Retained"]["conditions"][1]
    assert set(condition) == {"name", "value", "threshold", "passed"}
    assert verdicts["Churned"]["member"] is False


def test_invalid_config_names_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[thresholds]\npower_top_share = 'lots'\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "--cache", str(tmp_path / "c.db"), "info"])
    assert result.exit_code == 1
    assert "thresholds.power_top_share" in result.output


def test_config_changes_rules(tmp_path):
    invoke(tmp_path / "c.db", "import", str(company(tmp_path)))
    config = tmp_path / "c.toml"
    config.write_text("[thresholds]\nnew_days = 3\n", encoding="utf-8")
    rows = json.loads(CliRunner().invoke(
        main, ["--config", str(config), "--cache", str(tmp_path / "c.db"), "segments", "--json", "--as-of", AS_OF]
    ).output)
    assert {row["name"]: row["population"] for row in rows}["New"] == 0


def test_default_config_round_trips(tmp_path):
    text = invoke(tmp_path / "c.db", "config", "--default").output
    path = tmp_path / "default.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(path), "--cache", str(tmp_path / "c.db"), "info"])
    assert result.exit_code == 0, result.output
    assert "# Power Users" in text


def test_not_a_database_is_clear(tmp_path):
    bogus = tmp_path / "bogus.db"
    bogus.write_text("hello, I am not SQLite" * 100, encoding="utf-8")
    result = CliRunner().invoke(main, ["--cache", str(bogus), "segments"])
    assert result.exit_code == 1
    assert "cannot open cache" in result.output


@pytest.mark.skipif(not REALDATA.exists(), reason="the shared real-data corpus is not beside this checkout")
def test_import_whole_realdata(tmp_path):
    result = invoke(tmp_path / "c.db", "import", str(REALDATA), "--json")
    counts = json.loads(result.output)
    assert counts["read"] == counts["stored"] + counts["duplicates"] + counts["quarantined"]
    assert sum(counts["reasons"].values()) == counts["quarantined"]


def test_import_sample_of_realdata(tmp_path):
    counts = json.loads(invoke(tmp_path / "c.db", "import", str(FIXTURES / "realdata"), "--json").output)
    assert counts["read"] == counts["stored"] + counts["duplicates"] + counts["quarantined"]
    assert counts["reasons"]["invalid_time"] == 1


def test_diff_lists_entering_and_leaving(tmp_path):
    invoke(tmp_path / "c.db", "import", str(company(tmp_path)))
    other = tmp_path / "other.toml"
    other.write_text("[thresholds]\nnew_days = 3\nretention_idle_days = 30\n", encoding="utf-8")
    changes = json.loads(invoke(tmp_path / "c.db", "diff", "--config", str(other), "--json", "--as-of", AS_OF).output)
    assert changes["New"] == {"enter": [], "leave": ["new-user"]}
    assert changes["Activated-Not-Retained"]["leave"] == ["quiet"]
    assert changes["Established"]["enter"] == ["new-user"]


def test_transitions_json(tmp_path):
    path = company(tmp_path)
    invoke(tmp_path / "c.db", "import", str(path), "--no-evaluate")
    assert invoke(tmp_path / "c.db", "evaluate", "--full").exit_code == 0
    later = write_ndjson(tmp_path / "later.ndjson", [
        {"type": "track", "userId": "new-user", "event": "Project Created", "timestamp": "2026-06-11T00:00:00Z"},
    ])
    invoke(tmp_path / "c.db", "import", str(later))
    records = json.loads(invoke(tmp_path / "c.db", "transitions", "--json", "--since", "2000-01-01T00:00:00Z",
                                "--segment", "not-yet-activated").output)
    assert [(record["id"], record["entered"]) for record in records] == [("new-user", False)]
    assert "activated" in records[0]["reason"]


def test_read_only_flag_rejects_trigger(tmp_path):
    invoke(tmp_path / "c.db", "import", str(company(tmp_path)))
    result = CliRunner().invoke(main, ["--cache", str(tmp_path / "c.db"), "--read-only", "trigger",
                                       "first-project-guidance", "--user", "new-user", "--yes"])
    assert result.exit_code != 0
    assert "read-only" in result.output
