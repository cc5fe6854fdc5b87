"""Reporting on a real cache: intervention performance, the join of email events to runs, outcomes
against holdout, the confidence interval of their difference, and the health rows."""

from __future__ import annotations

import math

import pytest
from conftest import T, days

from console.playbooks.catalog import Playbook, Step
from store import runs
from store import segments as seg
from store.memberships import refresh
from store.reports import (
    OutcomeRule,
    ReportSettings,
    ReportSettingsError,
    default_outcome,
    health_rows,
    newcombe_interval,
    parse_outcome,
    parse_reporting,
    playbook_report,
    run_report,
    wilson_interval,
)
from store.settings import DAY_MS, Settings, Taxonomy

SETTINGS = Settings()
REPORTING = ReportSettings()
HOUR = 3_600_000


def make_playbook(playbook_id: str = "nya-test", segment: str = seg.NOT_YET_ACTIVATED,
                  holdout_share: float = 0.5, steps=(Step("email", "demo", "email-a"),)) -> Playbook:
    return Playbook(id=playbook_id, name=playbook_id, segment=segment, description="", tone="", steps=steps,
                    holdout_share=holdout_share, cooldown_days=0)


def split_users(playbook: Playbook, treated: int, held_out: int, prefix: str = "u") -> tuple[list[str], list[str]]:
    """Return user ids that the playbook's stable hash treats and holds out, `treated` and
    `held_out` of them."""
    treated_ids, held_ids = [], []
    for index in range(10_000):
        user_id = f"{prefix}{index:04d}"
        if runs.is_held_out(playbook.id, user_id, playbook.holdout_share):
            if len(held_ids) < held_out:
                held_ids.append(user_id)
        elif len(treated_ids) < treated:
            treated_ids.append(user_id)
        if len(treated_ids) == treated and len(held_ids) == held_out:
            return treated_ids, held_ids
    raise AssertionError("not enough users in the pool")


def start_run(db, playbook: Playbook, users: list[str], at: int, sent_at: int | None = None) -> runs.Run:
    """Record a run of `playbook` for `users` at `at` and mark every treated action sent at
    `sent_at` (default `at`), as the dispatcher does."""
    run = runs.create_run(db, playbook, runs.Target("segment", playbook.segment), operator="test", now=at,
                          users=users)
    for action in runs.claim_due(db, now=at + 7 * DAY_MS, claimant="test:1", limit=10_000):
        if action.run_id == run.id:
            runs.record_attempt(db, action.id, at=sent_at or at, duration_ms=5, status_code=200,
                                response_excerpt="{}", error=None, outcome="sent")
        else:
            runs.release_claims(db, [action.id])
    return run


def action_ids(db, run: runs.Run) -> dict[str, int]:
    return {action.user_id: action.id for action in runs.list_actions(db, run_id=run.id, limit=10_000)}


def report(db, run: runs.Run, reporting: ReportSettings = REPORTING, now: int = T):
    return run_report(db.conn, run.id, SETTINGS, reporting, now=now)


# --- performance and the join rule ---------------------------------------------------------------


def test_performance_counts_tagged_events(cache, messages):
    playbook = make_playbook(holdout_share=0.0)
    users = [f"p{index}" for index in range(6)]
    at = T - days(10)
    run = start_run(cache, playbook, users, at)
    ids = action_ids(cache, run)
    # p0-p4 delivered (p0-p2 by action_id, p3-p4 by run_id only); p5 never delivered.
    for user in users[:3]:
        messages.track(user, "Email Delivered", at + HOUR, action_id=ids[user], run_id=run.id)
    for user in users[3:5]:
        messages.track(user, "Email Delivered", at + HOUR, run_id=run.id)
    for user in users[:3]:
        messages.track(user, "Email Opened", at + 2 * HOUR, action_id=ids[user])
    # p0 clicks in the CTA window, p1 clicks twice, p2 clicks 8 days after delivery: clicked, not completed.
    messages.track("p0", "Email Link Clicked", at + 3 * HOUR, action_id=ids["p0"])
    messages.track("p1", "Email Link Clicked", at + 3 * HOUR, action_id=ids["p1"])
    messages.track("p1", "Email Link Clicked", at + 4 * HOUR, action_id=ids["p1"])
    messages.track("p2", "Email Link Clicked", at + HOUR + days(8), action_id=ids["p2"])
    messages.ingest(cache)

    performance = report(cache, run).performance
    assert performance.sent == 6
    assert performance.delivered == 5
    assert performance.opened == 3
    assert performance.clicked == 3
    assert performance.cta_completed == 2
    assert performance.open_rate == pytest.approx(3 / 5)
    assert performance.cta_rate == pytest.approx(2 / 5)


