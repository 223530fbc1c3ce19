package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deputyhq/deputy"
)

// Key bookkeeping. Every write that changes which tasks reference a key runs
// in one transaction that:
//
//  1. locks the tasks it writes (by writing them, or FOR UPDATE),
//  2. locks the records of every key involved, in key order (lockKeys),
//  3. writes the tasks and their task_keys rows, and
//  4. adjusts the records' counts, deleting those that reach zero and
//     queueing them for invalidation (applyKeyChanges).
//
// Tasks before keys, and keys in one order, means two writers never wait
// for each other in a cycle. Deadlocks the planner could still cause are
// retried by inTx.

// keyChanges collects the reference changes of one write.
type keyChanges struct {
	now     time.Time
	deltas  map[deputy.KeyRef]*keyDelta
	ordered []deputy.KeyRef
}

type keyDelta struct {
	n int
	// adopt describes the record to create for a user's key that has none.
	adopt *deputy.Key
	// hold is the latest lease of a running task that released the key.
	hold *time.Time
	// at is when the key was released, if not at the write's time.
	at time.Time
	// byUser is set when a task released it as a key the user created: it
	// is never queued, whatever its record says.
	byUser bool
}

func newKeyChanges(now time.Time) *keyChanges {
	return &keyChanges{now: now, deltas: map[deputy.KeyRef]*keyDelta{}}
}

func (c *keyChanges) delta(ref deputy.KeyRef) *keyDelta {
	d := c.deltas[ref]
	if d == nil {
		d = &keyDelta{}
		c.deltas[ref] = d
		c.ordered = append(c.ordered, ref)
	}
	return d
}

// use records that a task now references k.
func (c *keyChanges) use(k deputy.TaskKey, userName string) {
	d := c.delta(deputy.KeyRef{Kind: k.Kind, ID: k.ID})
	d.n++
	if k.CreatedByUser && d.adopt == nil {
		d.adopt = &deputy.Key{Kind: k.Kind, ID: k.ID, Secret: k.Secret, CreatedByUser: true,
			UserName: userName, GrantedAt: c.now}
	}
}

// release records that a task no longer references ref. hold is the lease
// of the run that may still use it, if the task was running; at, when not
// zero, is when the task let go of it; byUser, whether the task had it as a
// key the user created.
func (c *keyChanges) release(ref deputy.KeyRef, hold *time.Time, at time.Time, byUser bool) {
	d := c.delta(ref)
	d.n--
	d.byUser = d.byUser || byUser
	if hold != nil && (d.hold == nil || hold.After(*d.hold)) {
		d.hold = hold
	}
	if at.After(d.at) {
		d.at = at
	}
}

// refs returns the keys involved, in lock order.
func (c *keyChanges) refs() []deputy.KeyRef {
	refs := slices.Clone(c.ordered)
	slices.SortFunc(refs, compareRefs)
	return refs
}

func compareRefs(a, b deputy.KeyRef) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
}

// refArrays returns refs as two parallel arrays.
func refArrays(refs []deputy.KeyRef) (kinds, ids []string) {
	kinds, ids = make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		kinds[i], ids[i] = r.Kind, r.ID
	}
	return kinds, ids
}

// lockKeys locks the records of refs in order and returns their counts;
// refs without a record are absent from the result.
func lockKeys(ctx context.Context, tx pgx.Tx, refs []deputy.KeyRef) (map[deputy.KeyRef]int, error) {
	locked := make(map[deputy.KeyRef]int, len(refs))
	if len(refs) == 0 {
		return locked, nil
	}
	refs = slices.Clone(refs)
	slices.SortFunc(refs, compareRefs)
	refs = slices.Compact(refs)
	kinds, ids := refArrays(refs)
	rows, err := tx.Query(ctx, `
SELECT a.kind, a.key_id, a.refs FROM api_keys a
JOIN unnest($1::text[], $2::text[]) AS r(kind, key_id) ON a.kind = r.kind AND a.key_id = r.key_id
ORDER BY a.kind, a.key_id
FOR UPDATE OF a`, kinds, ids)
	if err != nil {
		return nil, fmt.Errorf("lock keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			ref deputy.KeyRef
			n   int32
		)
		if err := rows.Scan(&ref.Kind, &ref.ID, &n); err != nil {
			return nil, fmt.Errorf("lock keys: %w", err)
		}
		locked[ref] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock keys: %w", err)
	}
	return locked, nil
}

// stmt is a data-modifying statement with its arguments, numbered from $1.
type stmt struct {
	sql  string
	args []any
}

