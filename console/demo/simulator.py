"""A deterministic simulator of a project-management SaaS company that emits Segment-spec messages.

The company has accounts on the default plans, mostly free and starter, and users who follow
personas. Some users never create a project and some go quiet after activating. Others use the product
every day, give NPS scores of 9 or 10 and refer colleagues, and others decline, cancel or stop coming
back. With the default 5,000 users, evaluating the history at `now` with the default segment rules
puts members in every lifecycle and behavioral segment. Unstaged stays empty, because every signup is
inside the history window.

Everything comes from `random.Random` instances seeded from `seed`, never from the global generator:
the same seed and `now` give the same population and the same history, and the same sequence of
`live_batch` calls gives the same live messages.
"""

from __future__ import annotations

import gc
import itertools
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from store.settings import DAY_MS, Plan, Settings

HOUR_MS = 3_600_000
MINUTE_MS = 60_000

_SETTINGS = Settings()
_TAXONOMY = _SETTINGS.taxonomy
PLANS: dict[str, Plan] = _SETTINGS.plans

SIGNUP_EVENT = _TAXONOMY.signup_events[0]
ACTIVATION_EVENT = _TAXONOMY.activation_events[0]
CORE_FEATURES: tuple[str, ...] = _TAXONOMY.core_feature_events
ACCOUNT_DELETED, SUBSCRIPTION_CANCELLED = _TAXONOMY.cancellation_events
PAYMENT_FAILED, SUBSCRIPTION_DOWNGRADED, TICKET_ESCALATED = _TAXONOMY.churn_signal_events
NPS_EVENT = _TAXONOMY.nps_events[0]
REFERRAL_SENT, INVITE_SENT = _TAXONOMY.referral_events

LIBRARY_NAME = "segops-demo"
LIBRARY_VERSION = "0.1.0"

# Relative frequency of each core feature among a user's feature events.
FEATURE_WEIGHTS = {
    "Task Created": 40,
    "Comment Added": 30,
    "File Uploaded": 12,
    "Report Viewed": 12,
    "Integration Connected": 2,
    "Automation Created": 3,
    "Dashboard Shared": 3,
}
# Features a light user picks from: the everyday ones, never the advanced ones.
LIGHT_FEATURES = ("Task Created", "Comment Added", "Report Viewed", "File Uploaded")
# Feature events that carry the `team_id` property when the user works in a team.
TEAM_EVENTS = frozenset({ACTIVATION_EVENT, "Task Created", "Dashboard Shared", "Automation Created"})

# Share of accounts on each plan, and the range of the number of members of an account on it.
PLAN_SHARES = {"free": 0.45, "starter": 0.35, "growth": 0.15, "enterprise": 0.05}
PLAN_MEMBERS = {"free": (1, 3), "starter": (2, 8), "growth": (6, 40), "enterprise": (20, 120)}
PLAN_TEAMS = {"free": (0, 1), "starter": (0, 2), "growth": (1, 3), "enterprise": (2, 5)}
# Share of accounts with an explicit `seats` trait instead of the plan's seat limit.
PLAN_SEATS_TRAIT = {"free": 0.0, "starter": 0.25, "growth": 0.4, "enterprise": 1.0}
# Share of accounts whose `projects_used` is at 80-100% of the plan's project limit.
NEAR_PROJECT_LIMIT_SHARE = 0.15

TEAM_NAMES = (
    "engineering", "design", "marketing", "sales", "operations",
    "support", "product", "finance", "legal", "people",
)
FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kemi", "Liam", "Maya", "Nils", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
    "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe",
)
LAST_NAMES = (
    "Adams", "Bauer", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ivanova",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Patel", "Rossi", "Silva",
    "Tanaka", "Urbina", "Vogel", "Wang", "Yilmaz", "Zimmermann",
)
COMPANY_WORDS = (
    "Acme", "Bright", "Cedar", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
    "Kestrel", "Lumen", "Maple", "Nimbus", "Orbit", "Pioneer", "Quartz", "Riverside", "Summit",
    "Tidal", "Umber", "Vertex", "Willow", "Zephyr",
)
COMPANY_SUFFIXES = ("Labs", "Studio", "Group", "Systems", "Works", "Partners", "Co", "Digital")
WEB_PAGES = ("Dashboard", "Projects", "Tasks", "Reports", "Calendar", "Settings", "Integrations")
MOBILE_SCREENS = ("Task List", "Task Detail", "Inbox", "Project Board")
MARKETING_PAGES = ("Home", "Pricing", "Features", "Customers", "Sign Up")


@dataclass(frozen=True)
class Persona:
    """A behavior pattern, with its share of the users and the minimum signup age, in days before
    `now`, that the pattern needs."""

    name: str
    share: float
    min_signup_age_days: float
    description: str


PERSONAS: tuple[Persona, ...] = (
    Persona("unactivated", 0.15, 0.0, "signs up and looks around, never creates a project"),
    Persona("light", 0.15, 0.0, "activates, then uses one or two features now and then"),
    Persona("regular", 0.30, 0.0, "activates and uses three to five features a few days a week"),
    Persona("power", 0.03, 0.0, "uses most features nearly every day"),
    Persona("champion", 0.04, 40.0, "power usage, NPS 9-10 and referrals in the last 90 days"),
    Persona("quiet", 0.09, 27.0, "activates, then goes quiet for the last 20-50 days"),
    Persona("declining", 0.05, 35.0, "used the product often, now on far fewer days"),
    Persona("troubled", 0.05, 10.0, "regular usage with a churn signal in the last 30 days"),
    Persona("cancelled", 0.06, 10.0, "cancels the subscription or deletes the account"),
    Persona("lapsed", 0.08, 70.0, "no activity for the last 61 days or more"),
)
# Personas whose users are still around at `now` and keep producing live events.
LIVE_PERSONAS = frozenset({"light", "regular", "power", "champion", "troubled"})
# Features of users who sign up during the live phase.
LIVE_SIGNUP_FEATURES = ("Task Created", "Comment Added", "Report Viewed")
# Chance that a live batch includes the signup of a new user.
LIVE_SIGNUP_CHANCE = 0.05
# Fallback for a persona whose signup age does not fit into a short history window.
FALLBACK_PERSONA = "regular"


