package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/deputyhq/deputy"
)

// Claiming walks the tasks_claim index one priority at a time: the highest
// priority below the last one, then its due tasks in due order. Each step is
// a range of the index, so tasks due later are never read.
var (
	qNextPriority = writeQuery(`SELECT eff_priority FROM tasks INDEXED BY tasks_claim
	WHERE enabled = 1 AND due_at IS NOT NULL AND eff_priority < ?
	ORDER BY eff_priority DESC LIMIT 1`)

	qCandidates = writeQuery(`SELECT id, eff_cost FROM tasks INDEXED BY tasks_claim
	WHERE enabled = 1 AND due_at IS NOT NULL AND eff_priority = ? AND due_at <= ?
		AND task_type IN (SELECT value FROM json_each(?))
	ORDER BY due_at, id LIMIT ?`)

	// qClaim marks tasks as claimed. The right-hand sides see the row before
	// the update, so scheduled_at is the due time and claim_version the new
	// version.
	qClaim = writeQuery(`UPDATE tasks SET status = 'running', owner_id = ?, started_at = ?,
		attempts = attempts + 1,
		scheduled_at = CASE WHEN status = 'idle' THEN run_at ELSE retry_at END,
		retry_at = ?, version = version + 1,
		claim_version = 1 + abs(random() % 9007199254740991), updated_at = ?
	WHERE id IN (SELECT value FROM json_each(?))
	RETURNING ` + taskColumns)

	qComplete = writeQuery(`UPDATE tasks SET status = 'idle', owner_id = NULL, started_at = NULL,
		retry_at = NULL, run_at = ?, attempts = ?, state = coalesce(?, state),
		schedule = coalesce(?, schedule), enabled = CASE WHEN ? THEN 0 ELSE enabled END,
		version = version + 1, updated_at = ?
	WHERE id = ? AND claim_version = ? AND status = 'running'`)

	// qCompleteDelete deletes the tasks of runs given as a JSON array of
	// [id, claim version] pairs, and returns the ids it deleted. One
	// statement for a batch costs less than one per task.
	qCompleteDelete = writeQuery(`DELETE FROM tasks
	WHERE (id, claim_version) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))
		AND status = 'running'
	RETURNING id, has_keys`)

	qRenewLease = writeQuery(`UPDATE tasks SET retry_at = ?, version = version + 1
	WHERE id = ? AND claim_version = ? AND status = 'running'`)

	qReleaseOwned = writeQuery(`UPDATE tasks SET status = 'idle', owner_id = NULL,
		started_at = NULL, retry_at = NULL, run_at = ?, version = version + 1, updated_at = ?
	WHERE owner_id = ? AND status IN ('running', 'claiming')`)

	qDeadNodes = writeQuery(`SELECT count(*) FROM nodes WHERE last_seen < ?`)

	qReleaseDead = writeQuery(`UPDATE tasks SET status = 'idle', owner_id = NULL,
		started_at = NULL, retry_at = NULL, run_at = ?, version = version + 1, updated_at = ?
	WHERE owner_id IN (SELECT id FROM nodes WHERE last_seen < ?)
		AND status IN ('running', 'claiming') AND started_at < ?`)

	// A dead node is forgotten once it holds no task: the tasks it claimed
	// after the cutoff are released by a later call.
	qForgetDead = writeQuery(`DELETE FROM nodes WHERE last_seen < ? AND NOT EXISTS (
		SELECT 1 FROM tasks WHERE tasks.owner_id = nodes.id AND status IN ('running', 'claiming'))`)

	qHeartbeat = writeQuery(`INSERT INTO nodes (id, last_seen) VALUES (?, ?)
	ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`)
)