// applyKeyChanges writes c given the counts lockKeys returned: it adjusts
// the records, creates the records of adopted user keys, and deletes the
// records that no task references any more, queueing them for invalidation
// unless the user created them. The extra statements, on task_keys, run in
// the same round trip; they must touch disjoint rows, since the parts of
// one statement run in no set order.
func applyKeyChanges(ctx context.Context, tx pgx.Tx, c *keyChanges, locked map[deputy.KeyRef]int,
	extra ...stmt,
) error {
	var (
		up     upsertArrays
		gone   []deputy.KeyRef
		holds  []*time.Time
		queued []time.Time
		byUser []bool
	)
	for _, ref := range c.refs() {
		d := c.deltas[ref]
		cur, ok := locked[ref]
		switch {
		case d.n == 0:
		case ok && cur+d.n <= 0:
			gone = append(gone, ref)
			holds = append(holds, d.hold)
			queued = append(queued, cmp.Or(d.at, c.now))
			byUser = append(byUser, d.byUser)
		case ok || (d.n > 0 && d.adopt != nil):
			up.add(ref, d, c.now)
		}
		// Otherwise the key has no record: a released key has nothing to
		// count down, and the callers refuse unrecorded non-user keys.
	}
	if len(up.kinds) == 0 && len(gone) == 0 && len(extra) == 0 {
		return nil
	}

	goneKinds, goneIDs := refArrays(gone)
	args := append(up.args(), goneKinds, goneIDs, holds, queued, byUser)
	sql := `
WITH up AS (
    INSERT INTO api_keys (kind, key_id, secret, refs, created_by_user, user_name, granted_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::boolean[],
        $6::text[], $7::timestamptz[])
    ON CONFLICT (kind, key_id) DO UPDATE SET refs = api_keys.refs + excluded.refs
),
gone AS (
    DELETE FROM api_keys a
    USING unnest($8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
        $12::boolean[]) AS z(kind, key_id, hold_until, queued_at, by_user)
    WHERE a.kind = z.kind AND a.key_id = z.key_id
    RETURNING a.kind, a.key_id, a.secret, a.created_by_user OR z.by_user AS created_by_user,
        z.hold_until, z.queued_at
)`
	for i, e := range extra {
		sql += fmt.Sprintf(",\nx%d AS (%s)", i, renumber(e.sql, len(args)))
		args = append(args, e.args...)
	}
	// A key queued before and granted again has an entry already: extend its
	// hold rather than queue it twice.
	sql += `,
held AS (
    UPDATE api_key_invalidations q SET hold_until = GREATEST(q.hold_until, g.hold_until)
    FROM gone g
    WHERE q.kind = g.kind AND q.key_id = g.key_id AND NOT g.created_by_user
)
INSERT INTO api_key_invalidations (kind, key_id, secret, queued_at, hold_until)
SELECT g.kind, g.key_id, g.secret, g.queued_at, g.hold_until FROM gone g
WHERE NOT g.created_by_user AND NOT EXISTS (
    SELECT 1 FROM api_key_invalidations q WHERE q.kind = g.kind AND q.key_id = g.key_id)
ORDER BY g.kind, g.key_id`
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("count key references: %w", err)
	}
	return nil
}

// upsertArrays holds count changes for the up statement of
// applyKeyChanges.
type upsertArrays struct {
	kinds, ids, users []string
	secrets           [][]byte
	deltas            []int32
	byUser            []bool
	granted           []time.Time
}

func (a *upsertArrays) add(ref deputy.KeyRef, d *keyDelta, now time.Time) {
	k := deputy.Key{GrantedAt: now}
	if d.adopt != nil {
		k = *d.adopt
	}
	a.kinds = append(a.kinds, ref.Kind)
	a.ids = append(a.ids, ref.ID)
	a.secrets = append(a.secrets, k.Secret)
	a.deltas = append(a.deltas, int32(d.n))
	a.byUser = append(a.byUser, k.CreatedByUser)
	a.users = append(a.users, k.UserName)
	a.granted = append(a.granted, k.GrantedAt)
}

func (a *upsertArrays) args() []any {
	return []any{a.kinds, a.ids, a.secrets, a.deltas, a.byUser, a.users, a.granted}
}

// renumber shifts the $n placeholders of sql by offset, so that a statement
// can be embedded after another's arguments.
func renumber(sql string, offset int) string {
	out := make([]byte, 0, len(sql)+8)
	for i := 0; i < len(sql); i++ {
		if sql[i] != '$' || i+1 == len(sql) || sql[i+1] < '0' || sql[i+1] > '9' {
			out = append(out, sql[i])
			continue
		}
		j := i + 1
		n := 0
		for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
			n = n*10 + int(sql[j]-'0')
			j++
		}
		out = fmt.Appendf(out, "$%d", n+offset)
		i = j - 1
	}
	return string(out)
}