@dataclass
class Account:
    """A customer company: a Segment `group` with its plan, seat and usage traits."""

    account_id: str
    name: str
    plan: str
    seats: int | None
    # Projects in use at `now`; group calls before `now` report a proportional part of it.
    projects_used: int
    teams: tuple[str, ...]
    created_ms: int = 0
    owner: User | None = None


@dataclass
class User:
    """A person at one account, with the persona that drives their events."""

    user_id: str
    name: str
    email: str
    account: Account
    persona: str
    signup_ms: int
    # Value of the `team` identify trait, or None when the user has none.
    team_trait: str | None
    # Value of the `team_id` event property, or None when events carry none.
    team_property: str | None
    # Set for users who browsed anonymously before signing up.
    anonymous_id: str | None
    # Whether the anonymous id is linked by an `alias` call instead of by `identify`.
    links_by_alias: bool
    # Mobile users send `screen` calls instead of `page` calls.
    mobile: bool
    features: tuple[str, ...]
    # Running totals of the features' `FEATURE_WEIGHTS`, for `random.choices(cum_weights=...)`.
    feature_cum_weights: tuple[int, ...]
    # Probability of a session on any given day while the user is active.
    daily_rate: float
    # Feature events per session, inclusive range.
    session_events: tuple[int, int]


def to_epoch_ms(moment: datetime) -> int:
    """Convert a datetime to epoch milliseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


_DATE_CACHE: dict[int, str] = {}


def format_iso_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as ISO-8601 UTC with milliseconds and a `Z` suffix."""
    day, rest = divmod(epoch_ms, DAY_MS)
    date = _DATE_CACHE.get(day)
    if date is None:
        date = _DATE_CACHE[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
    hours, rest = divmod(rest, HOUR_MS)
    minutes, rest = divmod(rest, MINUTE_MS)
    seconds, millis = divmod(rest, 1000)
    return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


class _FastRandom(random.Random):
    """`random.Random` whose `randint` and `choice` take one `random()` call each.

    The stock versions draw bits until a value falls in range, which was a large share of the cost of
    generating a history. These are as deterministic. Over n values, their bias is at most n / 2**53.
    """

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]


# The maximum number of messages in one live batch, besides a new signup's messages now and then.
LIVE_BATCH_MAX = 6


