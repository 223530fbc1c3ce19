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
const claimSQL = "WITH RECURSIVE " + claimCTEs

// claimBeatSQL is claimSQL that also records a heartbeat of the claiming
// node, for claims with [deputy.ClaimParams.Heartbeat] set.
const claimBeatSQL = `WITH RECURSIVE hb AS (
    INSERT INTO nodes (id, last_seen) VALUES ($5, $1)
    ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen
    WHERE nodes.last_seen < excluded.last_seen
),
` + claimCTEs

const claimCTEs = `prio (p) AS (
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
    claim_version = 1 + floor(random() * 9007199254740990)::bigint
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
	args, ok := claimArgs(p)
	if !ok {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, claimStatement(p), args...)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", wrapErr(err))
	}
	tasks, keyed, err := scanTasks(rows)
	if err == nil {
		db.claimedRows(len(tasks))
		err = db.claimed(ctx, tasks, keyed)
	}
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	return tasks, nil
}

// claimArgs returns the arguments of claimSQL for p, and false when p
// claims nothing.
func claimArgs(p deputy.ClaimParams) ([]any, bool) {
	limit := p.MaxTasks
	if limit <= 0 {
		limit = p.Budget
	}
	if p.Budget <= 0 || limit <= 0 || len(p.Types) == 0 {
		return nil, false
	}
	now := micro(p.Now)
	return []any{now, p.Types, limit, p.Budget, p.Owner, now.Add(p.Lease)}, true
}

// claimStatement returns the claim statement for p, which returns the
// claimed tasks' taskColumns.
func claimStatement(p deputy.ClaimParams) string {
	if p.Heartbeat {
		return claimBeatReturning
	}
	return claimReturning
}

var (
	claimReturning     = claimSQL + taskCols("t.")
	claimBeatReturning = claimBeatSQL + taskCols("t.")
)

// claimed puts claimed tasks in claim order and reads the keys of those in
// keyed.
func (db *DB) claimed(ctx context.Context, tasks []*deputy.Task, keyed []string) error {
	slices.SortFunc(tasks, func(a, b *deputy.Task) int {
		return cmp.Or(cmp.Compare(b.EffectivePriority, a.EffectivePriority),
			a.ScheduledAt.Compare(b.ScheduledAt), cmp.Compare(a.ID, b.ID))
	})
	if err := loadKeys(ctx, db.pool, tasks, keyed, true); err != nil {
		// The claim stands: the tasks run again once their leases expire.
		return fmt.Errorf("load keys: %w", wrapErr(err))
	}
	return nil
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
	// updates counts the outcomes that do not delete their task.
	updates int
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
	if !c.Delete {
		a.updates++
	}
	a.anyWakeups = a.anyWakeups || (!c.Delete && !c.Disable && !c.RunAt.After(now))
	return nil
}

func (a *completionArrays) args() []any {
	return []any{a.ids, a.claims, a.del, a.state, a.runAt, a.attempts, a.schedule, a.disable,
		a.now}
}

// statement returns the statement that writes the batch without a
// transaction, and its arguments: completeDeletesSQL when every outcome
// deletes its task, as one-off tasks' do, else completeFastSQL.
func (a *completionArrays) statement() (string, []any) {
	if a.updates == 0 {
		return completeDeletesSQL, []any{a.ids, a.claims}
	}
	return completeFastSQL, a.args()
}

// completeFastSQL writes what a batch can without a transaction: the
// updates, and the deletes of tasks without keys, each conditional on the
// claim. Deleting a task with keys releases them, which takes statements of
// its own: a transaction deletes the tasks it leaves, if their claim still
// holds. It returns one row per task written.
const completeFastSQL = `
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
      AND t.status = 'running' AND NOT t.has_keys
    RETURNING t.id
)
SELECT id FROM done
UNION ALL
SELECT id FROM gone`

// completeDeletesSQL is completeFastSQL for a batch of deletes only, as
// one-off tasks' runs make: two arrays and one statement cost the server a
// third less per task.
const completeDeletesSQL = `
DELETE FROM tasks t USING unnest($1::text[], $2::bigint[]) AS c(id, claim_version)
WHERE t.id = c.id AND t.claim_version = c.claim_version AND t.status = 'running'
  AND NOT t.has_keys