// taskKeyArrays holds task_keys rows to insert.
type taskKeyArrays struct {
	taskIDs, kinds, ids []string
	secrets             [][]byte
	byUser              []bool
}

func (a *taskKeyArrays) add(taskID string, k deputy.TaskKey) {
	a.taskIDs = append(a.taskIDs, taskID)
	a.kinds = append(a.kinds, k.Kind)
	a.ids = append(a.ids, k.ID)
	a.secrets = append(a.secrets, k.Secret)
	a.byUser = append(a.byUser, k.CreatedByUser)
}

func (a *taskKeyArrays) args() []any {
	return []any{a.taskIDs, a.kinds, a.ids, a.secrets, a.byUser}
}

const insertTaskKeys = `
INSERT INTO task_keys (task_id, kind, key_id, secret, created_by_user)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::boolean[])`

// upsertTaskKeys writes the keys of tasks, replacing those of the same
// kind.
const upsertTaskKeys = insertTaskKeys + `
ON CONFLICT (task_id, kind) DO UPDATE
SET key_id = excluded.key_id, secret = excluded.secret, created_by_user = excluded.created_by_user`

// deleteOtherTaskKeys deletes the keys of the tasks $1 that are not among
// the new keys, given as task ids $2 and kinds $3: the rows upsertTaskKeys
// does not write.
const deleteOtherTaskKeys = `
DELETE FROM task_keys k WHERE k.task_id = ANY($1::text[]) AND NOT EXISTS (
    SELECT 1 FROM unnest($2::text[], $3::text[]) AS n(task_id, kind)
    WHERE n.task_id = k.task_id AND n.kind = k.kind)`

// userName returns the user a task runs as, for the record of an adopted
// key.
func userName(t *deputy.Task) string {
	if t.UserScope == nil {
		return ""
	}
	return t.UserScope.UserName
}

// unrecordedKey returns the first key of t that must have a record and has
// none.
func unrecordedKey(t *deputy.Task, locked map[deputy.KeyRef]int) (deputy.TaskKey, bool) {
	for _, k := range t.Keys {
		if _, ok := locked[deputy.KeyRef{Kind: k.Kind, ID: k.ID}]; !ok && !k.CreatedByUser {
			return k, true
		}
	}
	return deputy.TaskKey{}, false
}

// RecordKeys writes records for newly granted keys, with no reference yet.
// A key that already has a record keeps it.
func (db *DB) RecordKeys(ctx context.Context, keys []deputy.Key) error {
	if len(keys) == 0 {
		return nil
	}
	var a upsertArrays
	for _, k := range keys {
		a.kinds = append(a.kinds, k.Kind)
		a.ids = append(a.ids, k.ID)
		a.secrets = append(a.secrets, k.Secret)
		a.deltas = append(a.deltas, 0)
		a.byUser = append(a.byUser, k.CreatedByUser)
		a.users = append(a.users, k.UserName)
		a.granted = append(a.granted, micro(k.GrantedAt))
	}
	_, err := db.pool.Exec(ctx, `
INSERT INTO api_keys (kind, key_id, secret, refs, created_by_user, user_name, granted_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::boolean[],
    $6::text[], $7::timestamptz[])
ON CONFLICT (kind, key_id) DO NOTHING`, a.args()...)
	if err != nil {
		return fmt.Errorf("record keys: %w", wrapErr(err))
	}
	return nil
}

// queueUnreferenced deletes the records that match cond and have no
// reference, and queues those the user did not create. A key already queued
// is left alone, record included: it was granted again after it was queued,
// and the entry in the queue will invalidate it. It returns how many keys it
// queued.
func (db *DB) queueUnreferenced(ctx context.Context, cond string, args ...any) (int, error) {
	tag, err := db.pool.Exec(ctx, `
WITH gone AS (
    DELETE FROM api_keys a WHERE a.refs = 0 AND `+cond+` AND NOT EXISTS (
        SELECT 1 FROM api_key_invalidations q WHERE q.kind = a.kind AND q.key_id = a.key_id)
    RETURNING a.kind, a.key_id, a.secret, a.created_by_user
)
INSERT INTO api_key_invalidations (kind, key_id, secret, queued_at)
SELECT kind, key_id, secret, $1 FROM gone WHERE NOT created_by_user
ORDER BY kind, key_id`, args...)
	return int(tag.RowsAffected()), err
}

