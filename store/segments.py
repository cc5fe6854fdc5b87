"""The seed segments: names as the console and the command line spell them, kind and entity."""

from __future__ import annotations

from dataclasses import dataclass

CHURNED = "Churned"
AT_RISK = "At-Risk"
CHAMPION = "Champion"
NEW = "New"
ESTABLISHED = "Established"
UNSTAGED = "Unstaged"

NOT_YET_ACTIVATED = "Not-Yet-Activated"
ACTIVATED_NOT_RETAINED = "Activated-Not-Retained"
POWER_USERS = "Power Users"
BELOW_THRESHOLD = "Below-Threshold Usage"
EXPANSION_READY = "Account Expansion Ready"


@dataclass(frozen=True)
class SegmentDefinition:
    """A seed segment: its rule in words, the intervention it calls for, and the entity it holds."""

    name: str
    kind: str  # "lifecycle" or "behavioral"
    entity: str  # "user" or "account"
    rule: str
    intervention: str


# Lifecycle stages in evaluation order: the first that matches wins.
LIFECYCLE = (
    SegmentDefinition(
        CHURNED, "lifecycle", "user",
        "cancelled, or no activity for 60 days (from signup when never active)",
        "win-back, if appropriate",
    ),
    SegmentDefinition(
        AT_RISK, "lifecycle", "user",
        "activated and idle 14-60 days, declining active days, NPS <= 6 in 90 days, or a churn signal in 30 days",
        "re-engagement and problem resolution",
    ),
    SegmentDefinition(
        CHAMPION, "lifecycle", "user",
        "high engagement and (NPS >= 9 in 180 days or >= 2 referrals in 90 days)",
        "advocacy programs and expansion",
    ),
    SegmentDefinition(NEW, "lifecycle", "user", "signed up 0-30 days ago", "activation and habit formation"),
    SegmentDefinition(
        ESTABLISHED, "lifecycle", "user", "signed up 30-180 days ago", "feature discovery and depth"
    ),
    SegmentDefinition(
        UNSTAGED, "lifecycle", "user", "none of the stages above", "none: shown so that totals reconcile"
    ),
)

BEHAVIORAL = (
    SegmentDefinition(
        NOT_YET_ACTIVATED, "behavioral", "user",
        "signed up, never activated, not cancelled",
        "remove onboarding friction; guidance to the first aha moment",
    ),
    SegmentDefinition(
        ACTIVATED_NOT_RETAINED, "behavioral", "user",
        "activated, no activity in the last 14 days, not cancelled",
        "re-engagement sequence highlighting value and offering help",
    ),
    SegmentDefinition(
        POWER_USERS, "behavioral", "user",
        "active in 30 days with a usage score in the top 10% of active users",
        "beta, advocacy and community leadership invitations",
    ),
    SegmentDefinition(
        BELOW_THRESHOLD, "behavioral", "user",
        "active in 14 days and fewer than 3 core features in 30 days",
        "discovery campaign for unused high-value features",
    ),
    SegmentDefinition(
        EXPANSION_READY, "behavioral", "account",
        "seats >= 80% of the limit, a metered usage >= 80% of its limit, or >= 2 teams",
        "upgrade conversation from the CSM or an in-app upgrade prompt",
    ),
)

ALL_SEGMENTS = LIFECYCLE + BEHAVIORAL
BY_NAME = {definition.name: definition for definition in ALL_SEGMENTS}


def find_segment(name: str) -> SegmentDefinition | None:
    """Find a segment by name, ignoring case, spaces, hyphens and underscores ("power-users")."""
    wanted = _fold(name)
    for definition in ALL_SEGMENTS:
        if _fold(definition.name) == wanted:
            return definition
    return None


def _fold(name: str) -> str:
    return "".join(character for character in name.lower() if character.isalnum())