RETURNING t.id`

// Complete writes the outcomes of runs, each conditional on the task still
// running under its claim. Deleted tasks release their keys at once: their
// run is over.
//
// A batch is one statement, committed on its own, unless it deletes tasks
// with keys: a transaction then deletes those and releases their keys.
func (db *DB) Complete(ctx context.Context, cs []deputy.Completion) ([]error, error) {
	rounds := completionRounds(cs)
	if len(rounds) == 1 {
		return db.completeRound(ctx, cs)
	}
	// A batch may hold two outcomes of one task: that of a run whose claim
	// was lost and that of the run of the new claim. Each is judged on its
	// own, in rounds of distinct tasks.
	errs := make([]error, len(cs))
	for _, round := range rounds {
		part := make([]deputy.Completion, len(round))
		for j, i := range round {
			part[j] = cs[i]
		}
		perr, err := db.completeRound(ctx, part)
		if err != nil {
			return nil, err
		}
		for j, i := range round {
			errs[i] = perr[j]
		}
	}
	return errs, nil
}

// completionRounds splits the indexes of cs into rounds in which every task
// appears once, keeping the order of each task's outcomes.
func completionRounds(cs []deputy.Completion) [][]int {
	seen := make(map[string]int, len(cs))
	var rounds [][]int
	for i := range cs {
		r := seen[cs[i].ID]
		seen[cs[i].ID] = r + 1
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], i)
	}
	return rounds
}

// completeRound writes outcomes of distinct tasks.
func (db *DB) completeRound(ctx context.Context, cs []deputy.Completion) ([]error, error) {
	b := db.newCompletions(cs)
	if b.empty() {
		return b.errs, nil
	}
	var written map[string]bool
	err := retry(func() (err error) {
		sql, args := b.arrays.statement()
		written, err = completeFast(ctx, db.pool, sql, args)
		return err
	})
	if err == nil {
		err = db.finishCompletions(ctx, b, written)
	}
	if err != nil {
		return nil, fmt.Errorf("complete tasks: %w", wrapErr(err))
	}
	return b.errs, nil
}

// CompleteAndClaim writes the outcomes of runs as [DB.Complete] does, then
// claims as [DB.Claim] does, with the two statements sent at once and run
// in one implicit transaction: a node's claim cycle takes one round trip
// and one commit. Deleting tasks with keys takes a transaction of its own
// once the claim has committed.
func (db *DB) CompleteAndClaim(ctx context.Context, cs []deputy.Completion,
	p deputy.ClaimParams,
) ([]error, []*deputy.Task, error) {
	b := db.newCompletions(cs)
	args, claim := claimArgs(p)
	switch {
	case len(b.dups) > 0:
		// Two outcomes of one task take rounds; claim after them.
		errs, err := db.Complete(ctx, cs)
		if err != nil {
			return nil, nil, err
		}
		tasks, err := db.Claim(ctx, p)
		return errs, tasks, err
	case !claim:
		errs, err := db.Complete(ctx, cs)
		return errs, nil, err
	case b.empty():
		tasks, err := db.Claim(ctx, p)
		return b.errs, tasks, err
	}

	var (
		written    map[string]bool
		tasks      []*deputy.Task
		tasksKeyed []string
	)
	err := retry(func() error {
		var batch pgx.Batch
		sql, cargs := b.arrays.statement()
		batch.Queue(sql, cargs...)
		batch.Queue(claimStatement(p), args...)
		br := db.pool.SendBatch(ctx, &batch)
		defer br.Close()
		rows, err := br.Query()
		if err == nil {
			written, err = scanCompleted(rows)
		}
		if err != nil {
			return err
		}
		if rows, err = br.Query(); err == nil {
			tasks, tasksKeyed, err = scanTasks(rows)
		}
		if err != nil {
			return err
		}
		return br.Close()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("complete tasks and claim: %w", wrapErr(err))
	}
	db.claimedRows(len(tasks))
	if err := db.claimed(ctx, tasks, tasksKeyed); err != nil {
		// The outcomes written stand: written again, they fail as conflicts.
		return nil, nil, fmt.Errorf("claim tasks: %w", err)
	}
	if err := db.finishCompletions(ctx, b, written); err != nil {
		// The claim and the outcomes written stand: the others fail on
		// their own, to be written again.
		err = fmt.Errorf("complete tasks: %w", wrapErr(err))
		for _, i := range slices.Concat(b.cand, b.dups) {
			if !written[cs[i].ID] && b.errs[i] == nil {
				b.errs[i] = err
			}
		}
	}
	return b.errs, tasks, nil
}

// completions is a batch of outcomes prepared for completeFastSQL.
type completions struct {
	cs     []deputy.Completion
	errs   []error
	arrays completionArrays
	// cand are the indexes of the outcomes in arrays, dups those of later
	// outcomes of the same tasks.
	cand, dups []int
	now        time.Time
}

func (db *DB) newCompletions(cs []deputy.Completion) *completions {
	b := &completions{cs: cs, errs: make([]error, len(cs)), now: db.now()}
	var first []int
	first, b.dups = splitDups(len(cs), func(i int) string { return cs[i].ID })
	for _, i := range first {
		if err := b.arrays.add(&cs[i], b.now); err != nil {
			b.errs[i] = err
			continue
		}
		b.cand = append(b.cand, i)
	}
	return b
}

// empty reports whether the batch has nothing to write or explain.
func (b *completions) empty() bool { return len(b.cand) == 0 && len(b.dups) == 0 }

// finishCompletions deletes the tasks with keys that completeFastSQL or
// completeDeletesSQL left, explains the outcomes not written, and wakes
// other nodes when tasks are due again.
func (db *DB) finishCompletions(ctx context.Context, b *completions,
	written map[string]bool,
) error {
	// A delete not written is of a task with keys, or of a lost claim: the
	// transaction finds out.
	keyed := map[string]bool{}
	for _, i := range b.cand {
		if c := &b.cs[i]; c.Delete && !written[c.ID] {
			keyed[c.ID] = true
		}
	}
	if len(keyed) > 0 {
		if err := db.completeKeyed(ctx, b.cs, b.cand, keyed, b.now, written); err != nil {
			return err
		}
	}
	failed, err := resolveFailures(ctx, db.pool, b.cand, b.dups,
		func(i int) string { return b.cs[i].ID }, written, "not running under this claim")
	if err != nil {
		return err
	}
	for i, err := range failed {
		b.errs[i] = err
	}
	if b.arrays.anyWakeups {
		db.wake()
	}
	return nil
}

// completeFast runs the statement of completionArrays.statement and
// returns the ids it wrote.
func completeFast(ctx context.Context, q querier, sql string, args []any,
) (map[string]bool, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return scanCompleted(rows)
}

// scanCompleted reads the ids of the tasks written.
func scanCompleted(rows pgx.Rows) (map[string]bool, error) {
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	written := make(map[string]bool, len(ids))
	for _, id := range ids {
		written[id] = true
	}
	return written, nil
}

// completeKeyed deletes, in a transaction, the tasks among cs[cand] whose
// ids are in keyed, releases their keys, and adds the ids it deleted to
// written.
func (db *DB) completeKeyed(ctx context.Context, cs []deputy.Completion, cand []int,
	keyed map[string]bool, now time.Time, written map[string]bool,
) error {
	var a completionArrays
	for _, i := range cand {
		if keyed[cs[i].ID] {
			if err := a.add(&cs[i], now); err != nil {
				return err
			}
		}
	}
	var gone map[string]bool
	err := db.inTx(ctx, func(tx pgx.Tx) (err error) {
		gone, err = deleteWithKeys(ctx, tx, now, completeSQL, a.args()...)
		return err
	})
	if err != nil {
		return err
	}
	for id := range gone {
		written[id] = true
	}
	return nil
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

// ReleaseDeadNodes releases the running tasks of the nodes last seen before
// cutoff, and forgets those nodes that hold no other task, in one
// statement. A dead node's tasks claimed after the cutoff keep it, so that
// a later call, with a later cutoff, releases them.
//
// NB: the DELETE checks last_seen itself, rather than joining dead, so that
// a node whose claim recorded a heartbeat meanwhile is not forgotten: the
// server checks the condition again on the row that claim wrote.
func (db *DB) ReleaseDeadNodes(ctx context.Context, cutoff, now time.Time) (int, error) {
	var n int64
	err := retry(func() error {
		return db.pool.QueryRow(ctx, `
WITH dead AS (SELECT id FROM nodes WHERE last_seen < $2),
released AS (
    UPDATE tasks t`+releaseSet+`
    FROM dead
    WHERE t.owner_id = dead.id AND t.owner_id <> '' AND t.status IN ('running', 'claiming')
      AND t.started_at < $2
    RETURNING 1
),
forgotten AS (
    DELETE FROM nodes n WHERE n.last_seen < $2 AND NOT EXISTS (
        SELECT 1 FROM tasks t
        WHERE t.owner_id = n.id AND t.status IN ('running', 'claiming') AND t.started_at >= $2)
)
SELECT count(*) FROM released`, micro(now), cutoff).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("release dead nodes: %w", wrapErr(err))
	}
	return db.released(n), nil
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