def _cumulative_weights(features: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(itertools.accumulate(FEATURE_WEIGHTS.get(feature, 5) for feature in features))


def _random_id(rng: random.Random) -> str:
    return "%032x" % rng.getrandbits(128)


class _Emitter:
    """A list of messages being built. Timestamps stay epoch milliseconds until `finish`."""

    def __init__(self, rng: random.Random, after_ms: int, until_ms: int) -> None:
        self.rng = rng
        self.after_ms = after_ms
        self.until_ms = until_ms
        self.messages: list[dict] = []

    def _message(self, kind: str, user: User, at_ms: int, *, anonymous: bool = False) -> dict:
        message = {"type": kind, "messageId": _random_id(self.rng)}
        if anonymous:
            message["anonymousId"] = user.anonymous_id
        else:
            message["userId"] = user.user_id
        message["timestamp"] = at_ms
        return message

    @staticmethod
    def _context(user: User | None = None) -> dict:
        context = {"library": {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}}
        if user is not None:
            context["groupId"] = user.account.account_id
        return context

    def track(self, user: User, at_ms: int, event: str, properties: dict) -> None:
        message = self._message("track", user, at_ms)
        message["event"] = event
        message["properties"] = properties
        message["context"] = self._context(user)
        self.messages.append(message)

    def page(self, user: User, at_ms: int, name: str, *, anonymous: bool = False) -> None:
        message = self._message("page", user, at_ms, anonymous=anonymous)
        path = "/" + name.lower().replace(" ", "-")
        message["name"] = name
        message["properties"] = {"path": path, "url": "https://app.taskloom.example" + path}
        message["context"] = self._context(None if anonymous else user)
        self.messages.append(message)

    def screen(self, user: User, at_ms: int, name: str) -> None:
        message = self._message("screen", user, at_ms)
        message["name"] = name
        message["properties"] = {}
        message["context"] = self._context(user)
        self.messages.append(message)

    def identify(self, user: User, at_ms: int, traits: dict, *, with_anonymous: bool = False) -> None:
        message = self._message("identify", user, at_ms)
        if with_anonymous:
            message["anonymousId"] = user.anonymous_id
        message["traits"] = traits
        message["context"] = self._context()
        self.messages.append(message)

    def alias(self, user: User, at_ms: int) -> None:
        message = self._message("alias", user, at_ms)
        message["previousId"] = user.anonymous_id
        message["context"] = self._context()
        self.messages.append(message)

    def group(self, user: User, at_ms: int, traits: dict) -> None:
        message = self._message("group", user, at_ms)
        message["groupId"] = user.account.account_id
        message["traits"] = traits
        message["context"] = self._context()
        self.messages.append(message)

    def finish(self) -> list[dict]:
        """Drop messages outside (after_ms, until_ms], sort the rest by time, format timestamps."""
        kept = [m for m in self.messages if self.after_ms < m["timestamp"] <= self.until_ms]
        kept.sort(key=lambda message: message["timestamp"])
        for message in kept:
            message["timestamp"] = format_iso_ms(message["timestamp"])
        return kept


class _Population:
    """Accounts and users, built once from the population seed."""

    def __init__(self, rng: random.Random, users: int, accounts: int, now_ms: int, history_days: int):
        self.rng = rng
        self.now_ms = now_ms
        self.history_days = history_days
        self.accounts = [self._new_account(index) for index in range(accounts)]
        members = self._account_slots(users)
        personas = self._persona_sequence(users)
        self.users = [
            self._new_user(index, self.accounts[members[index]], personas[index])
            for index in range(users)
        ]
        self._finish_accounts()

    def _new_account(self, index: int) -> Account:
        rng = self.rng
        plan = rng.choices(list(PLAN_SHARES), weights=list(PLAN_SHARES.values()))[0]
        name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIXES)}"
        low, high = PLAN_TEAMS[plan]
        teams = tuple(rng.sample(TEAM_NAMES, rng.randint(low, high)))
        project_limit = PLANS[plan].limits.get("projects")
        if project_limit is None:
            projects_used = rng.randint(20, 800)
        elif rng.random() < NEAR_PROJECT_LIMIT_SHARE:
            projects_used = rng.randint(math.ceil(0.8 * project_limit), int(project_limit))
        else:
            projects_used = rng.randint(1, max(1, int(0.6 * project_limit)))
        # The seat count depends on the members, so `_finish_accounts` sets it.
        return Account(f"acct_{index:04d}", name, plan, None, projects_used, teams)

    def _account_slots(self, users: int) -> list[int]:
        """Return, for each user index, the index of the user's account."""
        if users == 0:
            return []
        if not self.accounts:
            raise ValueError(f"accounts must be 1 or more when users is {users}, got 0")
        slots = []
        for index, account in enumerate(self.accounts):
            low, high = PLAN_MEMBERS[account.plan]
            slots.extend([index] * self.rng.randint(low, high))
        self.rng.shuffle(slots)
        if len(slots) < users:
            # Extra users join the accounts of paid plans, weighted by their size.
            paid = [index for index in slots if self.accounts[index].plan != "free"] or slots
            slots.extend(self.rng.choice(paid) for _ in range(users - len(slots)))
        return slots[:users]

    def _persona_sequence(self, users: int) -> list[str]:
        """Return one persona per user: counts by largest remainder, at least one of each persona
        when there are enough users, in shuffled order."""
        exact = [persona.share * users for persona in PERSONAS]
        counts = [int(value) for value in exact]
        if users >= len(PERSONAS):
            counts = [max(1, count) for count in counts]
        by_remainder = sorted(range(len(PERSONAS)), key=lambda i: exact[i] - int(exact[i]), reverse=True)
        position = 0
        while sum(counts) < users:
            counts[by_remainder[position % len(PERSONAS)]] += 1
            position += 1
        while sum(counts) > users:
            largest = max(range(len(PERSONAS)), key=lambda i: counts[i])
            counts[largest] -= 1
        sequence = [persona.name for persona, count in zip(PERSONAS, counts) for _ in range(count)]
        self.rng.shuffle(sequence)
        return sequence

    def _persona_signup(self, persona: str) -> tuple[str, int]:
        """Pick a signup time for a persona. Return the persona and the time, or the fallback
        persona and a time when the history window is shorter than the persona's minimum age."""
        minimum = next(p.min_signup_age_days for p in PERSONAS if p.name == persona)
        # Anonymous visits come up to a day before the signup, so they stay inside the window.
        maximum = self.history_days - 1.0
        if minimum > maximum:
            persona, minimum = FALLBACK_PERSONA, 0.0
        age_days = self.rng.uniform(minimum, max(minimum, maximum))
        return persona, self.now_ms - int(age_days * DAY_MS)

    def _new_user(self, index: int, account: Account, persona: str) -> User:
        rng = self.rng
        persona, signup_ms = self._persona_signup(persona)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        domain = account.name.lower().replace(" ", "") + ".example"
        team = rng.choice(account.teams) if account.teams else None
        has_team_trait = team is not None and rng.random() < 0.75
        has_team_property = team is not None and (not has_team_trait or rng.random() < 0.5)
        anonymous_id = _random_id(rng) if rng.random() < 0.4 else None
        features, daily_rate, session_events = self._usage_profile(persona)
        return User(
            user_id=f"user_{index:05d}",
            name=f"{first} {last}",
            email=f"{first.lower()}.{last.lower()}.{index}@{domain}",
            account=account,
            persona=persona,
            signup_ms=signup_ms,
            team_trait=team if has_team_trait else None,
            team_property=team if has_team_property else None,
            anonymous_id=anonymous_id,
            links_by_alias=anonymous_id is not None and rng.random() < 0.2,
            mobile=rng.random() < 0.15,
            features=features,
            feature_cum_weights=_cumulative_weights(features),
            daily_rate=daily_rate,
            session_events=session_events,
        )

    def _usage_profile(self, persona: str) -> tuple[tuple[str, ...], float, tuple[int, int]]:
        """Return the core features a persona's user adopts, their daily session probability and
        the range of feature events per session."""
        rng = self.rng
        if persona == "unactivated":
            # Invited collaborators sometimes comment without ever creating a project.
            return (("Comment Added",) if rng.random() < 0.3 else ()), 0.15, (0, 1)
        if persona == "light":
            return tuple(rng.sample(LIGHT_FEATURES, rng.randint(1, 2))), rng.uniform(0.1, 0.2), (1, 2)
        if persona in ("power", "champion"):
            others = [f for f in CORE_FEATURES if f != "Task Created"]
            picked = ("Task Created", *rng.sample(others, rng.randint(4, len(others))))
            return picked, rng.uniform(0.8, 0.9), (1, 3)
        others = [f for f in CORE_FEATURES if f != "Task Created"]
        picked = ("Task Created", *rng.sample(others, rng.randint(2, 4)))
        return picked, rng.uniform(0.12, 0.25), (1, 3)

    def _finish_accounts(self) -> None:
        members: dict[str, list[User]] = {}
        for user in self.users:
            members.setdefault(user.account.account_id, []).append(user)
        for account in self.accounts:
            people = members.get(account.account_id, [])
            if not people:
                continue
            account.owner = min(people, key=lambda user: user.signup_ms)
            account.created_ms = account.owner.signup_ms
            if self.rng.random() < PLAN_SEATS_TRAIT[account.plan]:
                # Purchased seats: between the members in use and 2.5 times that.
                account.seats = math.ceil(len(people) / self.rng.uniform(0.4, 1.0))


