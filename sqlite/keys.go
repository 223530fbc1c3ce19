package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/deputyhq/deputy"
)

var (
	qKeyRecorded = writeQuery(`SELECT 1 FROM api_keys WHERE kind = ? AND key_id = ?`)

	qInsertTaskKey = writeQuery(`INSERT INTO task_keys
		(task_id, kind, key_id, secret, created_by_user)
	VALUES (?, ?, ?, ?, ?)`)

	// qAdoptKey counts one more reference to a key. A key the user brought
	// is recorded on first use, and marked as the user's if it was recorded
	// as a grant, so that it is never invalidated; other keys are recorded
	// already.
	qAdoptKey = writeQuery(`INSERT INTO api_keys
		(kind, key_id, secret, refs, created_by_user, user_name, granted_at)
	VALUES (?, ?, ?, 1, ?, ?, ?)
	ON CONFLICT (kind, key_id) DO UPDATE SET refs = refs + 1,
		created_by_user = max(created_by_user, excluded.created_by_user)`)

	qTakeKeys = writeQuery(`DELETE FROM task_keys WHERE task_id = ? RETURNING kind, key_id`)

	qUnrefKey = writeQuery(`UPDATE api_keys SET refs = refs - 1 WHERE kind = ? AND key_id = ?
	RETURNING refs, secret, created_by_user`)

	qDeleteKey = writeQuery(`DELETE FROM api_keys WHERE kind = ? AND key_id = ?`)

	qQueuedKey = writeQuery(`SELECT seq, hold_until FROM api_key_invalidations
	WHERE kind = ? AND key_id = ? ORDER BY seq LIMIT 1`)

	qHoldKey = writeQuery(`UPDATE api_key_invalidations SET hold_until = ? WHERE seq = ?`)

	qQueueKey = writeQuery(`INSERT INTO api_key_invalidations
		(kind, key_id, secret, queued_at, hold_until)
	VALUES (?, ?, ?, ?, ?)`)

	qRecordKey = writeQuery(`INSERT INTO api_keys
		(kind, key_id, secret, refs, created_by_user, user_name, granted_at)
	VALUES (?, ?, ?, 0, ?, ?, ?)
	ON CONFLICT (kind, key_id) DO UPDATE SET secret = excluded.secret,
		created_by_user = excluded.created_by_user, user_name = excluded.user_name,
		granted_at = excluded.granted_at`)

	qDeleteUnusedKey = writeQuery(`DELETE FROM api_keys WHERE kind = ? AND key_id = ? AND refs = 0
	RETURNING secret, created_by_user`)

	qDeleteUnusedKeys = writeQuery(`DELETE FROM api_keys WHERE refs = 0 AND granted_at < ?
	RETURNING kind, key_id, secret, created_by_user`)

	qKeysInvalidated = writeQuery(`DELETE FROM api_key_invalidations
	WHERE seq IN (SELECT value FROM json_each(?))`)

	qKeyFailed = writeQuery(`UPDATE api_key_invalidations
	SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE seq = ?`)
)

// checkTaskKeys checks that t has at most one key of each kind.
func checkTaskKeys(t *deputy.Task) error {
	for i, k := range t.Keys {
		if k.Kind == "" || k.ID == "" {
			return deputy.Errorf(deputy.EINVALID, "task %s: key kind and id are required", t.ID)
		}
		for _, o := range t.Keys[:i] {
			if o.Kind == k.Kind {
				return deputy.Errorf(deputy.EINVALID, "task %s has two keys of kind %s",
					t.ID, k.Kind)
			}
		}
	}
	return nil
}

// checkRecorded checks that every key of t that the user did not bring has
// a key record.
func (w *wtx) checkRecorded(ctx context.Context, t *deputy.Task) error {
	for _, k := range t.Keys {
		if k.CreatedByUser {
			continue
		}
		var one int
		err := w.queryRow(ctx, qKeyRecorded, k.Kind, k.ID).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return deputy.Errorf(deputy.ECONFLICT, "task %s: %s key %s is not recorded",
				t.ID, k.Kind, k.ID)
		case err != nil:
			return err
		}
	}
	return nil
}

// addKeys stores t's keys and counts its references to them.
func (w *wtx) addKeys(ctx context.Context, t *deputy.Task, now time.Time) error {
	for _, k := range t.Keys {
		byUser := boolInt(k.CreatedByUser)
		_, err := w.exec(ctx, qInsertTaskKey, t.ID, k.Kind, k.ID, k.Secret, byUser)
		if err != nil {
			return err
		}
		_, err = w.exec(ctx, qAdoptKey, k.Kind, k.ID, k.Secret, byUser, userName(t), micros(now))
		if err != nil {
			return err
		}
	}
	return nil
}

