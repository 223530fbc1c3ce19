package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/deputyhq/deputy"
)

// claimSQL claims a batch in one statement.
//
// The claim index is ordered by (eff_priority DESC, due_at, id). A plain
// ORDER BY on it with due_at <= now cannot stop at the first task not yet
// due: it would read every idle task of a priority to find the due ones of
// the next, which on a million idle tasks is a scan of them all. So prio
// walks the distinct priorities (one index probe each, there are few), and
// for each the lateral subquery reads only the due range of that priority,
// locking rows with SKIP LOCKED so that nodes never wait for each other.
// The outer LIMIT stops pulling once enough rows are locked.
//
// NB: the recursive CTE yields priorities in descending order and the
// nested loop keeps that order, so the first $3 rows locked are the first in
// claim order. fit recomputes the order anyway: the window sums costs over
// the locked rows and the update keeps the prefix that fits the budget.
// The update finds its rows with id = ANY(ARRAY(...)), which always probes
// the primary key: a join on fit lets the planner, misled by the LIMIT,
// hash-join against a scan of the whole table. scheduled_at = t.due_at
// takes the due time from the row as locked.
const claimSQL = `
WITH RECURSIVE prio (p) AS (
    (SELECT eff_priority FROM tasks
     WHERE enabled AND status IN ('idle', 'running', 'claiming')
     ORDER BY eff_priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT t.eff_priority FROM tasks t
            WHERE t.enabled AND t.status IN ('idle', 'running', 'claiming')
              AND t.eff_priority < prio.p
            ORDER BY t.eff_priority DESC LIMIT 1)
    FROM prio WHERE prio.p IS NOT NULL
),
locked AS (
    SELECT c.id, c.eff_priority, c.eff_cost, c.due_at
    FROM prio CROSS JOIN LATERAL (
        SELECT t.id, t.eff_priority, t.eff_cost, t.due_at FROM tasks t
        WHERE t.enabled AND t.status IN ('idle', 'running', 'claiming')
          AND t.eff_priority = prio.p AND t.due_at <= $1 AND t.task_type = ANY($2)
        ORDER BY t.due_at, t.id
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) c
    WHERE prio.p IS NOT NULL
    LIMIT $3
),
fit AS (
    SELECT id, sum(eff_cost) OVER (
        ORDER BY eff_priority DESC, due_at, id ROWS UNBOUNDED PRECEDING) AS total
    FROM locked
)
UPDATE tasks t
SET status = 'running', owner_id = $5, started_at = $1, attempts = t.attempts + 1,
    retry_at = $6, scheduled_at = t.due_at, version = t.version + 1,
    claim_version = t.version + 1
WHERE t.id = ANY (ARRAY(SELECT id FROM fit WHERE total <= $4))
RETURNING `

// Claim marks up to a budget of due tasks as running by p.Owner and returns
// them with their keys, in claim order. It is one statement, committed at
// once; keys are read with a second only when a claimed task has any.
//
// TODO(deputy): due tasks of types this node does not run are read and
// skipped on every claim; a backlog of them would slow claims. Partial
// indexes per type group, or the type in the index, would fix it.
func (db *DB) Claim(ctx context.Context, p deputy.ClaimParams) ([]*deputy.Task, error) {
	limit := p.MaxTasks
	if limit <= 0 {
		limit = p.Budget
	}
	if p.Budget <= 0 || limit <= 0 || len(p.Types) == 0 {
		return nil, nil
	}
	now := micro(p.Now)

	rows, err := db.pool.Query(ctx, claimSQL+taskCols("t."), now, p.Types, limit, p.Budget,
		p.Owner, now.Add(p.Lease))
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", wrapErr(err))
	}
	tasks, keyed, err := scanTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", wrapErr(err))
	}
	slices.SortFunc(tasks, func(a, b *deputy.Task) int {
		return cmp.Or(cmp.Compare(b.EffectivePriority, a.EffectivePriority),
			a.ScheduledAt.Compare(b.ScheduledAt), cmp.Compare(a.ID, b.ID))
	})
	if err := loadKeys(ctx, db.pool, tasks, keyed, true); err != nil {
		// The claim stands: the tasks run again once their leases expire.
		return nil, fmt.Errorf("claim tasks: load keys: %w", wrapErr(err))
	}
	return tasks, nil
}

// completeSQL writes a batch of outcomes in one statement: updates for runs
// that go on, deletes for those that end, each conditional on the claim.
// It returns one row per task written and key released.
//
// NB: no index has a predicate on status, so the filter on running tasks
// leaves the planner to join the batch on the primary key (or, on a small
// table, a hash of one scan) rather than read every running task.
const completeSQL = `
WITH done AS (
    UPDATE tasks t
    SET status = 'idle', owner_id = '', started_at = NULL, retry_at = NULL,
        state = COALESCE(c.state::jsonb, t.state), run_at = c.run_at, attempts = c.attempts,
        schedule = COALESCE(c.schedule::jsonb, t.schedule), enabled = t.enabled AND NOT c.disable,
        version = t.version + 1, updated_at = c.now
    FROM ` + completionUnnest + `
    WHERE NOT c.del AND t.id = c.id AND t.claim_version = c.claim_version
      AND t.status = 'running'
    RETURNING t.id
),
gone AS (
    DELETE FROM tasks t USING ` + completionUnnest + `
    WHERE c.del AND t.id = c.id AND t.claim_version = c.claim_version
      AND t.status = 'running'
    RETURNING t.id, t.has_keys, NULL::timestamptz AS hold, c.now AS at
),
` + removeSQL + `
UNION ALL
SELECT id, NULL, NULL, NULL, NULL, NULL FROM done`