class _Company:
    """The building blocks of user behavior (visits, signups, account updates), emitted as messages."""

    def __init__(self, emitter: _Emitter, now_ms: int) -> None:
        self.out = emitter
        self.rng = emitter.rng
        self.now_ms = now_ms

    # Building blocks.

    def account_traits(self, account: Account, at_ms: int) -> dict:
        lifetime = max(1, self.now_ms - account.created_ms)
        progress = min(1.0, max(0.0, (at_ms - account.created_ms) / lifetime))
        traits = {
            "name": account.name,
            "plan": account.plan,
            "projects_used": max(1, round(account.projects_used * progress)),
        }
        if account.seats is not None:
            traits["seats"] = account.seats
        return traits

    def user_traits(self, user: User) -> dict:
        traits = {"email": user.email, "name": user.name, "createdAt": format_iso_ms(user.signup_ms)}
        if user.team_trait is not None:
            traits["team"] = user.team_trait
        return traits

    def feature_properties(self, user: User, event: str) -> dict:
        rng = self.rng
        account = user.account
        if event == ACTIVATION_EVENT:
            properties = {"project_id": f"{account.account_id}-p{rng.randint(1, 9999)}",
                          "template": rng.choice(("blank", "kanban", "sprint", "roadmap"))}
        elif event == "Task Created":
            properties = {"project_id": f"{account.account_id}-p{rng.randint(1, 9999)}",
                          "priority": rng.choice(("low", "normal", "normal", "high"))}
        elif event == "Comment Added":
            properties = {"length": rng.randint(5, 400)}
        elif event == "File Uploaded":
            properties = {"file_type": rng.choice(("pdf", "png", "docx", "xlsx")),
                          "size_kb": rng.randint(10, 20_000)}
        elif event == "Report Viewed":
            properties = {"report": rng.choice(("burndown", "workload", "velocity", "overdue"))}
        elif event == "Integration Connected":
            properties = {"integration": rng.choice(("slack", "github", "google-drive", "jira"))}
        elif event == "Automation Created":
            properties = {"trigger": rng.choice(("task-moved", "due-date", "form-submitted"))}
        elif event == "Dashboard Shared":
            properties = {"shared_with": rng.choice(("team", "workspace", "public-link"))}
        else:
            properties = {}
        if user.team_property is not None and event in TEAM_EVENTS:
            properties["team_id"] = user.team_property
        return properties

    def view(self, user: User, at_ms: int) -> None:
        if user.mobile and self.rng.random() < 0.6:
            self.out.screen(user, at_ms, self.rng.choice(MOBILE_SCREENS))
        else:
            self.out.page(user, at_ms, self.rng.choice(WEB_PAGES))

    def session(self, user: User, start_ms: int, end_ms: int, extra: tuple[str, ...] = ()) -> None:
        """Emit one visit starting at `start_ms`: a page view, the `extra` track events, then feature
        events a few minutes apart. Feature events after `end_ms` are left out. The extra events
        are the reason for the visit, so they are always emitted, each within 2 minutes of the last."""
        self.view(user, start_ms)
        at_ms = start_ms
        for event in extra:
            at_ms += self.rng.randint(20_000, 2 * MINUTE_MS)
            self.extra_event(user, at_ms, event)
        if not user.features:
            return
        low, high = user.session_events
        count = self.rng.randint(low, high)
        for event in self.rng.choices(user.features, cum_weights=user.feature_cum_weights, k=count):
            at_ms += self.rng.randint(20_000, 4 * MINUTE_MS)
            if at_ms > end_ms:
                return
            self.out.track(user, at_ms, event, self.feature_properties(user, event))

    def extra_event(self, user: User, at_ms: int, event: str) -> None:
        rng = self.rng
        if event == NPS_EVENT:
            self.out.track(user, at_ms, NPS_EVENT, {"score": self.nps_score(user)})
        elif event == REFERRAL_SENT:
            self.out.track(user, at_ms, REFERRAL_SENT, {"channel": rng.choice(("email", "link"))})
        elif event == INVITE_SENT:
            self.out.track(user, at_ms, INVITE_SENT, {"role": rng.choice(("member", "guest"))})
        elif event == ACTIVATION_EVENT:
            self.out.track(user, at_ms, event, self.feature_properties(user, event))
        else:
            raise ValueError(f"unknown extra event {event!r}")

    def nps_score(self, user: User) -> int:
        rng = self.rng
        if user.persona == "champion":
            return rng.randint(9, 10)
        if user.persona == "power":
            return rng.randint(7, 8)
        roll = rng.random()
        if roll < 0.2:
            return rng.randint(0, 6)
        return rng.randint(7, 8) if roll < 0.6 else rng.randint(9, 10)

    def session_window(self, day_start_ms: int, after_ms: int, until_ms: int) -> tuple[int, int] | None:
        """Return the range of session start times on one UTC day inside (after_ms, until_ms],
        preferring 07:00-21:00 UTC, or None when the day has no room."""
        day_end_ms = day_start_ms + DAY_MS - 1
        low = max(day_start_ms + 7 * HOUR_MS, after_ms + 1)
        high = min(day_start_ms + 21 * HOUR_MS, until_ms)
        if low > high:
            low, high = max(day_start_ms, after_ms + 1), min(day_end_ms, until_ms)
        return (low, high) if low <= high else None

    def days(self, after_ms: int, until_ms: int) -> list[int]:
        """Return the start of every UTC day that overlaps (after_ms, until_ms]."""
        first = (after_ms + 1) // DAY_MS * DAY_MS
        return list(range(first, until_ms + 1, DAY_MS))

    def sessions_at_rate(self, user: User, after_ms: int, until_ms: int, rate: float) -> None:
        """Emit a session on each UTC day of (after_ms, until_ms] with probability `rate`. Each
        session stays inside its own day, so each one is exactly one active day."""
        for day_start in self.days(after_ms, until_ms):
            if self.rng.random() < rate:
                self._session_on_day(user, day_start, after_ms, until_ms)

    def sessions_on_days(self, user: User, after_ms: int, until_ms: int, count: int) -> None:
        """Emit sessions on `count` distinct UTC days of (after_ms, until_ms], or on every day if
        there are fewer."""
        days = [d for d in self.days(after_ms, until_ms) if self.session_window(d, after_ms, until_ms)]
        for day_start in sorted(self.rng.sample(days, min(count, len(days)))):
            self._session_on_day(user, day_start, after_ms, until_ms)

    def _session_on_day(self, user: User, day_start: int, after_ms: int, until_ms: int) -> None:
        window = self.session_window(day_start, after_ms, until_ms)
        if window is not None:
            start = self.rng.randint(*window)
            self.session(user, start, min(day_start + DAY_MS - 1, until_ms))

    def extra_session(self, user: User, after_ms: int, until_ms: int, extra: tuple[str, ...]) -> None:
        """Emit one session with `extra` events at a random time in (after_ms, until_ms], starting
        early enough that the extra events fall inside it too."""
        after_ms = max(after_ms, user.signup_ms + HOUR_MS)
        if after_ms >= until_ms:
            return
        latest_start = max(after_ms + 1, until_ms - 10 * MINUTE_MS * len(extra))
        start = self.rng.randint(after_ms + 1, min(latest_start, until_ms))
        day_end = start // DAY_MS * DAY_MS + DAY_MS - 1
        self.session(user, start, min(day_end, until_ms), extra)

    # Lifecycle steps.

    def sign_up(self, user: User, activates: bool) -> int:
        """Emit the anonymous visits, identify, alias, group and `Signed Up` calls, and the first
        project when the user activates at once. Return the end of the signup visit."""
        rng = self.rng
        at_ms = user.signup_ms
        if user.anonymous_id is not None:
            visit_ms = at_ms - rng.randint(10 * MINUTE_MS, DAY_MS - 30 * MINUTE_MS)
            for _ in range(rng.randint(1, 4)):
                self.out.page(user, visit_ms, rng.choice(MARKETING_PAGES), anonymous=True)
                visit_ms += rng.randint(MINUTE_MS, 5 * MINUTE_MS)
            if user.links_by_alias:
                self.out.alias(user, at_ms)
        self.out.identify(user, at_ms + 1000, self.user_traits(user),
                          with_anonymous=user.anonymous_id is not None and not user.links_by_alias)
        self.out.group(user, at_ms + 2000, self.account_traits(user.account, at_ms))
        self.out.track(user, at_ms + 3000, SIGNUP_EVENT,
                       {"method": rng.choice(("email", "google", "invite")), "plan": user.account.plan})
        at_ms += 3000
        if activates:
            at_ms += rng.randint(MINUTE_MS, 20 * MINUTE_MS)
            self.out.track(user, at_ms, ACTIVATION_EVENT, self.feature_properties(user, ACTIVATION_EVENT))
        return at_ms

    def activate_later(self, user: User, after_ms: int, until_ms: int) -> int:
        """Emit the first project in a session within 3 days after `after_ms`; return the end of
        that session's UTC day."""
        until_ms = min(until_ms, after_ms + 3 * DAY_MS)
        start = self.rng.randint(after_ms + 1, max(after_ms + 1, until_ms))
        day_end = start // DAY_MS * DAY_MS + DAY_MS - 1
        self.session(user, start, min(day_end, self.now_ms), (ACTIVATION_EVENT,))
        return day_end

    def account_updates(self, account: Account) -> None:
        """Emit a monthly `group` call from the account's owner with its current usage traits."""
        if account.owner is None:
            return
        at_ms = account.created_ms + 30 * DAY_MS
        while at_ms <= self.now_ms:
            self.out.group(account.owner, at_ms, self.account_traits(account, at_ms))
            at_ms += 30 * DAY_MS

    def maybe_nps(self, user: User, active_until_ms: int, chance: float) -> None:
        if self.rng.random() < chance:
            self.extra_session(user, user.signup_ms + 14 * DAY_MS, active_until_ms, (NPS_EVENT,))

    def maybe_invite(self, user: User, active_until_ms: int, chance: float) -> None:
        if self.rng.random() < chance:
            self.extra_session(user, user.signup_ms, active_until_ms, (INVITE_SENT,))