// takeKeys deletes the keys of task id and returns them.
func (w *wtx) takeKeys(ctx context.Context, id string) ([]deputy.KeyRef, error) {
	rows, err := w.query(ctx, qTakeKeys, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var refs []deputy.KeyRef
	for rows.Next() {
		var r deputy.KeyRef
		if err := rows.Scan(&r.Kind, &r.ID); err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, rows.Err()
}

// releaseKeys deletes the keys of task id, if it has any, and releases its
// references to them; see [wtx.unrefAll].
func (w *wtx) releaseKeys(ctx context.Context, id string, hasKeys bool, now time.Time,
	hold sql.Null[int64],
) error {
	if !hasKeys {
		return nil
	}
	refs, err := w.takeKeys(ctx, id)
	if err != nil {
		return err
	}
	return w.unrefAll(ctx, refs, now, hold)
}

// unrefAll releases one reference to each key. A key left without
// references loses its record and, unless the user brought it, is queued
// for invalidation at now, held until hold when a run still uses it.
func (w *wtx) unrefAll(ctx context.Context, refs []deputy.KeyRef, now time.Time,
	hold sql.Null[int64],
) error {
	for _, r := range refs {
		var (
			left   int
			secret []byte
			byUser bool
		)
		err := w.queryRow(ctx, qUnrefKey, r.Kind, r.ID).Scan(&left, &secret, &byUser)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// NB: every task key has a record, so this is a corrupt database.
			w.db.log.Warn("released key has no record",
				slog.String("kind", r.Kind),
				slog.String("key_id", r.ID))
			continue
		case err != nil:
			return err
		case left > 0:
			continue
		}
		if _, err := w.exec(ctx, qDeleteKey, r.Kind, r.ID); err != nil {
			return err
		}
		if byUser {
			continue
		}
		if _, err := w.enqueue(ctx, r, secret, now, hold); err != nil {
			return err
		}
	}
	return nil
}

// enqueue queues a key for invalidation and reports whether it did. A key
// queued already is not queued twice, but held until the later of both
// holds.
func (w *wtx) enqueue(ctx context.Context, r deputy.KeyRef, secret []byte, now time.Time,
	hold sql.Null[int64],
) (bool, error) {
	var (
		seq     int64
		current sql.Null[int64]
	)
	err := w.queryRow(ctx, qQueuedKey, r.Kind, r.ID).Scan(&seq, &current)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err := w.exec(ctx, qQueueKey, r.Kind, r.ID, secret, micros(now), hold)
		return err == nil, err
	case err != nil:
		return false, err
	}
	if hold.Valid && (!current.Valid || hold.V > current.V) {
		_, err = w.exec(ctx, qHoldKey, hold, seq)
	}
	return false, err
}

// RecordKeys implements [deputy.Store]. Recording a key again replaces its
// secret, user and grant time, and keeps its references.
func (db *DB) RecordKeys(ctx context.Context, keys []deputy.Key) error {
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		for _, k := range keys {
			_, err := w.exec(ctx, qRecordKey, k.Kind, k.ID, k.Secret, boolInt(k.CreatedByUser),
				k.UserName, micros(k.GrantedAt))
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record keys: %w", err)
	}
	return nil
}

