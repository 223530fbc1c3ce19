-- Tasks, their keys, the key records and invalidation queue, and nodes.
-- Times are unix microseconds; JSON documents are TEXT.

CREATE TABLE tasks (
	id               TEXT    NOT NULL PRIMARY KEY,
	task_type        TEXT    NOT NULL,
	params           TEXT,
	state            TEXT,
	schedule         TEXT,
	run_at           INTEGER NOT NULL,
	scheduled_at     INTEGER NOT NULL,
	started_at       INTEGER,
	retry_at         INTEGER,
	attempts         INTEGER NOT NULL DEFAULT 0,
	status           TEXT    NOT NULL,
	owner_id         TEXT,
	traceparent      TEXT    NOT NULL DEFAULT '',
	scope            TEXT,
	enabled          INTEGER NOT NULL,
	timeout_override TEXT    NOT NULL DEFAULT '',
	priority         INTEGER,
	cost             INTEGER,
	space_id         TEXT    NOT NULL DEFAULT '',
	user_scope       TEXT,
	user_name        TEXT    NOT NULL DEFAULT '',
	version          INTEGER NOT NULL,
	claim_version    INTEGER NOT NULL DEFAULT 0,
	eff_priority     INTEGER NOT NULL,
	eff_cost         INTEGER NOT NULL,
	has_keys         INTEGER NOT NULL DEFAULT 0,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	-- due_at is when the task becomes claimable: its RunAt while idle, the
	-- expiry of its lease while running, and never in other statuses.
	due_at           INTEGER GENERATED ALWAYS AS (
		CASE
			WHEN status = 'idle' THEN run_at
			WHEN status IN ('running', 'claiming') THEN retry_at
		END
	) VIRTUAL
) STRICT;

-- Claiming walks one priority at a time in due order; task_type is in the
-- index so that other types are skipped without reading the rows.
CREATE INDEX tasks_claim ON tasks (eff_priority DESC, due_at, id, task_type)
	WHERE enabled = 1 AND due_at IS NOT NULL;
CREATE INDEX tasks_run_at ON tasks (run_at, id);

CREATE TABLE task_keys (
	task_id         TEXT    NOT NULL REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED,
	kind            TEXT    NOT NULL,
	key_id          TEXT    NOT NULL,
	secret          BLOB,
	created_by_user INTEGER NOT NULL,
	PRIMARY KEY (task_id, kind)
) STRICT, WITHOUT ROWID;

CREATE INDEX task_keys_key ON task_keys (kind, key_id);

-- A key record counts the tasks that reference a key. It is deleted when
-- the count drops to zero, and the key queued unless the user created it.
CREATE TABLE api_keys (
	kind            TEXT    NOT NULL,
	key_id          TEXT    NOT NULL,
	secret          BLOB,
	refs            INTEGER NOT NULL DEFAULT 0,
	created_by_user INTEGER NOT NULL DEFAULT 0,
	user_name       TEXT    NOT NULL DEFAULT '',
	granted_at      INTEGER NOT NULL,
	PRIMARY KEY (kind, key_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX api_keys_unused ON api_keys (granted_at) WHERE refs = 0;

-- AUTOINCREMENT keeps seqs unique for good, so that a worker holding the seq
-- of an invalidated key can never remove another one.
CREATE TABLE api_key_invalidations (
	seq             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	kind            TEXT    NOT NULL,
	key_id          TEXT    NOT NULL,
	secret          BLOB,
	queued_at       INTEGER NOT NULL,
	hold_until      INTEGER,
	attempts        INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT    NOT NULL DEFAULT '',
	next_attempt_at INTEGER
) STRICT;

CREATE INDEX api_key_invalidations_key ON api_key_invalidations (kind, key_id);
CREATE INDEX api_key_invalidations_queued ON api_key_invalidations (queued_at, seq);

CREATE TABLE nodes (
	id        TEXT    NOT NULL PRIMARY KEY,
	last_seen INTEGER NOT NULL
) STRICT;