def test_performance_counts_actions_per_step(cache):
    steps = (Step("email", "demo", "email-a"), Step("in_app", "demo", "inapp-b"))
    run = start_run(cache, make_playbook(holdout_share=0.0, steps=steps), ["a", "b"], T - days(1))
    performance = report(cache, run).performance
    assert performance.sent == 4
    assert performance.delivered == 0
    assert performance.open_rate is None
    assert performance.cta_rate is None


def test_cta_event_and_window_come_from_settings(cache, messages):
    run = start_run(cache, make_playbook(holdout_share=0.0), ["a", "b"], T - days(10))
    for user in ("a", "b"):
        messages.track(user, "Email Delivered", T - days(10) + HOUR, run_id=run.id)
    messages.track("a", "Trial Started", T - days(10) + 2 * HOUR, run_id=run.id)
    messages.track("b", "Trial Started", T - days(7), run_id=run.id)
    messages.ingest(cache)

    reporting = ReportSettings(cta_event="Trial Started", cta_window_days=1)
    performance = report(cache, run, reporting).performance
    assert performance.clicked == 2
    assert performance.cta_completed == 1


def test_untagged_events_join_latest_sent_email(cache, messages):
    first, second = make_playbook("first", holdout_share=0.0), make_playbook("second", holdout_share=0.0)
    run_1 = start_run(cache, first, ["a"], T - days(20))
    run_2 = start_run(cache, second, ["a"], T - days(15))
    # Before any email: no run. After the first: run 1. After the second: run 2, whose 7-day
    # window then ends, so the event on day 5 joins nothing.
    messages.track("a", "Email Delivered", T - days(21))
    messages.track("a", "Email Opened", T - days(19))
    messages.track("a", "Email Delivered", T - days(14))
    messages.track("a", "Email Link Clicked", T - days(13))
    messages.track("a", "Email Opened", T - days(5))
    messages.ingest(cache)

    one, two = report(cache, run_1).performance, report(cache, run_2).performance
    assert (one.delivered, one.opened, one.clicked) == (0, 1, 0)
    assert (two.delivered, two.opened, two.clicked, two.cta_completed) == (1, 0, 1, 1)


def test_untagged_events_skip_other_channels(cache, messages):
    email = make_playbook("email-playbook", holdout_share=0.0)
    in_app = make_playbook("in-app-playbook", holdout_share=0.0, steps=(Step("in_app", "demo", "tour"),))
    email_run = start_run(cache, email, ["a"], T - days(3))
    in_app_run = start_run(cache, in_app, ["a"], T - days(2))
    messages.track("a", "Email Delivered", T - days(1))
    messages.ingest(cache)

    assert report(cache, email_run).performance.delivered == 1
    assert report(cache, in_app_run).performance.delivered == 0


def test_tagged_event_with_foreign_ids_joins_nothing(cache, messages):
    run = start_run(cache, make_playbook(holdout_share=0.0), ["a", "b"], T - days(3))
    other = start_run(cache, make_playbook("other", holdout_share=0.0), ["c"], T - days(3))
    ids = action_ids(cache, other)
    # An action of another user, and a run the user is not in: neither is this user's.
    messages.track("a", "Email Delivered", T - days(2), action_id=ids["c"])
    messages.track("b", "Email Delivered", T - days(2), run_id=other.id)
    messages.track("a", "Email Opened", T - days(2), action_id=999_999)
    messages.ingest(cache)

    assert report(cache, run).performance.delivered == 0
    assert report(cache, run).performance.opened == 0
    assert report(cache, other).performance.delivered == 0


def test_ids_as_strings_of_digits_join(cache, messages):
    run = start_run(cache, make_playbook(holdout_share=0.0), ["a", "b"], T - days(3))
    ids = action_ids(cache, run)
    messages.track("a", "Email Delivered", T - days(2), action_id=str(ids["a"]))
    messages.track("b", "Email Delivered", T - days(2), run_id=f" {run.id} ")
    messages.ingest(cache)

    assert report(cache, run).performance.delivered == 2


