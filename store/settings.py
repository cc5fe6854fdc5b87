"""Segment definitions' settings: the event taxonomy, the plans and every threshold.

The defaults here are the built-in configuration. `console.config` reads a TOML file over them;
`store` only receives the resulting `Settings` object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Plan:
    """A plan's limits. `seats` is the seat limit; every other entry is a metered limit whose usage
    is the account trait `<name>_used`. A missing limit means no limit."""

    name: str
    limits: dict[str, float] = field(default_factory=dict)


def _default_plans() -> dict[str, Plan]:
    return {
        "free": Plan("free", {"seats": 3, "projects": 5}),
        "starter": Plan("starter", {"seats": 10, "projects": 50}),
        "growth": Plan("growth", {"seats": 50, "projects": 500}),
        "enterprise": Plan("enterprise", {}),
    }


@dataclass(frozen=True)
class Taxonomy:
    """The event names and traits behind each role in the segment rules. Event names match exactly."""

    signup_events: tuple[str, ...] = ("Signed Up",)
    signup_traits: tuple[str, ...] = ("createdAt", "created_at")
    activation_events: tuple[str, ...] = ("Project Created",)
    core_feature_events: tuple[str, ...] = (
        "Task Created",
        "Comment Added",
        "File Uploaded",
        "Report Viewed",
        "Integration Connected",
        "Automation Created",
        "Dashboard Shared",
    )
    cancellation_events: tuple[str, ...] = ("Account Deleted", "Subscription Cancelled")
    cancellation_trait: str = "status"
    cancellation_trait_value: str = "cancelled"
    churn_signal_events: tuple[str, ...] = (
        "Payment Failed",
        "Subscription Downgraded",
        "Support Ticket Escalated",
    )
    nps_events: tuple[str, ...] = ("NPS Survey Submitted",)
    nps_score_property: str = "score"
    referral_events: tuple[str, ...] = ("Referral Sent", "Invite Sent")
    team_trait: str = "team"
    team_property: str = "team_id"
    plan_trait: str = "plan"
    seats_trait: str = "seats"
    email_events: tuple[str, ...] = (
        "Email Delivered",
        "Email Opened",
        "Email Link Clicked",
        "Email Bounced",
        "Unsubscribed",
    )
    audience_events: tuple[str, ...] = ("Audience Entered", "Audience Exited")
    playbook_events: tuple[str, ...] = ("Playbook Triggered",)

    def non_activity_events(self) -> tuple[str, ...]:
        """Track events that never count as activity: email, audience, playbook, cancellation and
        churn-signal events."""
        return (
            self.email_events
            + self.audience_events
            + self.playbook_events
            + self.cancellation_events
            + self.churn_signal_events
        )


@dataclass(frozen=True)
class Thresholds:
    """Every number in the segment rules. Windows are in days, shares are fractions."""

    # Activated-Not-Retained and Below-Threshold Usage: the recent-activity window.
    retention_idle_days: int = 14
    # Power Users: share of the users active in `power_window_days` that make the top group.
    power_top_share: float = 0.10
    power_window_days: int = 30
    # Below-Threshold Usage: fewer distinct core features than this in `feature_window_days`.
    below_threshold_features: int = 3
    feature_window_days: int = 30
    # Account Expansion Ready: usage share of a seat or metered limit, and the number of teams.
    expansion_usage_share: float = 0.80
    expansion_min_teams: int = 2
    # Churned: days without activity (from signup when never active).
    churn_idle_days: int = 60
    # At-Risk: last activity between `at_risk_idle_days` and `churn_idle_days` ago.
    at_risk_idle_days: int = 14
    # At-Risk: the recent fortnight has fewer than `decline_ratio` of the previous fortnight's active
    # days, when the previous fortnight had at least `decline_min_days` active days.
    decline_window_days: int = 14
    decline_ratio: float = 0.5
    decline_min_days: int = 4
    at_risk_nps_max: int = 6
    at_risk_nps_window_days: int = 90
    churn_signal_window_days: int = 30
    # Champion.
    champion_active_days: int = 15
    champion_nps_min: int = 9
    champion_nps_window_days: int = 180
    champion_referrals: int = 2
    referral_window_days: int = 90
    # New and Established: signup age in days.
    new_days: int = 30
    established_days: int = 180


@dataclass(frozen=True)
class Settings:
    """Everything the segment engine reads besides the cache and the evaluation time."""

    taxonomy: Taxonomy = field(default_factory=Taxonomy)
    thresholds: Thresholds = field(default_factory=Thresholds)
    plans: dict[str, Plan] = field(default_factory=_default_plans)
    # Messages larger than this many bytes of JSON are quarantined (Segment's own limit is 32 KB).
    max_message_bytes: int = 32 * 1024
