"""The default destinations and playbooks, as the TOML tables a configuration file would hold.

There is one playbook for each seed segment but Unstaged, with the intervention and tone that the
segment calls for. Every default step goes to the demo CDP, so that `segops demo` works with no
configuration. A company points the steps at its own destinations and content ids.
"""

from __future__ import annotations

from store import segments as seg

DEMO_DESTINATION = "demo"

DEFAULT_DESTINATIONS: dict[str, dict] = {
    DEMO_DESTINATION: {"type": "demo"},
}


def _step(channel: str, content: str, delay_minutes: int = 0) -> dict:
    return {"channel": channel, "destination": DEMO_DESTINATION, "content": content,
            "delay_minutes": delay_minutes}


_DAY_MINUTES = 24 * 60

DEFAULT_PLAYBOOKS: dict[str, dict] = {
    "first-project-guidance": {
        "name": "First project guidance",
        "segment": seg.NOT_YET_ACTIVATED,
        "description": "Remove onboarding friction: a short guide and an in-app checklist that lead to the "
                       "first project, then a reminder two days later.",
        "tone": "encouraging, practical",
        "steps": [
            _step("email", "email-first-project-guide"),
            _step("in_app", "inapp-first-project-checklist"),
            _step("email", "email-first-project-reminder", 2 * _DAY_MINUTES),
        ],
        "exclude_segments": [seg.CHURNED],
    },
    "reengagement-sequence": {
        "name": "Re-engagement sequence",
        "segment": seg.ACTIVATED_NOT_RETAINED,
        "description": "Remind activated users of the value they got, show what changed, and offer help "
                       "from a person.",
        "tone": "helpful, value-focused",
        "steps": [
            _step("email", "email-whats-new-for-you"),
            _step("email", "email-offer-help", 3 * _DAY_MINUTES),
        ],
        "exclude_segments": [seg.CHURNED],
    },
    "power-user-programs": {
        "name": "Beta and community invitation",
        "segment": seg.POWER_USERS,
        "description": "Invite the heaviest users to the beta program, advocacy and community leadership.",
        "tone": "appreciative, exclusive",
        "steps": [_step("email", "email-beta-community-invite")],
        "cooldown_days": 30,
        "exclude_segments": [seg.CHURNED, seg.AT_RISK],
    },
    "feature-discovery": {
        "name": "High-value feature discovery",
        "segment": seg.BELOW_THRESHOLD,
        "description": "Show active users the high-value features they have not used yet: automations, "
                       "integrations and shared dashboards.",
        "tone": "informative, curious",
        "steps": [
            _step("in_app", "inapp-feature-spotlight"),
            _step("email", "email-feature-discovery", _DAY_MINUTES),
        ],
        "exclude_segments": [seg.CHURNED],
    },
    "expansion-upgrade": {
        "name": "Upgrade conversation",
        "segment": seg.EXPANSION_READY,
        "description": "Accounts near their plan's limits: a CSM task to start the upgrade conversation, and an "
                       "in-app upgrade prompt for the account's most active user.",
        "tone": "consultative, helpful",
        "steps": [
            _step("cs_task", "cs-upgrade-conversation"),
            _step("in_app", "inapp-upgrade-prompt"),
        ],
        "cooldown_days": 30,
        "exclude_segments": [seg.CHURNED],
    },
    "churned-winback": {
        "name": "Win-back",
        "segment": seg.CHURNED,
        "description": "Acknowledge the departure and restate the value, once, for users whose last visit is "
                       "long past; nothing more if they do not answer.",
        "tone": "acknowledging, value-reiterating",
        "steps": [_step("email", "email-winback")],
        "cooldown_days": 90,
    },
    "at-risk-rescue": {
        "name": "Problem resolution",
        "segment": seg.AT_RISK,
        "description": "Ask what is wrong and offer help, then have a CSM follow up a day later.",
        "tone": "concerned, helpful",
        "steps": [
            _step("email", "email-can-we-help"),
            _step("cs_task", "cs-at-risk-follow-up", _DAY_MINUTES),
        ],
        "exclude_segments": [seg.CHURNED],
    },
    "champion-advocacy": {
        "name": "Advocacy program",
        "segment": seg.CHAMPION,
        "description": "Thank champions, invite them to the advocacy program, and let the CSM explore expansion.",
        "tone": "celebratory, exclusive",
        "steps": [
            _step("email", "email-advocacy-invite"),
            _step("cs_task", "cs-champion-expansion", 2 * _DAY_MINUTES),
        ],
        "cooldown_days": 30,
        "exclude_segments": [seg.CHURNED],
    },
    "new-user-welcome": {
        "name": "Welcome and habit formation",
        "segment": seg.NEW,
        "description": "Welcome new users, teach the core workflow, and build a weekly habit.",
        "tone": "welcoming, educational",
        "steps": [
            _step("email", "email-welcome"),
            _step("in_app", "inapp-product-tour"),
            _step("email", "email-weekly-habit-tips", 3 * _DAY_MINUTES),
        ],
        "exclude_segments": [seg.CHURNED],
    },
    "established-depth": {
        "name": "Feature depth",
        "segment": seg.ESTABLISHED,
        "description": "Show established users what teams like theirs build with reports, automations and "
                       "integrations.",
        "tone": "informative, inspiring",
        "steps": [_step("email", "email-feature-depth-stories")],
        "cooldown_days": 14,
        "exclude_segments": [seg.CHURNED],
    },
}
