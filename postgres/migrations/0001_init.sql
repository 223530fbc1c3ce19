-- 0001: tasks, their keys, key records, the invalidation queue and nodes.
--
-- Identifiers are COLLATE "C": they compare as bytes, which is faster than
-- a locale's rules, and orders ids the same on every server and in Go.

-- Tasks are updated on every claim, lease renewal and completion. fillfactor
-- leaves room on each page so that a row's new version usually lands on the
-- same page, and the aggressive autovacuum settings keep dead versions from
-- piling up in a table that churns.
CREATE TABLE tasks (
    id               text        COLLATE "C" PRIMARY KEY,
    task_type        text        COLLATE "C" NOT NULL,
    status           text        COLLATE "C" NOT NULL,
    enabled          boolean     NOT NULL,
    eff_priority     integer     NOT NULL,
    eff_cost         integer     NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    version          bigint      NOT NULL,
    claim_version    bigint      NOT NULL DEFAULT 0,
    has_keys         boolean     NOT NULL DEFAULT false,
    run_at           timestamptz NOT NULL,
    scheduled_at     timestamptz NOT NULL,
    started_at       timestamptz,
    retry_at         timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    owner_id         text        COLLATE "C" NOT NULL DEFAULT '',
    priority         integer,
    cost             integer,
    space_id         text        COLLATE "C" NOT NULL DEFAULT '',
    user_name        text        COLLATE "C",
    traceparent      text        NOT NULL DEFAULT '',
    timeout_override text        NOT NULL DEFAULT '',
    scope            text[],
    params           jsonb,
    state            jsonb,
    schedule         jsonb,
    user_scope       jsonb,
    -- due_at is when the task becomes claimable: its lease expiry while a
    -- node holds it, else its run time. One column lets one index serve
    -- both kinds of claimable task.
    due_at           timestamptz GENERATED ALWAYS AS (
        CASE WHEN status IN ('running', 'claiming') THEN retry_at ELSE run_at END
    ) STORED
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.05
);

-- The claim index holds only claimable rows, in claim order.
CREATE INDEX tasks_claim_idx ON tasks (eff_priority DESC, due_at, id)
    WHERE enabled AND status IN ('idle', 'running', 'claiming');

-- Fetch pages by run time. Running tasks are left out, so that a claim,
-- which every index must otherwise follow, adds no entry here; Fetch reads
-- the few running tasks apart and merges them in.
CREATE INDEX tasks_run_at_idx ON tasks (run_at, id) WHERE status NOT IN ('running', 'claiming');

-- Releasing a node's tasks finds them here; idle tasks have no owner and are
-- not indexed. NB: the predicate is not on status, so that writes to running
-- tasks, which filter on status, are planned on the primary key and not on
-- a scan of every running task.
CREATE INDEX tasks_owner_idx ON tasks (owner_id) WHERE owner_id <> '';

-- The keys a task runs with, one per kind.
CREATE TABLE task_keys (
    task_id         text    COLLATE "C" NOT NULL,
    kind            text    COLLATE "C" NOT NULL,
    key_id          text    COLLATE "C" NOT NULL,
    secret          bytea,
    created_by_user boolean NOT NULL DEFAULT false,
    PRIMARY KEY (task_id, kind)
);

CREATE INDEX task_keys_key_idx ON task_keys (kind, key_id);

-- One record per key in use or granted, counting the tasks that reference it.
CREATE TABLE api_keys (
    kind            text        COLLATE "C" NOT NULL,
    key_id          text        COLLATE "C" NOT NULL,
    secret          bytea,
    refs            integer     NOT NULL DEFAULT 0,
    created_by_user boolean     NOT NULL DEFAULT false,
    user_name       text        NOT NULL DEFAULT '',
    granted_at      timestamptz NOT NULL,
    PRIMARY KEY (kind, key_id)
);

-- Grants no task adopted are found by age.
CREATE INDEX api_keys_unused_idx ON api_keys (granted_at) WHERE refs = 0;

-- Keys waiting to be invalidated.
CREATE TABLE api_key_invalidations (
    seq             bigserial   PRIMARY KEY,
    kind            text        COLLATE "C" NOT NULL,
    key_id          text        COLLATE "C" NOT NULL,
    secret          bytea,
    queued_at       timestamptz NOT NULL,
    hold_until      timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    next_attempt_at timestamptz
);

CREATE INDEX api_key_invalidations_key_idx ON api_key_invalidations (kind, key_id);
CREATE INDEX api_key_invalidations_queued_idx ON api_key_invalidations (queued_at, seq);

-- Nodes that heartbeat.
CREATE TABLE nodes (
    id        text        COLLATE "C" PRIMARY KEY,
    last_seen timestamptz NOT NULL
);
