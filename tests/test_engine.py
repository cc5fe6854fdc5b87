"""Segment rules at their boundaries, at a fixed evaluation time T."""

from __future__ import annotations

import pytest
from conftest import T, days

from store import segments as seg
from store.engine import evaluate, explain_account, explain_user
from store.settings import Settings, Thresholds


def run(cache, messages, t=T, settings=None):
    messages.ingest(cache)
    return evaluate(cache.conn, settings or Settings(), t)


def member(evaluation, segment, entity):
    return entity in evaluation.members[segment]


# --- signup, New and Established ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "stage"),
    [
        (days(29.99), seg.NEW),
        (days(30), seg.ESTABLISHED),  # "0-30 days ago" is signup_at > T - 30d
        (days(179.99), seg.ESTABLISHED),
    ],
)
def test_signup_age_boundaries(cache, messages, age, stage):
    messages.track("u", "Signed Up", T - age)
    # Keep the user active so that Churned does not take them.
    messages.page("u", T - days(1))
    evaluation = run(cache, messages)
    assert evaluation.stages["u"] == stage


def test_signup_180_days_is_unstaged(cache, messages):
    messages.track("u", "Signed Up", T - days(180))
    messages.page("u", T - days(1))
    assert run(cache, messages).stages["u"] == seg.UNSTAGED


def test_signup_trait_used_without_event(cache, messages):
    messages.identify("u", T - days(1), createdAt="2026-06-10T00:00:00Z")
    evaluation = run(cache, messages)
    assert evaluation.users["u"].signup_at == evaluation.users["u"].signup_at
    assert evaluation.users["u"].signup_source == "trait createdAt"
    assert evaluation.stages["u"] == seg.NEW


def test_signup_falls_back_to_first_message(cache, messages):
    messages.page("u", T - days(100))
    messages.page("u", T - days(2))
    evaluation = run(cache, messages)
    assert evaluation.users["u"].signup_at == T - days(100)
    assert evaluation.stages["u"] == seg.ESTABLISHED


def test_events_after_t_are_ignored(cache, messages):
    messages.track("u", "Signed Up", T - days(10))
    messages.track("u", "Project Created", T + 1)
    evaluation = run(cache, messages)
    assert member(evaluation, seg.NOT_YET_ACTIVATED, "u")
    assert evaluation.users["u"].activated_at is None


def test_user_with_only_future_messages_is_absent(cache, messages):
    messages.track("later", "Signed Up", T + days(1))
    assert "later" not in run(cache, messages).users


# --- Churned -----------------------------------------------------------------------------------