// completionUnnest turns the arguments of completionArrays.args back into
// rows named c. Each part of completeSQL unnests them itself: the planner
// then knows how many rows there are, where a shared CTE would hide it.
const completionUnnest = `unnest($1::text[], $2::bigint[], $3::boolean[], $4::text[],
        $5::timestamptz[], $6::int[], $7::text[], $8::boolean[], $9::timestamptz[])
    AS c(id, claim_version, del, state, run_at, attempts, schedule, disable, now)`

// completionArrays holds a batch of completions column by column.
type completionArrays struct {
	ids                   []string
	claims                []int64
	del, disable          []bool
	state, schedule       []*string
	runAt, now            []time.Time
	attempts              []int32
	anyDelete, anyWakeups bool
}

func (a *completionArrays) add(c *deputy.Completion, now time.Time) error {
	if len(c.State) > 0 && !json.Valid(c.State) {
		return deputy.Errorf(deputy.EINVALID, "task %q: state is not valid JSON", c.ID)
	}
	schedule, err := jsonText(c.Schedule)
	if err != nil {
		return deputy.Errorf(deputy.EINVALID, "task %q: schedule: %v", c.ID, err)
	}
	a.ids = append(a.ids, c.ID)
	a.claims = append(a.claims, c.ClaimVersion)
	a.del = append(a.del, c.Delete)
	a.disable = append(a.disable, c.Disable)
	a.state = append(a.state, rawText(c.State))
	a.schedule = append(a.schedule, schedule)
	a.runAt = append(a.runAt, c.RunAt)
	a.now = append(a.now, micro(c.Now))
	a.attempts = append(a.attempts, int32(c.Attempts))
	a.anyDelete = a.anyDelete || c.Delete
	a.anyWakeups = a.anyWakeups || (!c.Delete && !c.Disable && !c.RunAt.After(now))
	return nil
}

func (a *completionArrays) args() []any {
	return []any{a.ids, a.claims, a.del, a.state, a.runAt, a.attempts, a.schedule, a.disable,
		a.now}
}