// ReleaseKeys queues the given keys for invalidation when their records
// show no reference. Keys in use or already queued keep their records, and
// keys without one are left alone: the store cannot tell an unrecorded key
// from one the user owns.
func (db *DB) ReleaseKeys(ctx context.Context, refs []deputy.KeyRef, now time.Time) error {
	if len(refs) == 0 {
		return nil
	}
	kinds, ids := refArrays(refs)
	_, err := db.queueUnreferenced(ctx,
		"(a.kind, a.key_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
		micro(now), kinds, ids)
	if err != nil {
		return fmt.Errorf("release keys: %w", wrapErr(err))
	}
	return nil
}

// QueueUnusedKeys queues the keys recorded before cutoff that no task
// adopted, and returns how many it queued.
func (db *DB) QueueUnusedKeys(ctx context.Context, cutoff, now time.Time) (int, error) {
	n, err := db.queueUnreferenced(ctx, "a.granted_at < $2", micro(now), cutoff)
	if err != nil {
		return 0, fmt.Errorf("queue unused keys: %w", wrapErr(err))
	}
	return n, nil
}

// KeyRefs returns a key's reference count and whether it has a record.
func (db *DB) KeyRefs(ctx context.Context, ref deputy.KeyRef) (int, bool, error) {
	var (
		refs *int32
		used int64
	)
	err := db.pool.QueryRow(ctx, `
SELECT (SELECT refs FROM api_keys WHERE kind = $1 AND key_id = $2),
       (SELECT count(*) FROM task_keys WHERE kind = $1 AND key_id = $2)`,
		ref.Kind, ref.ID).Scan(&refs, &used)
	if err != nil {
		return 0, false, fmt.Errorf("key refs: %w", wrapErr(err))
	}
	if refs == nil {
		return int(used), false, nil
	}
	return int(*refs), true, nil
}

// PendingKeys lists queued keys, oldest first.
func (db *DB) PendingKeys(ctx context.Context, q deputy.PendingQuery) ([]deputy.PendingKey, error) {
	sql := `
SELECT p.seq, p.kind, p.key_id, p.secret, p.queued_at, p.hold_until, p.attempts, p.last_error,
    p.next_attempt_at
FROM api_key_invalidations p
WHERE (cardinality($1::text[]) = 0 OR p.kind = ANY($1))`
	args := []any{q.Kinds}
	if q.Due {
		sql += `
  AND p.queued_at <= $2
  AND (p.hold_until IS NULL OR p.hold_until <= $3)
  AND (p.next_attempt_at IS NULL OR p.next_attempt_at <= $3)
  AND NOT EXISTS (SELECT 1 FROM task_keys k WHERE k.kind = p.kind AND k.key_id = p.key_id)`
		args = append(args, q.QueuedBefore, q.Now)
	}
	sql += "\nORDER BY p.queued_at, p.seq"
	if q.Limit > 0 {
		sql += fmt.Sprintf("\nLIMIT %d", q.Limit)
	}
	if q.Kinds == nil {
		args[0] = []string{}
	}

	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("pending keys: %w", wrapErr(err))
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (deputy.PendingKey, error) {
		var (
			k        deputy.PendingKey
			attempts int32
		)
		err := row.Scan(&k.Seq, &k.Kind, &k.ID, &k.Secret, &k.QueuedAt, &k.HoldUntil, &attempts,
			&k.LastError, &k.NextAttemptAt)
		k.Attempts = int(attempts)
		k.QueuedAt = k.QueuedAt.UTC()
		k.HoldUntil, k.NextAttemptAt = utcPtr(k.HoldUntil), utcPtr(k.NextAttemptAt)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("pending keys: %w", wrapErr(err))
	}
	return keys, nil
}

// KeysInvalidated removes invalidated keys from the queue.
func (db *DB) KeysInvalidated(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	_, err := db.pool.Exec(ctx, "DELETE FROM api_key_invalidations WHERE seq = ANY($1)", seqs)
	if err != nil {
		return fmt.Errorf("keys invalidated: %w", wrapErr(err))
	}
	return nil
}

// KeyInvalidationFailed records a failed invalidation attempt. A key no
// longer queued is not an error: another node may have invalidated it.
func (db *DB) KeyInvalidationFailed(ctx context.Context, seq int64, lastError string,
	next time.Time,
) error {
	_, err := db.pool.Exec(ctx, `
UPDATE api_key_invalidations
SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3
WHERE seq = $1`, seq, lastError, next)
	if err != nil {
		return fmt.Errorf("key invalidation failed: %w", wrapErr(err))
	}
	return nil
}