def test_playbook_report_adds_runs(cache, messages):
    playbook = make_playbook(holdout_share=0.0)
    run_1 = start_run(cache, playbook, ["a", "b"], T - days(20))
    run_2 = start_run(cache, playbook, ["a"], T - days(10))
    runs.create_run(cache, playbook, runs.Target("user", "c"), operator="test", now=T - days(5), dry_run=True,
                    users=["c"])
    messages.track("a", "Email Delivered", T - days(19), run_id=run_1.id)
    messages.track("b", "Email Delivered", T - days(19), run_id=run_1.id)
    messages.track("a", "Email Delivered", T - days(9), run_id=run_2.id)
    messages.ingest(cache)

    result = playbook_report(cache.conn, playbook.id, SETTINGS, REPORTING, now=T)
    assert result.runs == 2
    assert result.latest_run_at == T - days(10)
    assert result.performance.sent == 3
    assert result.performance.delivered == 3
    assert playbook_report(cache.conn, "unknown", SETTINGS, REPORTING, now=T) is None


def test_unknown_run_has_no_report(cache):
    assert run_report(cache.conn, 42, SETTINGS, REPORTING, now=T) is None


# --- outcomes ------------------------------------------------------------------------------------


def test_activation_outcome_against_holdout(cache, messages):
    playbook = make_playbook()
    treated, held = split_users(playbook, 40, 30)
    at = T - days(20)
    # Treated: 20 activate within 14 days, 2 on day 15, 1 activated before the action.
    for user in treated[:20]:
        messages.track(user, "Project Created", at + days(3))
    for user in treated[20:22]:
        messages.track(user, "Project Created", at + days(15))
    messages.track(treated[22], "Project Created", at - days(1))
    messages.track(treated[22], "Project Created", at + days(1))
    # Held out: 3 activate; another one is active without activating.
    for user in held[:3]:
        messages.track(user, "Project Created", at + days(5))
    messages.track(held[3], "Task Created", at + days(1))
    messages.ingest(cache)
    run = start_run(cache, playbook, treated + held, at)

    outcome = report(cache, run).outcome
    assert outcome.outcome == "activated (Project Created) within 14 days"
    assert (outcome.treated.users, outcome.treated.reached) == (40, 20)
    assert (outcome.held_out.users, outcome.held_out.reached) == (30, 3)
    assert outcome.treated.rate == pytest.approx(0.5)
    assert outcome.held_out.rate == pytest.approx(0.1)
    assert not outcome.too_few_users
    assert outcome.difference_pp == pytest.approx(40.0)
    low, high = outcome.ci_pp
    expected = newcombe_interval(20, 40, 3, 30)
    assert low == pytest.approx(100 * expected[1])
    assert high == pytest.approx(100 * expected[2])
    assert outcome.window_open_until is None


def test_outcome_window_starts_at_send_time(cache, messages):
    playbook = make_playbook()
    treated, held = split_users(playbook, 1, 1)
    created, sent = T - days(20), T - days(18)
    # Activation between creation and sending: before the treated user's action, after the
    # held-out user's (held-out users count from when they would have been sent: due_at).
    for user in treated + held:
        messages.track(user, "Project Created", T - days(19))
    messages.ingest(cache)
    run = start_run(cache, playbook, treated + held, created, sent_at=sent)

    outcome = report(cache, run).outcome
    assert outcome.treated.reached == 0
    assert outcome.held_out.reached == 1


def test_activity_outcome_counts_days_7_to_14(cache, messages):
    playbook = make_playbook("anr-test", seg.ACTIVATED_NOT_RETAINED, holdout_share=0.0)
    users = ["day3", "day10", "page10", "day15", "email10", "day14"]
    at = T - days(30)
    messages.track("day3", "Task Created", at + days(3))
    messages.track("day10", "Task Created", at + days(10))
    messages.page("page10", at + days(10))
    messages.track("day15", "Task Created", at + days(15))
    messages.track("email10", "Email Opened", at + days(10))
    messages.track("day14", "Comment Added", at + days(14))
    messages.ingest(cache)
    run = start_run(cache, playbook, users, at)

    outcome = report(cache, run).outcome
    assert outcome.outcome == "active in days 7-14"
    assert (outcome.treated.users, outcome.treated.reached) == (6, 3)
    assert outcome.too_few_users
    assert outcome.difference_pp is None
    assert outcome.ci_pp is None