// Claim implements [deputy.Store]. The tasks come in claim order.
func (db *DB) Claim(ctx context.Context, p deputy.ClaimParams) ([]*deputy.Task, error) {
	if claimLimit(p) == 0 {
		return nil, nil
	}
	var claimed []*deputy.Task
	err := db.write(ctx, func(ctx context.Context, w *wtx) (err error) {
		claimed, err = w.claim(ctx, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	return claimed, nil
}

// CompleteAndClaim writes the outcomes of runs as [DB.Complete] does, then
// claims as [DB.Claim] does, in one write transaction: a node's claim cycle
// then commits once.
func (db *DB) CompleteAndClaim(ctx context.Context, cs []deputy.Completion,
	p deputy.ClaimParams,
) ([]error, []*deputy.Task, error) {
	errs := make([]error, len(cs))
	var claimed []*deputy.Task
	err := db.write(ctx, func(ctx context.Context, w *wtx) (err error) {
		for _, round := range rounds(cs) {
			if err := w.complete(ctx, cs, round, errs); err != nil {
				return err
			}
		}
		claimed, err = w.claim(ctx, p)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("complete runs and claim tasks: %w", err)
	}
	return errs, claimed, nil
}

// claimLimit returns how many tasks p may claim: zero when it claims none.
func claimLimit(p deputy.ClaimParams) int {
	limit := p.MaxTasks
	if limit <= 0 {
		limit = p.Budget
	}
	if p.Budget <= 0 || limit <= 0 || len(p.Types) == 0 {
		return 0
	}
	return limit
}

// claim claims tasks as [DB.Claim] describes.
func (w *wtx) claim(ctx context.Context, p deputy.ClaimParams) ([]*deputy.Task, error) {
	limit := claimLimit(p)
	if limit == 0 {
		return nil, nil
	}
	if p.Heartbeat {
		if _, err := w.exec(ctx, qHeartbeat, p.Owner, micros(p.Now)); err != nil {
			return nil, err
		}
	}
	types, err := json.Marshal(p.Types)
	if err != nil {
		return nil, err
	}
	ids, err := w.claimable(ctx, string(types), micros(p.Now), p.Budget, limit)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	return w.markClaimed(ctx, ids, p)
}

// claimable returns the ids of the tasks to claim, in order: the longest
// prefix of the claimable tasks that fits budget and limit.
func (w *wtx) claimable(ctx context.Context, types string, now int64, budget, limit int,
) ([]string, error) {
	var (
		ids      []string
		spent    int
		priority = int64(math.MaxInt64)
	)
	for len(ids) < limit {
		err := w.queryRow(ctx, qNextPriority, priority).Scan(&priority)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return nil, err
		}

		rows, err := w.query(ctx, qCandidates, priority, now, types, limit-len(ids))
		if err != nil {
			return nil, err
		}
		full := false
		for !full && rows.Next() {
			var (
				id   string
				cost int
			)
			if err := rows.Scan(&id, &cost); err != nil {
				rows.Close()
				return nil, err
			}
			// The first task that does not fit ends the claim, so that
			// smaller tasks behind it do not starve it.
			if full = spent+cost > budget; !full {
				ids = append(ids, id)
				spent += cost
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil || full {
			return ids, err
		}
	}
	return ids, nil
}

// markClaimed claims the tasks with the given ids and returns them in that
// order, with their keys.
func (w *wtx) markClaimed(ctx context.Context, ids []string, p deputy.ClaimParams,
) ([]*deputy.Task, error) {
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	now := micros(p.Now)
	lease := micros(p.Now.Add(p.Lease))
	rows, err := w.query(ctx, qClaim, p.Owner, now, lease, now, string(idsJSON))
	if err != nil {
		return nil, err
	}
	tasks, keyed, err := scanTasks(rows)
	if err != nil {
		return nil, err
	}
	if err := loadKeys(ctx, w, tasks, keyed, true); err != nil {
		return nil, err
	}
	// RETURNING has no order: restore the claim order.
	return inOrder(tasks, ids), nil
}

// QueryContext runs a registered query; it lets loadKeys read in a write
// transaction.
func (w *wtx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return w.query(ctx, q, args...)
}

// Complete implements [deputy.Store]. It deletes the tasks of a batch with
// one statement, in rounds so that a task completed twice in one batch is
// written in order.
func (db *DB) Complete(ctx context.Context, cs []deputy.Completion) ([]error, error) {
	errs := make([]error, len(cs))
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		for _, round := range rounds(cs) {
			if err := w.complete(ctx, cs, round, errs); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("complete runs: %w", err)
	}
	return errs, nil
}

// rounds splits the indexes of cs into rounds in which every task appears
// once: round k holds the k-th completion of each task.
func rounds(cs []deputy.Completion) [][]int {
	var (
		rs   [][]int
		seen = make(map[string]int, len(cs))
	)
	for i, c := range cs {
		k := seen[c.ID]
		seen[c.ID] = k + 1
		if k == len(rs) {
			rs = append(rs, make([]int, 0, len(cs)))
		}
		rs[k] = append(rs[k], i)
	}
	return rs
}

// complete writes the completions cs[i] for i in round, which name distinct
// tasks, and sets the errors of those it cannot write.
func (w *wtx) complete(ctx context.Context, cs []deputy.Completion, round []int, errs []error,
) error {
	written := make(map[string]bool, len(round))
	var deletes [][2]any
	for _, i := range round {
		c := cs[i]
		if c.Delete {
			deletes = append(deletes, [2]any{c.ID, c.ClaimVersion})
			continue
		}
		schedule, err := jsonOrNull(c.Schedule != nil, c.Schedule)
		if err != nil {
			return fmt.Errorf("task %s: schedule: %w", c.ID, err)
		}
		n, err := w.execAffected(ctx, qComplete, micros(c.RunAt), c.Attempts, rawOrNull(c.State),
			schedule, boolInt(c.Disable), micros(c.Now), c.ID, c.ClaimVersion)
		if err != nil {
			return err
		}
		written[c.ID] = n > 0
	}
	if err := w.completeDeletes(ctx, cs, round, deletes, written); err != nil {
		return err
	}

	// Explain the completions that wrote nothing.
	for _, i := range round {
		if c := cs[i]; !written[c.ID] {
			err := w.missingOr(ctx, c.ID, lostClaim(c.ID, c.ClaimVersion))
			if err := perItem(errs, i, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// completeDeletes deletes tasks, releases their keys and marks those it
// deleted. The runs are over, so nothing holds the keys any more.
func (w *wtx) completeDeletes(ctx context.Context, cs []deputy.Completion, round []int,
	deletes [][2]any, written map[string]bool,
) error {
	if len(deletes) == 0 {
		return nil
	}
	b, err := json.Marshal(deletes)
	if err != nil {
		return err
	}
	rows, err := w.query(ctx, qCompleteDelete, string(b))
	if err != nil {
		return err
	}
	var keyed []string
	for rows.Next() {
		var (
			id      string
			hasKeys bool
		)
		if err := rows.Scan(&id, &hasKeys); err != nil {
			rows.Close()
			return err
		}
		written[id] = true
		if hasKeys {
			keyed = append(keyed, id)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil || len(keyed) == 0 {
		return err
	}

	now := make(map[string]time.Time, len(round))
	for _, i := range round {
		now[cs[i].ID] = cs[i].Now
	}
	for _, id := range keyed {
		if err := w.releaseKeys(ctx, id, true, now[id], sql.Null[int64]{}); err != nil {
			return err
		}
	}
	return nil
}

func lostClaim(id string, claimVersion int64) error {
	return deputy.Errorf(deputy.ECONFLICT, "task %s is no longer running under claim %d",
		id, claimVersion)
}

// RenewLeases implements [deputy.Store].
func (db *DB) RenewLeases(ctx context.Context, ls []deputy.Lease) ([]error, error) {
	errs := make([]error, len(ls))
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		for i, l := range ls {
			n, err := w.execAffected(ctx, qRenewLease, micros(l.Until), l.ID, l.ClaimVersion)
			if err == nil && n == 0 {
				err = w.missingOr(ctx, l.ID, lostClaim(l.ID, l.ClaimVersion))
			}
			if err := perItem(errs, i, err); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	return errs, nil
}

// ReleaseOwned implements [deputy.Store]. It scans the tasks: a node calls
// it once, when it starts.
func (db *DB) ReleaseOwned(ctx context.Context, owner string, now time.Time) (int, error) {
	var n int64
	err := db.write(ctx, func(ctx context.Context, w *wtx) (err error) {
		n, err = w.execAffected(ctx, qReleaseOwned, micros(now), micros(now), owner)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release owned tasks: %w", err)
	}
	return int(n), nil
}

// Heartbeat implements [deputy.Store]. A heartbeat older than the node's
// last one is ignored.
func (db *DB) Heartbeat(ctx context.Context, node string, now time.Time) error {
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		_, err := w.exec(ctx, qHeartbeat, node, micros(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// ReleaseDeadNodes implements [deputy.Store].
func (db *DB) ReleaseDeadNodes(ctx context.Context, cutoff, now time.Time) (int, error) {
	var n int64
	err := db.write(ctx, func(ctx context.Context, w *wtx) (err error) {
		// NB: owner_id has no index, to spare every claim and completion its
		// upkeep, so releasing scans the tasks. Skip the scan when no node
		// died, as is usual.
		var dead int
		if err := w.queryRow(ctx, qDeadNodes, micros(cutoff)).Scan(&dead); err != nil || dead == 0 {
			return err
		}
		n, err = w.execAffected(ctx, qReleaseDead, micros(now), micros(now), micros(cutoff),
			micros(cutoff))
		if err != nil {
			return err
		}
		_, err = w.exec(ctx, qForgetDead, micros(cutoff))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release dead nodes: %w", err)
	}
	return int(n), nil
}

// Nodes implements [deputy.Store].
func (db *DB) Nodes(ctx context.Context) ([]deputy.Node, error) {
	rows, err := db.r.QueryContext(ctx,
		`SELECT id, last_seen FROM nodes ORDER BY last_seen DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var nodes []deputy.Node
	for rows.Next() {
		var (
			n        deputy.Node
			lastSeen int64
		)
		if err := rows.Scan(&n.ID, &lastSeen); err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		n.LastSeen = fromMicros(lastSeen)
		nodes = append(nodes, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return nodes, nil
}