// ReleaseKeys implements [deputy.Store].
func (db *DB) ReleaseKeys(ctx context.Context, refs []deputy.KeyRef, now time.Time) error {
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		for _, r := range refs {
			var seq int64
			var hold sql.Null[int64]
			err := w.queryRow(ctx, qQueuedKey, r.Kind, r.ID).Scan(&seq, &hold)
			switch {
			case err == nil:
				continue // queued already
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}

			var (
				secret []byte
				byUser bool
			)
			err = w.queryRow(ctx, qDeleteUnusedKey, r.Kind, r.ID).Scan(&secret, &byUser)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				continue // in use, or not recorded
			case err != nil:
				return err
			case byUser:
				continue
			}
			if _, err := w.enqueue(ctx, r, secret, now, sql.Null[int64]{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("release keys: %w", err)
	}
	return nil
}

// QueueUnusedKeys implements [deputy.Store].
func (db *DB) QueueUnusedKeys(ctx context.Context, cutoff, now time.Time) (int, error) {
	var queued int
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		type unused struct {
			ref    deputy.KeyRef
			secret []byte
		}
		rows, err := w.query(ctx, qDeleteUnusedKeys, micros(cutoff))
		if err != nil {
			return err
		}
		var keys []unused
		for rows.Next() {
			var (
				k      unused
				byUser bool
			)
			if err := rows.Scan(&k.ref.Kind, &k.ref.ID, &k.secret, &byUser); err != nil {
				rows.Close()
				return err
			}
			if !byUser {
				keys = append(keys, k)
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}

		for _, k := range keys {
			ok, err := w.enqueue(ctx, k.ref, k.secret, now, sql.Null[int64]{})
			if err != nil {
				return err
			}
			if ok {
				queued++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue unused keys: %w", err)
	}
	return queued, nil
}

// KeyRefs implements [deputy.Store].
func (db *DB) KeyRefs(ctx context.Context, ref deputy.KeyRef) (int, bool, error) {
	var refs int
	err := db.r.QueryRowContext(ctx, `SELECT refs FROM api_keys WHERE kind = ? AND key_id = ?`,
		ref.Kind, ref.ID).Scan(&refs)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("count key references: %w", err)
	}
	return refs, true, nil
}

// PendingKeys implements [deputy.Store].
func (db *DB) PendingKeys(ctx context.Context, q deputy.PendingQuery) ([]deputy.PendingKey, error) {
	query, args := pendingQuery(q)
	keys, err := db.pendingKeys(ctx, query, args)
	if err != nil {
		return nil, fmt.Errorf("list pending keys: %w", err)
	}
	return keys, nil
}

// pendingQuery returns the query of [DB.PendingKeys] and its arguments.
func pendingQuery(q deputy.PendingQuery) (string, []any) {
	var (
		conds []string
		args  []any
	)
	if q.Due {
		now := micros(q.Now)
		conds = append(conds, "queued_at <= ?",
			"(hold_until IS NULL OR hold_until <= ?)",
			"(next_attempt_at IS NULL OR next_attempt_at <= ?)",
			"NOT EXISTS (SELECT 1 FROM task_keys k WHERE k.kind = q.kind AND k.key_id = q.key_id)")
		args = append(args, micros(q.QueuedBefore), now, now)
	}
	if len(q.Kinds) > 0 {
		// The unary + keeps the planner on the queued_at index, which
		// yields keys oldest first without sorting the queue.
		conds = append(conds, "+kind IN ("+placeholders(len(q.Kinds))+")")
		for _, k := range q.Kinds {
			args = append(args, k)
		}
	}
	limit := -1
	if q.Limit > 0 {
		limit = q.Limit
	}
	query := `SELECT seq, kind, key_id, secret, queued_at, hold_until, attempts, last_error,
		next_attempt_at FROM api_key_invalidations q` + where(conds) +
		` ORDER BY queued_at, seq LIMIT ?`
	return query, append(args, limit)
}

func (db *DB) pendingKeys(ctx context.Context, query string, args []any,
) ([]deputy.PendingKey, error) {
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []deputy.PendingKey
	for rows.Next() {
		var (
			k                      deputy.PendingKey
			queuedAt               int64
			holdUntil, nextAttempt sql.Null[int64]
		)
		err := rows.Scan(&k.Seq, &k.Kind, &k.ID, &k.Secret, &queuedAt, &holdUntil, &k.Attempts,
			&k.LastError, &nextAttempt)
		if err != nil {
			return nil, err
		}
		k.QueuedAt = fromMicros(queuedAt)
		k.HoldUntil, k.NextAttemptAt = fromMicrosPtr(holdUntil), fromMicrosPtr(nextAttempt)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// KeysInvalidated implements [deputy.Store].
func (db *DB) KeysInvalidated(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	b, err := json.Marshal(seqs)
	if err != nil {
		return fmt.Errorf("remove invalidated keys: %w", err)
	}
	err = db.write(ctx, func(ctx context.Context, w *wtx) error {
		_, err := w.exec(ctx, qKeysInvalidated, string(b))
		return err
	})
	if err != nil {
		return fmt.Errorf("remove invalidated keys: %w", err)
	}
	return nil
}

// KeyInvalidationFailed implements [deputy.Store]. A key no longer queued
// is ignored.
func (db *DB) KeyInvalidationFailed(
	ctx context.Context, seq int64, lastError string, next time.Time,
) error {
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		_, err := w.exec(ctx, qKeyFailed, lastError, micros(next), seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("record key invalidation failure: %w", err)
	}
	return nil
}