def test_event_outcome_counts_upgrades_and_plan_changes(cache, messages):
    playbook = make_playbook("expansion-test", seg.EXPANSION_READY, holdout_share=0.0)
    at = T - days(20)
    accounts = {"upgrader": "acct-1", "colleague-of": "acct-2", "plan-change": "acct-3", "same-plan": "acct-4",
                "late-change": "acct-5"}
    for user, account in accounts.items():
        messages.group(user, account, at - days(30), plan="free")
    messages.track("upgrader", "Plan Upgraded", at + days(2))
    upgrade = messages.track("someone-else", "Subscription Upgraded", at + days(3))
    upgrade["context"] = {"groupId": "acct-2"}
    messages.group("plan-change", "acct-3", at + days(4), plan="starter")
    messages.group("same-plan", "acct-4", at + days(4), plan="free")
    messages.group("late-change", "acct-5", at + days(31), plan="growth")
    messages.ingest(cache)
    refresh(cache, SETTINGS, at)
    run = start_run(cache, playbook, list(accounts), at)

    outcome = report(cache, run).outcome
    assert "Plan Upgraded or Subscription Upgraded by anyone at the account" in outcome.outcome
    assert (outcome.treated.users, outcome.treated.reached) == (5, 3)


def test_new_feature_outcome(cache, messages):
    playbook = make_playbook("discovery-test", seg.BELOW_THRESHOLD, holdout_share=0.0)
    at = T - days(20)
    messages.track("new", "Task Created", at - days(2))
    messages.track("new", "Automation Created", at + days(1))
    messages.track("same", "Task Created", at - days(2))
    messages.track("same", "Task Created", at + days(1))
    messages.track("returning", "Report Viewed", at - days(40))
    messages.track("returning", "Report Viewed", at + days(1))
    messages.ingest(cache)
    run = start_run(cache, playbook, ["new", "same", "returning"], at)

    assert report(cache, run).outcome.treated.reached == 2


def test_configured_outcome_replaces_default(cache, messages):
    playbook = make_playbook(holdout_share=0.0)
    messages.track("a", "Referral Sent", T - days(5))
    messages.ingest(cache)
    run = start_run(cache, playbook, ["a"], T - days(6))

    reporting = ReportSettings(outcomes={playbook.id: OutcomeRule("event", 0, 2 * DAY_MS, events=("Referral Sent",))})
    assert report(cache, run).outcome.treated.reached == 0
    assert report(cache, run, reporting).outcome.treated.reached == 1


def test_open_window_and_minimum_per_arm(cache):
    playbook = make_playbook()
    treated, held = split_users(playbook, 5, 5)
    run = start_run(cache, playbook, treated + held, T - days(3))

    outcome = report(cache, run, ReportSettings(min_users_per_arm=5)).outcome
    assert outcome.window_open_until == T - days(3) + days(14)
    assert not outcome.too_few_users
    assert outcome.difference_pp == 0.0
    assert report(cache, run, ReportSettings(min_users_per_arm=6)).outcome.too_few_users


def test_empty_arm_is_too_few_users(cache):
    run = start_run(cache, make_playbook(holdout_share=0.0), ["a"], T - days(3))
    outcome = report(cache, run, ReportSettings(min_users_per_arm=1)).outcome
    assert outcome.held_out.users == 0
    assert outcome.held_out.rate is None
    assert outcome.too_few_users


def test_short_windows_for_the_demo(cache, messages):
    playbook = make_playbook("anr-demo", seg.ACTIVATED_NOT_RETAINED, holdout_share=0.0)
    at = T - HOUR
    messages.track("a", "Email Delivered", at + 60_000)
    messages.track("a", "Email Link Clicked", at + 5 * 60_000)
    messages.track("a", "Task Created", at + 2 * 60_000)
    messages.ingest(cache)
    run = start_run(cache, playbook, ["a"], at)

    result = report(cache, run, ReportSettings().with_windows(10 * 60_000))
    assert result.outcome.outcome == "active within 10 minutes"
    assert result.outcome.treated.reached == 1
    assert result.performance.cta_completed == 1
    assert report(cache, run).outcome.treated.reached == 0