class _History:
    """The persona scripts, each of which plays one user from signup to `now`."""

    def __init__(self, company: _Company, now_ms: int) -> None:
        self.company = company
        self.rng = company.rng
        self.now_ms = now_ms

    def play(self, user: User) -> None:
        getattr(self, "_play_" + user.persona)(user)

    def _active_regularly(self, user: User, until_ms: int) -> None:
        """Sign up, activate, and visit at the user's daily rate until `until_ms`."""
        company = self.company
        after_ms = company.sign_up(user, activates=True)
        company.sessions_at_rate(user, after_ms, until_ms, user.daily_rate)

    def _play_unactivated(self, user: User) -> None:
        company = self.company
        after_ms = company.sign_up(user, activates=False)
        # A first week of looking around, then half of them drop by now and then.
        first_week_end = min(self.now_ms, after_ms + 7 * DAY_MS)
        company.sessions_at_rate(user, after_ms, first_week_end, 0.4)
        if self.rng.random() < 0.5:
            company.sessions_at_rate(user, first_week_end, self.now_ms, user.daily_rate / 3)

    def _play_light(self, user: User) -> None:
        self._active_regularly(user, self.now_ms)
        # At least one visit in the last 10 days keeps the user inside the 14-day activity window.
        self.company.extra_session(user, self.now_ms - 10 * DAY_MS, self.now_ms, ())

    def _play_regular(self, user: User) -> None:
        activates_at_once = self.rng.random() < 0.7
        if activates_at_once:
            self._active_regularly(user, self.now_ms)
        else:
            after_ms = self.company.sign_up(user, activates=False)
            after_ms = self.company.activate_later(user, after_ms, self.now_ms)
            self.company.sessions_at_rate(user, after_ms, self.now_ms, user.daily_rate)
        self.company.maybe_nps(user, self.now_ms, 0.35)
        self.company.maybe_invite(user, self.now_ms, 0.2)

    def _play_power(self, user: User) -> None:
        self._active_regularly(user, self.now_ms)
        self.company.maybe_nps(user, self.now_ms, 0.3)
        self.company.maybe_invite(user, self.now_ms, 0.3)

    def _play_champion(self, user: User) -> None:
        self._active_regularly(user, self.now_ms)
        company = self.company
        # The latest NPS score (9 or 10) is from the last 60 days, inside both NPS windows.
        company.extra_session(user, self.now_ms - 60 * DAY_MS, self.now_ms, (NPS_EVENT,))
        for _ in range(self.rng.randint(2, 4)):
            event = REFERRAL_SENT if self.rng.random() < 0.5 else INVITE_SENT
            company.extra_session(user, self.now_ms - 80 * DAY_MS, self.now_ms, (event,))

    def _play_quiet(self, user: User) -> None:
        quiet_days = self.rng.uniform(20, 50)
        last_ms = max(user.signup_ms + 3 * DAY_MS, self.now_ms - int(quiet_days * DAY_MS))
        self._active_regularly(user, last_ms)
        # The last visit falls in the 3 days before the quiet period starts.
        self.company.extra_session(user, last_ms - 3 * DAY_MS, last_ms, ())
        self.company.maybe_nps(user, last_ms, 0.2)

    def _play_declining(self, user: User) -> None:
        company = self.company
        earlier_end = self.now_ms - 28 * DAY_MS
        decline_start = self.now_ms - 14 * DAY_MS
        self._active_regularly(user, earlier_end)
        # At-Risk decline: 6-10 active days in (T-28d, T-14d], then only 1-2 in (T-14d, T].
        company.sessions_on_days(user, earlier_end, decline_start, self.rng.randint(6, 10))
        company.sessions_on_days(user, decline_start, self.now_ms, self.rng.randint(1, 2))

    def _play_troubled(self, user: User) -> None:
        self._active_regularly(user, self.now_ms)
        company = self.company
        rng = self.rng
        signal_ms = self.now_ms - rng.randint(HOUR_MS, 28 * DAY_MS)
        signal_ms = max(signal_ms, user.signup_ms + HOUR_MS)
        roll = rng.random()
        if roll < 0.5:
            for attempt in range(1, rng.randint(1, 3) + 1):
                properties = {"amount": rng.choice((12, 29, 49, 99)) * 100, "currency": "USD",
                              "attempt": attempt}
                company.out.track(user, signal_ms, PAYMENT_FAILED, properties)
                signal_ms += rng.randint(1, 3) * DAY_MS
        elif roll < 0.8:
            properties = {"ticket_id": f"T-{rng.randint(10_000, 99_999)}",
                          "priority": rng.choice(("high", "urgent"))}
            company.out.track(user, signal_ms, TICKET_ESCALATED, properties)
        else:
            properties = {"plan": user.account.plan, "seats_removed": rng.randint(1, 5)}
            company.out.track(user, signal_ms, SUBSCRIPTION_DOWNGRADED, properties)

    def _play_cancelled(self, user: User) -> None:
        company = self.company
        rng = self.rng
        age_ms = self.now_ms - user.signup_ms
        cancel_ms = user.signup_ms + int(age_ms * rng.uniform(0.3, 0.95))
        self._active_regularly(user, cancel_ms - HOUR_MS)
        roll = rng.random()
        if roll < 0.85:
            event = SUBSCRIPTION_CANCELLED if roll < 0.6 else ACCOUNT_DELETED
            reason = rng.choice(("too-expensive", "missing-feature", "switched-tool", "project-ended"))
            company.out.track(user, cancel_ms, event, {"reason": reason})
        if roll >= 0.1:
            traits = dict(company.user_traits(user), status="cancelled")
            company.out.identify(user, cancel_ms + 1000, traits)

    def _play_lapsed(self, user: User) -> None:
        age_days = (self.now_ms - user.signup_ms) / DAY_MS
        lapse_days = self.rng.uniform(61, max(61.0, min(150.0, age_days - 5)))
        last_ms = max(user.signup_ms + HOUR_MS, self.now_ms - int(lapse_days * DAY_MS))
        self._active_regularly(user, last_ms)
        self.company.maybe_nps(user, last_ms, 0.15)


