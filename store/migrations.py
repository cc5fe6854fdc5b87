"""Numbered schema migrations. Append only: a released migration never changes.

All times are epoch milliseconds, UTC.
"""

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            user_id TEXT,
            anonymous_id TEXT,
            -- The userId the message belongs to: its own, or the one an identify or alias linked its
            -- anonymousId to. linked_at is that link's event time (NULL for the message's own userId),
            -- so an evaluation at a time before the link ignores the message.
            user_key TEXT,
            linked_at INTEGER,
            event TEXT,
            -- groupId of a group call, else context.groupId.
            group_id TEXT,
            event_time INTEGER NOT NULL,
            time_field TEXT NOT NULL,
            received_at INTEGER NOT NULL,
            source TEXT NOT NULL,
            team_id TEXT,
            payload TEXT NOT NULL
        );
        -- Covers every per-user query of the segment engine, so an evaluation reads no table rows.
        CREATE INDEX messages_user_time
            ON messages (user_key, event_time, type, event, linked_at, group_id, team_id);
        CREATE INDEX messages_unlinked ON messages (anonymous_id) WHERE user_id IS NULL;
        -- Messages that become visible between two evaluation times, by event or link time.
        CREATE INDEX messages_time ON messages (event_time, user_key, group_id);
        CREATE INDEX messages_linked ON messages (linked_at, user_key) WHERE linked_at IS NOT NULL;
        CREATE INDEX messages_group ON messages (group_id, user_key, event_time, linked_at)
            WHERE group_id IS NOT NULL;
        -- Rare events (NPS answers) are read by name without scanning every message.
        CREATE INDEX messages_event ON messages (event, event_time) WHERE type = 'track';

        CREATE TABLE identity_links (
            anonymous_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            linked_at INTEGER NOT NULL,
            message_id TEXT NOT NULL
        );

        -- One row per top-level trait set by a message: scope 'user' (identify traits and
        -- context.traits) or 'account' (group traits). The entity comes from the message row.
        CREATE TABLE trait_updates (
            seq INTEGER NOT NULL REFERENCES messages (seq),
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT
        );
        CREATE INDEX trait_updates_seq ON trait_updates (seq);

        CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            location TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            received_at INTEGER NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX quarantine_reason ON quarantine (reason);

        -- A messageId seen again with a different payload: counted as a duplicate, kept here whole.
        CREATE TABLE duplicate_conflicts (
            id INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL,
            source TEXT NOT NULL,
            location TEXT NOT NULL,
            received_at INTEGER NOT NULL,
            payload TEXT NOT NULL
        );

        CREATE TABLE sources (
            name TEXT PRIMARY KEY,
            cursor TEXT,
            last_attempt_at INTEGER,
            last_success_at INTEGER,
            last_error TEXT,
            read INTEGER NOT NULL DEFAULT 0,
            stored INTEGER NOT NULL DEFAULT 0,
            duplicates INTEGER NOT NULL DEFAULT 0,
            quarantined INTEGER NOT NULL DEFAULT 0
        );

        CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY,
            evaluated_at INTEGER NOT NULL,
            started_at INTEGER NOT NULL,
            duration_ms INTEGER NOT NULL,
            users INTEGER NOT NULL,
            accounts INTEGER NOT NULL,
            -- The last message seq the evaluation covered, and its Power Users threshold.
            max_seq INTEGER NOT NULL,
            power_threshold INTEGER,
            kind TEXT NOT NULL DEFAULT 'full'
        );

        -- Entities that messages touched since the last evaluation: the incremental pass
        -- re-evaluates them and empties these tables.
        CREATE TABLE dirty_users (user_id TEXT PRIMARY KEY) WITHOUT ROWID;
        CREATE TABLE dirty_accounts (account_id TEXT PRIMARY KEY) WITHOUT ROWID;

        CREATE TABLE memberships (
            segment TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            since INTEGER NOT NULL,
            PRIMARY KEY (segment, entity_id)
        ) WITHOUT ROWID;
        CREATE INDEX memberships_entity ON memberships (entity_id);

        CREATE TABLE transitions (
            id INTEGER PRIMARY KEY,
            segment TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            entered INTEGER NOT NULL,
            at INTEGER NOT NULL,
            reason TEXT NOT NULL
        );
        CREATE INDEX transitions_entity ON transitions (entity_id, at);
        CREATE INDEX transitions_segment ON transitions (segment, at);

        CREATE TABLE snapshots (
            taken_at INTEGER NOT NULL,
            segment TEXT NOT NULL,
            population INTEGER NOT NULL,
            stale INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (taken_at, segment)
        ) WITHOUT ROWID;
        CREATE INDEX snapshots_segment ON snapshots (segment, taken_at);

        -- The facts of the latest evaluation, for the console's tables and drill-downs.
        CREATE TABLE user_facts (
            user_id TEXT PRIMARY KEY,
            email TEXT,
            name TEXT,
            account_id TEXT,
            lifecycle TEXT NOT NULL,
            signup_at INTEGER,
            activated_at INTEGER,
            last_active_at INTEGER,
            active_days_30 INTEGER NOT NULL,
            features_30 INTEGER NOT NULL,
            usage_score INTEGER NOT NULL,
            cancelled_at INTEGER,
            nps INTEGER,
            team TEXT,
            -- The earliest time the user's memberships can change with no new message.
            due_at INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX user_facts_email ON user_facts (email);
        CREATE INDEX user_facts_due ON user_facts (due_at);
        CREATE INDEX user_facts_active ON user_facts (last_active_at, usage_score);

        CREATE TABLE account_facts (
            account_id TEXT PRIMARY KEY,
            name TEXT,
            plan TEXT,
            seats_used INTEGER NOT NULL,
            seat_limit REAL,
            teams INTEGER NOT NULL,
            usage TEXT NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
    (
        2,
        """
        -- One trigger of a playbook. The counts are of users: targeted = held_out +
        -- excluded_cooldown + excluded_rule + queued.
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            playbook TEXT NOT NULL,
            segment TEXT NOT NULL,
            operator TEXT NOT NULL,
            target_kind TEXT NOT NULL,
            target_id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            dry_run INTEGER NOT NULL,
            targeted INTEGER NOT NULL,
            held_out INTEGER NOT NULL,
            excluded_cooldown INTEGER NOT NULL,
            excluded_rule INTEGER NOT NULL,
            queued INTEGER NOT NULL
        );
        CREATE INDEX runs_playbook ON runs (playbook, created_at);

        -- The outbox: one row per user and playbook step. status is queued, sending, sent,
        -- failed or held_out. A held-out row is never sent; its notice (NULL, queued, sending,
        -- sent or failed) tracks the held-out notice that a demo destination receives instead.
        CREATE TABLE actions (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id),
            playbook TEXT NOT NULL,
            user_id TEXT NOT NULL,
            email TEXT,
            account_id TEXT,
            step INTEGER NOT NULL,
            channel TEXT NOT NULL,
            destination TEXT NOT NULL,
            content TEXT NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            held_out INTEGER NOT NULL,
            status TEXT NOT NULL,
            notice TEXT,
            created_at INTEGER NOT NULL,
            due_at INTEGER NOT NULL,
            next_attempt_at INTEGER,
            -- Set while a dispatcher holds the row in status or notice 'sending': when, and
            -- which process ("host:pid"), so that a crashed dispatcher's claims can be recovered.
            claimed_at INTEGER,
            claimed_by TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            sent_at INTEGER,
            last_error TEXT
        );
        CREATE INDEX actions_run ON actions (run_id, id);
        CREATE INDEX actions_cooldown ON actions (playbook, user_id, created_at);
        CREATE INDEX actions_user ON actions (user_id, created_at);
        CREATE INDEX actions_pending ON actions (next_attempt_at)
            WHERE status IN ('queued', 'sending') OR notice IN ('queued', 'sending');

        -- Every request the dispatcher made for an action, with what came back.
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            action_id INTEGER NOT NULL REFERENCES actions (id),
            at INTEGER NOT NULL,
            duration_ms INTEGER NOT NULL,
            status_code INTEGER,
            response_excerpt TEXT,
            error TEXT
        );
        CREATE INDEX attempts_action ON attempts (action_id, at);

        -- Operator events besides runs: pausing automatic playbooks, giving up on an action.
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at INTEGER NOT NULL,
            operator TEXT NOT NULL,
            event TEXT NOT NULL,
            run_id INTEGER,
            detail TEXT NOT NULL
        );
        CREATE INDEX audit_at ON audit (at);

        -- Segment entries that an automatic playbook already handled, so each entry triggers once.
        CREATE TABLE entry_triggers (
            playbook TEXT NOT NULL,
            transition_id INTEGER NOT NULL,
            run_id INTEGER,
            PRIMARY KEY (playbook, transition_id)
        ) WITHOUT ROWID;

        CREATE TABLE flags (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID;
        """,
    ),
]