# --- statistics ----------------------------------------------------------------------------------

Z2 = 1.959963984540054 ** 2


def test_wilson_edges_by_hand():
    # 0 of n: (0, z^2 / (n + z^2)). n of n: (n / (n + z^2), 1).
    assert wilson_interval(0, 10) == (0.0, pytest.approx(Z2 / (10 + Z2)))
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + Z2)), 1.0)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.27753279986288926)


def test_wilson_matches_reference():
    # statsmodels 0.15.0, proportion_confint(x, n, alpha=0.05, method="wilson").
    assert wilson_interval(3, 30) == pytest.approx((0.03459988874733416, 0.25621082579184085), abs=1e-12)
    assert wilson_interval(56, 70) == pytest.approx((0.6918335550374695, 0.8769526075163705), abs=1e-12)
    assert wilson_interval(1, 1) == pytest.approx((0.2065493143772374, 1.0), abs=1e-12)


@pytest.mark.parametrize(("counts", "expected"), [
    # statsmodels 0.15.0, confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff",
    # alpha=0.05), which implements the same method 10 of Newcombe (1998).
    ((56, 70, 48, 80), (0.05243147240236498, 0.33387265403690614)),
    ((9, 10, 3, 10), (0.1705227239345029, 0.809017973535488)),
    ((6, 7, 2, 7), (0.05822792748231209, 0.8062496375242278)),
    ((5, 56, 0, 29), (-0.038137147903536936, 0.19256001385511165)),
    ((42, 120, 3, 30), (0.07473148569449395, 0.36027357907385904)),
    ((30, 30, 30, 30), (-0.11351339317396891, 0.11351339317396891)),
    ((0, 40, 40, 40), (-1.0, -0.8760843432299507)),
])
def test_newcombe_matches_reference(counts, expected):
    difference, low, high = newcombe_interval(*counts)
    assert difference == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])
    assert low == pytest.approx(expected[0], abs=1e-12)
    assert high == pytest.approx(expected[1], abs=1e-12)


def test_newcombe_edges_by_hand():
    # 0 of 10 against 0 of 20: d = 0, lower = -u2 = -z^2 / (20 + z^2), upper = u1 = z^2 / (10 + z^2).
    assert newcombe_interval(0, 10, 0, 20) == pytest.approx((0.0, -Z2 / (20 + Z2), Z2 / (10 + Z2)))
    # 10 of 10 against 0 of 20: d = 1, lower = 1 - sqrt((1 - l1)^2 + u2^2), upper = 1.
    lower = 1 - math.sqrt((1 - 10 / (10 + Z2)) ** 2 + (Z2 / (20 + Z2)) ** 2)
    assert newcombe_interval(10, 10, 0, 20) == pytest.approx((1.0, lower, 1.0))
    assert lower == pytest.approx(0.6790860371419145)


@pytest.mark.parametrize("counts", [(0, 0, 1, 10), (1, 10, 0, 0), (11, 10, 1, 10), (-1, 10, 1, 10)])
def test_newcombe_rejects_empty_or_invalid_arms(counts):
    with pytest.raises(ValueError):
        newcombe_interval(*counts)


# --- settings ------------------------------------------------------------------------------------


def test_parse_reporting_takes_outcomes_out_of_playbooks():
    playbooks = {"anr": {"segment": seg.ACTIVATED_NOT_RETAINED,
                         "outcome": {"kind": "active_in_days", "from_days": 7, "to_days": 21}},
                 "other": {"name": "Other"}}
    settings, remaining = parse_reporting({"cta_event": "Trial Started", "cta_window_days": 3,
                                           "min_users_per_arm": 50}, playbooks)
    assert settings.cta_event == "Trial Started"
    assert settings.cta_window_ms == 3 * DAY_MS
    assert settings.min_users_per_arm == 50
    assert settings.outcomes == {"anr": OutcomeRule("active_in_days", 7 * DAY_MS, 21 * DAY_MS)}
    assert remaining == {"anr": {"segment": seg.ACTIVATED_NOT_RETAINED}, "other": {"name": "Other"}}


