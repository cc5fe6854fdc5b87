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
        CREATE INDEX messages_group ON messages (group_id, user_key) WHERE group_id IS NOT NULL;

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
]