class Simulator:
    """A simulated project-management SaaS company.

    `history()` returns every message of the `history_days` days up to `now`; `live_batch()` continues
    from there. `now` defaults to the current time (truncated to milliseconds); a naive datetime is UTC.
    """

    def __init__(
        self,
        seed: int = 7,
        users: int = 5000,
        accounts: int = 500,
        history_days: int = 180,
        now: datetime | None = None,
    ) -> None:
        if users < 0 or accounts < 0:
            raise ValueError(f"users and accounts must be 0 or more, got {users} and {accounts}")
        if history_days < 1:
            raise ValueError(f"history_days must be 1 or more, got {history_days}")
        self.seed = seed
        self.history_days = history_days
        self.now_ms = to_epoch_ms(now if now is not None else datetime.now(timezone.utc))
        self.now = datetime.fromtimestamp(self.now_ms / 1000, timezone.utc)
        population = _Population(_FastRandom(f"segops-demo/{seed}/population"),
                                 users, accounts, self.now_ms, history_days)
        self.accounts: list[Account] = population.accounts
        self.users: list[User] = population.users
        self._live_rng = _FastRandom(f"segops-demo/{seed}/live")
        self._live_clock_ms = self.now_ms
        self._live_signups = 0
        self._live_users = [user for user in self.users if user.persona in LIVE_PERSONAS]
        self._live_weights = [user.daily_rate for user in self._live_users]

    def history(self) -> list[dict]:
        """Return every message of (now - history_days, now], sorted by timestamp."""
        # The messages are acyclic, so the cyclic garbage collector only slows the build down.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._build_history()
        finally:
            if collecting:
                gc.enable()

    def _build_history(self) -> list[dict]:
        emitter = _Emitter(_FastRandom(f"segops-demo/{self.seed}/history"),
                           self.now_ms - self.history_days * DAY_MS, self.now_ms)
        company = _Company(emitter, self.now_ms)
        history = _History(company, self.now_ms)
        for user in self.users:
            history.play(user)
        for account in self.accounts:
            company.account_updates(account)
        return emitter.finish()

    def live_batch(self, now: datetime) -> list[dict]:
        """Return 1-6 new messages timed in (end of the previous batch, now], sorted by timestamp.

        The live rate, about one message a second at one batch every 3 seconds, is already many
        times the history's daily rate, so larger batches would move the populations minute by
        minute.

        The first batch continues from the simulator's `now`. When `now` is not later than the
        previous batch's end, every message is timed at the previous end. Each message is one
        page view or feature event of a user who is still around. Now and then a new user also
        signs up at an existing account.
        """
        rng = self._live_rng
        after_ms = self._live_clock_ms
        now_ms = max(to_epoch_ms(now), after_ms)
        self._live_clock_ms = now_ms
        # With an empty interval the window must still include `now` itself.
        emitter = _Emitter(rng, min(after_ms, now_ms - 1), now_ms)
        company = _Company(emitter, now_ms)
        target = rng.randint(1, LIVE_BATCH_MAX)
        if rng.random() < LIVE_SIGNUP_CHANCE or not self._live_users:
            self._live_signup(company, self._live_time(after_ms, now_ms))
        while len(emitter.messages) < target:
            user = rng.choices(self._live_users, weights=self._live_weights)[0]
            at_ms = self._live_time(after_ms, now_ms)
            if not user.features or rng.random() < 0.3:
                company.view(user, at_ms)
            else:
                event = rng.choice(user.features)
                emitter.track(user, at_ms, event, company.feature_properties(user, event))
        return emitter.finish()

    def _live_time(self, after_ms: int, now_ms: int) -> int:
        return self._live_rng.randint(after_ms + 1, now_ms) if now_ms > after_ms else now_ms

    def _live_signup(self, company: _Company, at_ms: int) -> None:
        """Emit the signup of a new user at a random existing account, or at a new one-person
        account when the company has none. All its calls share one timestamp, in call order."""
        rng = self._live_rng
        user = self._new_live_user(at_ms)
        account = user.account
        out = company.out
        out.identify(user, at_ms, company.user_traits(user))
        out.group(user, at_ms, company.account_traits(account, at_ms))
        out.track(user, at_ms, SIGNUP_EVENT, {"method": rng.choice(("email", "google", "invite")),
                                              "plan": account.plan})
        if rng.random() < 0.6:
            out.track(user, at_ms, ACTIVATION_EVENT, company.feature_properties(user, ACTIVATION_EVENT))
        self._live_users.append(user)
        self._live_weights.append(user.daily_rate)

    def _new_live_user(self, at_ms: int) -> User:
        rng = self._live_rng
        index = len(self.users) + self._live_signups
        self._live_signups += 1
        if self.accounts:
            account = rng.choice(self.accounts)
        else:
            account = Account(f"acct_live_{index}", "Solo Workspace", "free", None, 1, ())
            self.accounts.append(account)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        domain = account.name.lower().replace(" ", "") + ".example"
        team = rng.choice(account.teams) if account.teams else None
        user = User(
            user_id=f"user_{index:05d}",
            name=f"{first} {last}",
            email=f"{first.lower()}.{last.lower()}.{index}@{domain}",
            account=account,
            persona="regular",
            signup_ms=at_ms,
            team_trait=team,
            team_property=team,
            anonymous_id=None,
            links_by_alias=False,
            mobile=False,
            features=LIVE_SIGNUP_FEATURES,
            feature_cum_weights=_cumulative_weights(LIVE_SIGNUP_FEATURES),
            daily_rate=0.3,
            session_events=(1, 3),
        )
        if account.owner is None:
            account.owner = user
            account.created_ms = at_ms
        return user