@pytest.mark.parametrize(("reporting", "message"), [
    ({"cta_window": 3}, "unknown key reporting.cta_window"),
    ({"cta_event": ""}, "reporting.cta_event must be a non-empty string"),
    ({"cta_window_days": 0}, "reporting.cta_window_days must be a number of days > 0"),
    ({"min_users_per_arm": 0}, "reporting.min_users_per_arm must be a whole number >= 1"),
    ({"min_users_per_arm": True}, "reporting.min_users_per_arm must be a whole number >= 1"),
])
def test_parse_reporting_rejects_invalid_values(reporting, message):
    with pytest.raises(ReportSettingsError, match=message):
        parse_reporting(reporting, {})


@pytest.mark.parametrize(("table", "message"), [
    ("activated", "must be a table"),
    ({"kind": "clicked"}, "kind must be one of activated, active_in_days, event, new_feature"),
    ({"kind": "activated", "window": 3}, "unknown key x.window"),
    ({"kind": "activated", "from_days": 7, "to_days": 7}, "to_days \\(7\\) must be greater than from_days"),
    ({"kind": "activated", "to_days": -1}, "to_days must be a number of days >= 0"),
    ({"kind": "event"}, "needs `events`, `account_trait` or both"),
    ({"kind": "event", "events": ["", "x"]}, "events must be a list of event names"),
    ({"kind": "event", "events": ["x"], "account": "yes"}, "account must be true or false"),
    ({"kind": "activated", "events": ["x"]}, "apply only to kind = \"event\""),
])
def test_parse_outcome_rejects_invalid_tables(table, message):
    with pytest.raises(ReportSettingsError, match=message):
        parse_outcome(table, "x")


def test_default_outcomes_follow_the_taxonomy():
    taxonomy = Taxonomy(referral_events=("Friend Invited",), plan_trait="tier")
    assert default_outcome(seg.CHAMPION, taxonomy).events == ("Friend Invited",)
    assert default_outcome(seg.EXPANSION_READY, taxonomy).account_trait == "tier"
    assert default_outcome(seg.UNSTAGED, taxonomy) == OutcomeRule("active_in_days", 0, 7 * DAY_MS)


# --- health rows ---------------------------------------------------------------------------------


def health_company(messages, newcomers: int = 12, at: int = T) -> None:
    """Users who signed up 3 days before `at` and never activated (New and Not-Yet-Activated)."""
    for index in range(newcomers):
        messages.track(f"n{index:02d}", "Signed Up", at - days(3))


def test_health_rows_show_population_trend_and_latest_run(cache, messages):
    health_company(messages)
    messages.ingest(cache)
    for days_ago in (8, 2, 1, 0):
        refresh(cache, SETTINGS, T - days(days_ago))
    playbook = make_playbook(holdout_share=0.0)
    start_run(cache, playbook, ["n00", "n01"], T - days(2))
    latest = start_run(cache, playbook, ["n02"], T - days(1))
    runs.create_run(cache, playbook, runs.Target("user", "n03"), operator="test", now=T, dry_run=True,
                    users=["n03"])

    rows = {row.segment: row for row in health_rows(cache.conn, SETTINGS, REPORTING, now=T)}
    assert list(rows) == [definition.name for definition in seg.ALL_SEGMENTS]
    nya = rows[seg.NOT_YET_ACTIVATED]
    assert nya.population == 12
    assert nya.change_24h == 0
    assert nya.change_7d == 12
    assert nya.history[-1] == 12
    assert nya.snapshot_at == T
    assert not nya.stale
    assert nya.latest.run.id == latest.id
    assert nya.latest.performance.sent == 1
    assert nya.latest.outcome.too_few_users
    assert rows[seg.POWER_USERS].latest is None


def test_health_rows_mark_old_snapshots_stale(cache, messages):
    health_company(messages, newcomers=2)
    messages.ingest(cache)
    refresh(cache, SETTINGS, T - HOUR)

    fresh = health_rows(cache.conn, SETTINGS, REPORTING, now=T, stale_after_ms=2 * HOUR, segments=[seg.NEW])
    old = health_rows(cache.conn, SETTINGS, REPORTING, now=T, stale_after_ms=HOUR // 2, segments=[seg.NEW])
    assert [row.segment for row in fresh] == [seg.NEW]
    assert not fresh[0].stale
    assert old[0].stale