def test_churned_idle_exactly_60_days(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    messages.track("u", "Task Created", T - days(60))
    assert run(cache, messages).stages["u"] == seg.CHURNED


def test_not_churned_idle_just_under_60_days(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    messages.track("u", "Project Created", T - days(60) + 1)
    stage = run(cache, messages).stages["u"]
    assert stage == seg.AT_RISK  # activated, idle in (T-60d, T-14d]


def test_churned_by_cancellation_event(cache, messages):
    messages.track("u", "Signed Up", T - days(5))
    messages.track("u", "Subscription Cancelled", T - days(1))
    evaluation = run(cache, messages)
    assert evaluation.stages["u"] == seg.CHURNED
    assert not member(evaluation, seg.NOT_YET_ACTIVATED, "u")


def test_churned_by_status_trait(cache, messages):
    messages.track("u", "Signed Up", T - days(5))
    messages.identify("u", T - days(1), status="Cancelled")
    assert run(cache, messages).stages["u"] == seg.CHURNED


def test_never_active_measured_from_signup(cache, messages):
    # Only an identify: no activity at all, so churn counts from the signup time (the trait).
    messages.identify("old", T - days(1), createdAt="2026-04-16T12:00:00Z")  # T - 60d exactly
    messages.identify("young", T - days(1), createdAt="2026-04-16T12:00:01Z")
    evaluation = run(cache, messages)
    assert evaluation.stages["old"] == seg.CHURNED
    assert evaluation.stages["young"] == seg.ESTABLISHED


def test_cancellation_events_are_not_activity(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    messages.track("u", "Payment Failed", T - days(1))
    messages.track("u", "Email Opened", T - days(1))
    evaluation = run(cache, messages)
    assert evaluation.users["u"].last_active_at == T - days(100)


# --- At-Risk -----------------------------------------------------------------------------------


def test_at_risk_idle_window_boundaries(cache, messages):
    for user, idle in (("at14", 14), ("under14", 13.99), ("at60", 60)):
        messages.track(user, "Project Created", T - days(idle))
    evaluation = run(cache, messages)
    assert evaluation.stages["at14"] == seg.AT_RISK
    assert evaluation.stages["under14"] == seg.NEW
    assert evaluation.stages["at60"] == seg.CHURNED


def test_at_risk_idle_needs_activation(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    messages.page("u", T - days(20))
    assert run(cache, messages).stages["u"] == seg.ESTABLISHED


def test_at_risk_declining_active_days(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    # Previous fortnight (T-28d, T-14d]: 4 active days. Recent fortnight: 1 day, fewer than half.
    for day in (15, 16, 17, 18):
        messages.page("u", T - days(day))
    messages.page("u", T - days(1))
    assert run(cache, messages).stages["u"] == seg.AT_RISK


def test_decline_needs_four_previous_days(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    for day in (15, 16, 17):
        messages.page("u", T - days(day))
    messages.page("u", T - days(1))
    assert run(cache, messages).stages["u"] == seg.ESTABLISHED


def test_decline_half_is_not_fewer_than_half(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    for day in (15, 16, 17, 18):
        messages.page("u", T - days(day))
    messages.page("u", T - days(1))
    messages.page("u", T - days(2))
    assert run(cache, messages).stages["u"] == seg.ESTABLISHED


@pytest.mark.parametrize(("score", "stage"), [(6, seg.AT_RISK), (7, seg.ESTABLISHED)])
def test_at_risk_nps_threshold(cache, messages, score, stage):
    messages.track("u", "Signed Up", T - days(100))
    messages.track("u", "NPS Survey Submitted", T - days(2), score=score)
    assert run(cache, messages).stages["u"] == stage


def test_only_latest_nps_counts(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    messages.track("u", "NPS Survey Submitted", T - days(10), score=2)
    messages.track("u", "NPS Survey Submitted", T - days(2), score=8)
    assert run(cache, messages).stages["u"] == seg.ESTABLISHED


def test_low_nps_outside_window_ignored(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    messages.track("u", "NPS Survey Submitted", T - days(90), score=1)
    messages.page("u", T - days(1))
    assert run(cache, messages).stages["u"] == seg.ESTABLISHED


def test_churn_signal_window(cache, messages):
    messages.track("in", "Signed Up", T - days(100))
    messages.track("in", "Payment Failed", T - days(29.99))
    messages.page("in", T - days(1))
    messages.track("out", "Signed Up", T - days(100))
    messages.track("out", "Payment Failed", T - days(30))
    messages.page("out", T - days(1))
    evaluation = run(cache, messages)
    assert evaluation.stages["in"] == seg.AT_RISK
    assert evaluation.stages["out"] == seg.ESTABLISHED


# --- Power Users and Champion ------------------------------------------------------------------


def active_user(messages, user, active_days, features):
    names = ["Task Created", "Comment Added", "File Uploaded", "Report Viewed", "Integration Connected",
             "Automation Created", "Dashboard Shared"][:features]
    messages.track(user, "Signed Up", T - days(100))
    for day in range(active_days):
        for name in names or ["Viewed Page"]:
            messages.track(user, name, T - days(day) - 1000)


def test_power_users_top_ten_percent_with_ties(cache, messages):
    # 20 active users: k = ceil(0.1 x 20) = 2. Scores: 40, 30, 30, then lower: the tie at 30 is in.
    active_user(messages, "top", 20, 2)
    active_user(messages, "tie1", 10, 3)
    active_user(messages, "tie2", 15, 2)
    for index in range(17):
        active_user(messages, f"low{index}", 2, 1)
    evaluation = run(cache, messages)
    assert evaluation.members[seg.POWER_USERS] == ["tie1", "tie2", "top"]
    assert evaluation.context.power_threshold == 30


def test_power_users_k_is_exact_ceiling(cache, messages):
    # 30 active users: k = ceil(0.1 x 30) = 3 exactly, not 4 from float rounding.
    for index in range(30):
        active_user(messages, f"u{index:02}", index + 1, 1)
    evaluation = run(cache, messages)
    assert evaluation.members[seg.POWER_USERS] == ["u27", "u28", "u29"]


def test_power_users_need_positive_score(cache, messages):
    messages.track("u", "Signed Up", T - days(1))
    messages.page("u", T - days(1))
    evaluation = run(cache, messages)
    assert evaluation.members[seg.POWER_USERS] == []


def test_champion_needs_engagement_and_advocacy(cache, messages):
    active_user(messages, "champ", 15, 1)
    messages.track("champ", "Referral Sent", T - days(3))
    messages.track("champ", "Invite Sent", T - days(89.99))
    active_user(messages, "quiet", 14, 1)
    messages.track("quiet", "Referral Sent", T - days(3))
    messages.track("quiet", "Referral Sent", T - days(4))
    for index in range(10):
        active_user(messages, f"busy{index}", 20, 3)
    evaluation = run(cache, messages)
    assert evaluation.stages["champ"] == seg.CHAMPION
    assert evaluation.stages["quiet"] == seg.ESTABLISHED


def test_champion_by_nps_at_nine(cache, messages):
    active_user(messages, "u", 16, 1)
    messages.track("u", "NPS Survey Submitted", T - days(170), score=9)
    assert run(cache, messages).stages["u"] == seg.CHAMPION


# --- behavioral user segments ------------------------------------------------------------------


def test_activated_not_retained_boundary(cache, messages):
    messages.track("idle", "Project Created", T - days(14))
    messages.track("fresh", "Project Created", T - days(13.99))
    evaluation = run(cache, messages)
    assert member(evaluation, seg.ACTIVATED_NOT_RETAINED, "idle")
    assert not member(evaluation, seg.ACTIVATED_NOT_RETAINED, "fresh")


def test_below_threshold_features(cache, messages):
    active_user(messages, "two", 1, 2)
    active_user(messages, "three", 1, 3)
    evaluation = run(cache, messages)
    assert member(evaluation, seg.BELOW_THRESHOLD, "two")
    assert not member(evaluation, seg.BELOW_THRESHOLD, "three")


def test_feature_outside_window_not_counted(cache, messages):
    messages.track("u", "Task Created", T - days(30))
    messages.track("u", "Comment Added", T - days(1))
    messages.track("u", "File Uploaded", T - days(1))
    evaluation = run(cache, messages)
    assert evaluation.users["u"].features_30 == 2
    assert member(evaluation, seg.BELOW_THRESHOLD, "u")


def test_active_days_are_utc_dates(cache, messages):
    # 23:59:59 and 00:00:00 of the next date are two active days; two events on one date are one.
    messages.add({"type": "page", "userId": "u", "timestamp": "2026-06-14T23:59:59Z"})
    messages.add({"type": "page", "userId": "u", "timestamp": "2026-06-15T00:00:00+00:00"})
    messages.add({"type": "page", "userId": "u", "timestamp": "2026-06-15T05:00:00+05:00"})
    assert run(cache, messages).users["u"].active_days_30 == 2


def test_anonymous_events_count_once_linked(cache, messages):
    messages.add({"type": "track", "anonymousId": "a1", "event": "Project Created",
                  "timestamp": "2026-06-01T00:00:00Z"})
    messages.add({"type": "identify", "anonymousId": "a1", "userId": "u", "timestamp": "2026-06-10T00:00:00Z"})
    messages.ingest(cache)
    settings = Settings()
    linked = evaluate(cache.conn, settings, T)
    assert linked.users["u"].activated_at is not None
    before_link = evaluate(cache.conn, settings, T - days(10))
    assert "u" not in before_link.users


def test_link_arriving_later_attributes_earlier_messages(cache, messages):
    messages.add({"type": "page", "anonymousId": "a2", "timestamp": "2026-06-01T00:00:00Z"})
    messages.ingest(cache)
    assert evaluate(cache.conn, Settings(), T).users == {}
    messages.items.clear()
    messages.add({"type": "alias", "previousId": "a2", "userId": "u", "timestamp": "2026-06-02T00:00:00Z"})
    messages.ingest(cache)
    assert evaluate(cache.conn, Settings(), T).users["u"].last_active_at is not None


# --- Account Expansion Ready -------------------------------------------------------------------


def test_expansion_by_seats(cache, messages):
    # free: 3 seats, 80% is 2.4, so 3 users are needed and 2 are not enough.
    for user in ("a", "b", "c"):
        messages.group(user, "full", T - days(5), plan="free")
    for user in ("d", "e"):
        messages.group(user, "half", T - days(5), plan="Free")
    evaluation = run(cache, messages)
    assert evaluation.members[seg.EXPANSION_READY] == ["full"]


def test_expansion_seats_trait_overrides_plan(cache, messages):
    for user in "abcdefgh":
        messages.group(user, "acct", T - days(5), plan="starter", seats=10)
    messages.group("z", "big", T - days(5), plan="starter", seats=100)
    evaluation = run(cache, messages)
    assert member(evaluation, seg.EXPANSION_READY, "acct")  # 8 of 10
    assert not member(evaluation, seg.EXPANSION_READY, "big")


def test_expansion_by_metered_limit(cache, messages):
    messages.group("a", "near", T - days(5), plan="starter", projects_used=40)
    messages.group("b", "below", T - days(5), plan="starter", projects_used=39)
    evaluation = run(cache, messages)
    assert evaluation.members[seg.EXPANSION_READY] == ["near"]


def test_expansion_by_teams(cache, messages):
    messages.group("a", "teams", T - days(5), plan="enterprise")
    messages.group("b", "teams", T - days(5))
    messages.identify("a", T - days(5), team="Design")
    messages.track("b", "Task Created", T - days(2), team_id="eng")
    messages.group("c", "one", T - days(5), plan="enterprise")
    messages.identify("c", T - days(5), team="Design")
    evaluation = run(cache, messages)
    assert evaluation.members[seg.EXPANSION_READY] == ["teams"]


def test_context_group_id_links_user(cache, messages):
    messages.group("a", "acct", T - days(5), plan="free")
    for user in ("b", "c"):
        messages.add({"type": "track", "userId": user, "event": "Task Created", "timestamp": "2026-06-10T00:00:00Z",
                      "context": {"groupId": "acct"}})
    evaluation = run(cache, messages)
    assert evaluation.accounts["acct"].users == ["a", "b", "c"]
    assert member(evaluation, seg.EXPANSION_READY, "acct")


def test_enterprise_has_no_limits(cache, messages):
    for user in "abcdef":
        messages.group(user, "ent", T - days(5), plan="enterprise", projects_used=10_000)
    assert run(cache, messages).members[seg.EXPANSION_READY] == []


# --- explanations and configuration ------------------------------------------------------------


def test_explanation_matches_membership(cache, messages):
    active_user(messages, "u", 2, 1)
    messages.ingest(cache)
    settings = Settings()
    evaluation = evaluate(cache.conn, settings, T)
    verdicts = explain_user(cache.conn, settings, T, "u")
    for name, verdict in verdicts.items():
        assert verdict.member == ("u" in evaluation.members[name]), name
    features = [c for c in verdicts[seg.BELOW_THRESHOLD].conditions if c.name.startswith("core features")]
    assert features[0].value == 1
    assert features[0].passed


def test_explain_unknown_entities(cache, messages):
    messages.group("a", "acct", T - days(5))
    messages.ingest(cache)
    assert explain_user(cache.conn, Settings(), T, "nobody") is None
    assert explain_account(cache.conn, Settings(), T, "acct").member is False


def test_thresholds_come_from_settings(cache, messages):
    messages.track("idle", "Project Created", T - days(8))
    messages.ingest(cache)
    strict = Settings(thresholds=Thresholds(retention_idle_days=7))
    assert evaluate(cache.conn, strict, T).members[seg.ACTIVATED_NOT_RETAINED] == ["idle"]
    assert evaluate(cache.conn, Settings(), T).members[seg.ACTIVATED_NOT_RETAINED] == []


def test_lifecycle_is_a_partition(cache, messages):
    active_user(messages, "a", 20, 3)
    messages.track("b", "Subscription Cancelled", T - days(1))
    messages.track("c", "Signed Up", T - days(3))
    messages.page("d", T - days(200))
    evaluation = run(cache, messages)
    stages = [definition.name for definition in seg.LIFECYCLE]
    for user in evaluation.users:
        assert sum(user in evaluation.members[name] for name in stages) == 1


def test_every_verdict_agrees_with_its_conditions(cache, messages):
    # A mix of users; for each verdict, combining its conditions gives its membership.
    active_user(messages, "busy", 20, 4)
    messages.track("busy", "NPS Survey Submitted", T - days(3), score=10)
    messages.track("idle", "Project Created", T - days(20))
    messages.track("gone", "Subscription Cancelled", T - days(1))
    messages.track("sad", "Signed Up", T - days(40))
    messages.track("sad", "NPS Survey Submitted", T - days(3), score=2)
    messages.page("old", T - days(200))
    messages.page("old", T - days(1))
    messages.ingest(cache)
    settings = Settings()
    evaluation = evaluate(cache.conn, settings, T)
    for user in evaluation.users:
        verdicts = explain_user(cache.conn, settings, T, user)
        for name, verdict in verdicts.items():
            passed = [condition.passed for condition in verdict.conditions]
            combined = any(passed) if verdict.combine == "any" else all(passed)
            assert combined == verdict.member, (user, name)
            assert verdict.member == (user in evaluation.members[name]), (user, name)


def test_near_misses(cache, messages):
    # An active, activated user with one core feature. Only the idle condition keeps the user out of
    # Activated-Not-Retained, a near miss. Below-Threshold Usage is an all-of rule the user is a
    # member of, and a member of an all-of rule has no near miss.
    messages.track("u", "Project Created", T - days(3))
    messages.track("u", "Task Created", T - days(2))
    messages.ingest(cache)
    verdicts = explain_user(cache.conn, Settings(), T, "u")
    direction, condition = verdicts[seg.ACTIVATED_NOT_RETAINED].near_miss()
    assert direction == "enter"
    assert condition.name == "days since last activity"
    assert verdicts[seg.BELOW_THRESHOLD].near_miss() is None
    assert verdicts[seg.BELOW_THRESHOLD].as_dict()["near_miss"] is None


def test_near_miss_leaving_any_rule(cache, messages):
    messages.track("u", "Signed Up", T - days(100))
    messages.page("u", T - days(1))
    messages.track("u", "Payment Failed", T - days(2))
    messages.ingest(cache)
    verdict = explain_user(cache.conn, Settings(), T, "u")[seg.AT_RISK]
    assert verdict.member
    assert verdict.near_miss()[0] == "leave"
    assert verdict.as_dict()["near_miss"] == {"direction": "leave",
                                              "condition": "churn-signal events in 30 days"}


def test_lifecycle_flow(cache, messages):
    from store.engine import NOT_YET_SEEN, lifecycle_flow

    messages.track("aging", "Signed Up", T - days(33))
    messages.page("aging", T - days(1))
    messages.track("fresh", "Signed Up", T - days(2))
    messages.track("idle", "Signed Up", T - days(63))
    messages.page("idle", T - days(61))
    messages.ingest(cache)
    flow = lifecycle_flow(cache.conn, Settings(), T, 7)
    assert flow[(seg.NEW, seg.ESTABLISHED)] == ["aging"]
    assert flow[(NOT_YET_SEEN, seg.NEW)] == ["fresh"]
    assert flow[(seg.ESTABLISHED, seg.CHURNED)] == ["idle"]


def test_near_misses_skip_final_conditions(cache, messages):
    # An activated user is never "one condition from" Not-Yet-Activated, a cancelled user never
    # "one condition from" leaving Churned, and a later lifecycle stage is no near miss.
    messages.track("active", "Project Created", T - days(40))
    messages.track("active", "Task Created", T - days(1))
    messages.track("gone", "Signed Up", T - days(3))
    messages.track("gone", "Subscription Cancelled", T - days(1))
    messages.ingest(cache)
    active = explain_user(cache.conn, Settings(), T, "active")
    assert active[seg.NOT_YET_ACTIVATED].near_miss() is None
    gone = explain_user(cache.conn, Settings(), T, "gone")
    assert gone[seg.CHURNED].member
    assert gone[seg.CHURNED].near_miss() is None
    assert gone[seg.NEW].near_miss() is None