# --- responses to playbook actions ----------------------------------------------------------------

EMAIL_DELIVERED, EMAIL_OPENED, EMAIL_CLICKED = _TAXONOMY.email_events[:3]
# Chance of each email event, given the previous one: delivered of sent, opened of delivered,
# clicked of opened.
EMAIL_DELIVERED_SHARE = 0.95
EMAIL_OPENED_SHARE = 0.45
EMAIL_CLICKED_SHARE = 0.35
# Seconds after the action at which each response arrives, as (low, high).
RESPONSE_DELAYS = {EMAIL_DELIVERED: (1.0, 3.0), EMAIL_OPENED: (3.0, 8.0), EMAIL_CLICKED: (5.0, 10.0),
                 "outcome": (6.0, 15.0)}
# Core features that a discovery campaign is about: the advanced ones.
DISCOVERY_FEATURES = ("Automation Created", "Integration Connected", "Dashboard Shared")


@dataclass(frozen=True)
class Outcome:
    """The result a playbook's segment calls for, and its chance for treated and held-out users."""

    kind: str
    treated: float
    baseline: float


# Treated users reach the outcome more often than held-out users, who only have the baseline.
OUTCOMES: dict[str, Outcome] = {
    "Not-Yet-Activated": Outcome("activation", 0.35, 0.10),
    "Activated-Not-Retained": Outcome("activity", 0.40, 0.15),
    "At-Risk": Outcome("activity", 0.35, 0.15),
    "Churned": Outcome("activity", 0.15, 0.05),
    "Below-Threshold Usage": Outcome("feature", 0.30, 0.10),
    "Champion": Outcome("referral", 0.25, 0.08),
}
DEFAULT_OUTCOME = Outcome("engagement", 0.25, 0.10)