// Complete writes the outcomes of runs, each conditional on the task still
// running under its claim. Deleted tasks release their keys at once: their
// run is over.
func (db *DB) Complete(ctx context.Context, cs []deputy.Completion) ([]error, error) {
	errs := make([]error, len(cs))
	first, dups := splitDups(len(cs), func(i int) string { return cs[i].ID })
	now := db.now()
	var (
		a    completionArrays
		cand []int
	)
	for _, i := range first {
		if err := a.add(&cs[i], now); err != nil {
			errs[i] = err
			continue
		}
		cand = append(cand, i)
	}
	if len(cand) == 0 && len(dups) == 0 {
		return errs, nil
	}

	// Only deletes may release keys, which takes more statements: batches
	// without deletes are one statement and need no transaction.
	var failed map[int]error
	err := db.inTxIf(ctx, a.anyDelete, func(q querier) error {
		var written map[string]bool
		var err error
		if tx, ok := q.(pgx.Tx); ok {
			written, err = deleteWithKeys(ctx, tx, now, completeSQL, a.args()...)
		} else {
			written, err = completeRows(ctx, q, a.args())
		}
		if err != nil {
			return err
		}
		failed, err = resolveFailures(ctx, q, cand, dups, func(i int) string { return cs[i].ID },
			written, "not running under this claim")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("complete tasks: %w", wrapErr(err))
	}
	for i, err := range failed {
		errs[i] = err
	}
	if a.anyWakeups {
		db.wake()
	}
	return errs, nil
}

// completeRows runs completeSQL for a batch without deletes.
func completeRows(ctx context.Context, q querier, args []any) (map[string]bool, error) {
	rows, err := q.Query(ctx, completeSQL, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	written := map[string]bool{}
	for rows.Next() {
		var (
			id          string
			hold, at    *time.Time
			kind, keyID *string
			byUser      *bool
		)
		if err := rows.Scan(&id, &hold, &at, &kind, &keyID, &byUser); err != nil {
			return nil, err
		}
		written[id] = true
	}
	return written, rows.Err()
}

// resolveFailures returns ENOTFOUND or ECONFLICT for the items of a
// conditional write that did not land: the candidates not written and the
// later duplicates.
func resolveFailures(ctx context.Context, q querier, cand, dups []int, id func(int) string,
	written map[string]bool, conflict string,
) (map[int]error, error) {
	var (
		failed []int
		ids    []string
	)
	for _, i := range cand {
		if !written[id(i)] {
			failed = append(failed, i)
		}
	}
	failed = append(failed, dups...)
	if len(failed) == 0 {
		return nil, nil
	}
	for _, i := range failed {
		ids = append(ids, id(i))
	}
	found, err := existing(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	errs := make(map[int]error, len(failed))
	for _, i := range failed {
		errs[i] = missingOrConflict(found, id(i), conflict)
	}
	return errs, nil
}

// RenewLeases extends the leases of running tasks, each conditional on its
// claim. A renewal is a write: it gives the task a new version, so that an
// update read before it cannot put the old lease back.
func (db *DB) RenewLeases(ctx context.Context, ls []deputy.Lease) ([]error, error) {
	errs := make([]error, len(ls))
	if len(ls) == 0 {
		return errs, nil
	}
	first, dups := splitDups(len(ls), func(i int) string { return ls[i].ID })
	var (
		ids    []string
		claims []int64
		until  []time.Time
	)
	for _, i := range first {
		ids = append(ids, ls[i].ID)
		claims = append(claims, ls[i].ClaimVersion)
		until = append(until, ls[i].Until)
	}
	var renewed []string
	err := retry(func() error {
		rows, err := db.pool.Query(ctx, `
UPDATE tasks t SET retry_at = l.until, version = t.version + 1
FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS l(id, claim_version, until)
WHERE t.id = l.id AND t.claim_version = l.claim_version AND t.status = 'running'
RETURNING t.id`, ids, claims, until)
		if err == nil {
			renewed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", wrapErr(err))
	}
	written := make(map[string]bool, len(renewed))
	for _, id := range renewed {
		written[id] = true
	}
	id := func(i int) string { return ls[i].ID }
	failed, err := resolveFailures(ctx, db.pool, first, dups, id, written,
		"not running under this claim")
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", wrapErr(err))
	}
	for i, err := range failed {
		errs[i] = err
	}
	return errs, nil
}

// releaseSet puts running tasks back to idle, due at $1.
const releaseSet = `
SET status = 'idle', owner_id = '', started_at = NULL, retry_at = NULL, run_at = $1,
    version = t.version + 1, updated_at = $1`

// ReleaseOwned puts the tasks running under owner back to idle, due at now.
func (db *DB) ReleaseOwned(ctx context.Context, owner string, now time.Time) (int, error) {
	tag, err := db.exec(ctx, "UPDATE tasks t"+releaseSet+`
WHERE t.owner_id = $2 AND t.owner_id <> '' AND t.status IN ('running', 'claiming')`,
		micro(now), owner)
	if err != nil {
		return 0, fmt.Errorf("release owned tasks: %w", wrapErr(err))
	}
	return db.released(tag.RowsAffected()), nil
}

// Heartbeat records that node is alive at now. A heartbeat older than the
// last one recorded, from a node whose clock went back, changes nothing.
func (db *DB) Heartbeat(ctx context.Context, node string, now time.Time) error {
	_, err := db.pool.Exec(ctx, `
INSERT INTO nodes (id, last_seen) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET last_seen = GREATEST(nodes.last_seen, excluded.last_seen)`,
		node, micro(now))
	if err != nil {
		return fmt.Errorf("heartbeat: %w", wrapErr(err))
	}
	return nil
}

// ReleaseDeadNodes forgets the nodes last seen before cutoff and releases
// their running tasks, in one statement.
func (db *DB) ReleaseDeadNodes(ctx context.Context, cutoff, now time.Time) (int, error) {
	tag, err := db.exec(ctx, `
WITH dead AS (DELETE FROM nodes WHERE last_seen < $2 RETURNING id)
UPDATE tasks t`+releaseSet+`
FROM dead
WHERE t.owner_id = dead.id AND t.owner_id <> '' AND t.status IN ('running', 'claiming')`,
		micro(now), cutoff)
	if err != nil {
		return 0, fmt.Errorf("release dead nodes: %w", wrapErr(err))
	}
	return db.released(tag.RowsAffected()), nil
}

// exec runs one statement on the pool, retrying as retry does.
func (db *DB) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := retry(func() error {
		var err error
		tag, err = db.pool.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}

// released wakes the other nodes when tasks were released, since they are
// due at once.
func (db *DB) released(n int64) int {
	if n > 0 {
		db.wake()
	}
	return int(n)
}

// Nodes lists the nodes that heartbeat, most recent first.
func (db *DB) Nodes(ctx context.Context) ([]deputy.Node, error) {
	rows, err := db.pool.Query(ctx, "SELECT id, last_seen FROM nodes ORDER BY last_seen DESC, id")
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", wrapErr(err))
	}
	nodes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (deputy.Node, error) {
		var n deputy.Node
		err := row.Scan(&n.ID, &n.LastSeen)
		n.LastSeen = n.LastSeen.UTC()
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", wrapErr(err))
	}
	return nodes, nil
}