class ActionResponder:
    """The simulated users' responses to playbook actions that reach the demo CDP.

    An email is delivered to most users, opened by a share of them and clicked by a smaller
    share. Once per run and user, the user may reach the playbook's outcome (a first project, new
    activity, a new feature), more often when treated than when held out. The responses to an action
    depend only on the seed and the action's idempotency key, not on the order actions arrive.
    """

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._decided: set[tuple[object, str]] = set()
        self._users: dict[str, User] | None = None

    def respond(self, action: dict, at_ms: int, delay_scale: float = 1.0) -> list[tuple[float, dict]]:
        """Return the messages the user sends back for `action` (as the demo CDP received it at
        `at_ms`), each with its delay in seconds, ordered by delay. `delay_scale` shortens or
        stretches every delay; each message's timestamp is `at_ms` plus its delay."""
        rng = _FastRandom(f"segops-demo/{self.simulator.seed}/action/{action['idempotency_key']}")
        user_id = action["user_id"]
        user = self._user(user_id)
        properties = {"playbook": action["playbook"], "run_id": action["run_id"], "action_id": action["action_id"],
                      "content": action.get("content")}
        responses: list[tuple[float, dict]] = []

        def add(kind: str, event: str, extra: dict, message_type: str = "track", after: float = 0.0) -> None:
            low, high = RESPONSE_DELAYS[kind]
            delay = (rng.uniform(low, high) + after) * delay_scale
            responses.append((delay, self._message(rng, message_type, user_id, user, at_ms + int(delay * 1000),
                                                 event, extra)))

        if not action["held_out"] and action.get("channel") == "email" and rng.random() < EMAIL_DELIVERED_SHARE:
            add(EMAIL_DELIVERED, EMAIL_DELIVERED, properties)
            if rng.random() < EMAIL_OPENED_SHARE:
                add(EMAIL_OPENED, EMAIL_OPENED, properties)
                if rng.random() < EMAIL_CLICKED_SHARE:
                    add(EMAIL_CLICKED, EMAIL_CLICKED, properties)

        decided = (action["run_id"], user_id)
        if decided not in self._decided:
            self._decided.add(decided)
            outcome = OUTCOMES.get(action.get("segment") or "", DEFAULT_OUTCOME)
            chance = outcome.baseline if action["held_out"] else outcome.treated
            if rng.random() < chance:
                # Each event of the outcome comes after the latest time the one before it can come.
                after = 0.0
                for event, extra, message_type in self._outcome_events(rng, outcome.kind, user):
                    add("outcome", event, extra, message_type, after)
                    after += RESPONSE_DELAYS["outcome"][1]
        responses.sort(key=lambda response: response[0])
        return responses

    def _user(self, user_id: str) -> User | None:
        simulator = self.simulator
        if self._users is None:
            self._users = {user.user_id: user for user in simulator.users}
        user = self._users.get(user_id)
        if user is None:
            # Users who signed up live are few, and only known to the live simulation.
            user = next((live for live in simulator._live_users if live.user_id == user_id), None)
        return user

    def _outcome_events(self, rng: random.Random, kind: str, user: User | None) -> list[tuple[str, dict, str]]:
        company = _Company(_Emitter(rng, 0, 0), self.simulator.now_ms)
        if kind == "activation":
            event = ACTIVATION_EVENT
        elif kind == "feature":
            unused = [feature for feature in DISCOVERY_FEATURES if user is None or feature not in user.features]
            event = rng.choice(unused or list(DISCOVERY_FEATURES))
        elif kind == "referral":
            event = REFERRAL_SENT
        elif kind == "activity":
            event = "Task Created"
        else:
            event = "Report Viewed"
        properties = company.feature_properties(user, event) if user is not None else {}
        events = [(event, properties, "track")]
        if kind == "activity":
            # Coming back starts with opening the app.
            events.insert(0, ("Dashboard", {"path": "/dashboard"}, "page"))
        return events

    @staticmethod
    def _message(rng: random.Random, message_type: str, user_id: str, user: User | None, at_ms: int,
                 name: str, properties: dict) -> dict:
        message = {"type": message_type, "messageId": _random_id(rng), "userId": user_id}
        if message_type == "page":
            message["name"] = name
        else:
            message["event"] = name
        message["properties"] = properties
        message["timestamp"] = format_iso_ms(at_ms)
        context: dict = {"library": {"name": LIBRARY_NAME, "version": LIBRARY_VERSION}}
        if user is not None:
            context["groupId"] = user.account.account_id
        message["context"] = context
        return message
