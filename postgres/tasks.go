package postgres

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deputyhq/deputy"
)

const insertTasks = `
INSERT INTO tasks (id, task_type, status, enabled, eff_priority, eff_cost, attempts, version,
    claim_version, has_keys, run_at, scheduled_at, started_at, retry_at, owner_id, priority, cost,
    space_id, user_name, traceparent, timeout_override, scope, params, state, schedule,
    user_scope, created_at, updated_at)
SELECT u.id, u.task_type, u.status, u.enabled, u.eff_priority, u.eff_cost, u.attempts, 1,
    u.claim_version, u.has_keys, u.run_at, u.scheduled_at, u.started_at, u.retry_at, u.owner_id,
    u.priority, u.cost, u.space_id, u.user_name, u.traceparent, u.timeout_override,
    u.scope::text[], u.params::jsonb, u.state::jsonb, u.schedule::jsonb, u.user_scope::jsonb,
    $27, $27
FROM ` + taskUnnest + `
ON CONFLICT (id) DO NOTHING
RETURNING id`

// Insert stores new tasks with version 1. Existing ids, later duplicates
// of an id in tasks, and tasks whose non-user keys have no record fail with
// ECONFLICT.
func (db *DB) Insert(ctx context.Context, tasks []*deputy.Task) ([]error, error) {
	errs := make([]error, len(tasks))
	first, dups := splitDups(len(tasks), func(i int) string { return tasks[i].ID })
	for _, i := range dups {
		errs[i] = deputy.Errorf(deputy.ECONFLICT, "task %q already exists", tasks[i].ID)
	}
	var (
		cand  []int
		keyed bool
	)
	for _, i := range first {
		if err := checkTask(tasks[i]); err != nil {
			errs[i] = err
			continue
		}
		cand = append(cand, i)
		keyed = keyed || len(tasks[i].Keys) > 0
	}
	if len(cand) == 0 {
		return errs, nil
	}

	now := db.now()
	var (
		inserted   map[string]bool
		unrecorded map[int]error
		err        error
	)
	if !keyed {
		err = retry(func() error {
			inserted, err = insertRows(ctx, db.pool, tasks, cand, now)
			return err
		})
	} else {
		err = db.inTx(ctx, func(tx pgx.Tx) error {
			inserted, unrecorded, err = insertKeyed(ctx, tx, tasks, cand, now)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("insert tasks: %w", wrapErr(err))
	}

	wake := false
	for _, i := range cand {
		t := tasks[i]
		switch {
		case unrecorded[i] != nil:
			errs[i] = unrecorded[i]
		case !inserted[t.ID]:
			errs[i] = deputy.Errorf(deputy.ECONFLICT, "task %q already exists", t.ID)
		default:
			t.Version, t.CreatedAt, t.UpdatedAt = 1, now, now
			wake = wake || claimableNow(t, now)
		}
	}
	if wake {
		db.wake()
	}
	return errs, nil
}

// insertRows inserts the tasks at idx and returns the ids it inserted.
func insertRows(ctx context.Context, q querier, tasks []*deputy.Task, idx []int,
	now time.Time,
) (map[string]bool, error) {
	var a taskArrays
	for _, i := range idx {
		if err := a.add(tasks[i]); err != nil {
			return nil, err
		}
	}
	rows, err := q.Query(ctx, insertTasks, append(a.args(), now)...)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	inserted := make(map[string]bool, len(ids))
	for _, id := range ids {
		inserted[id] = true
	}
	return inserted, nil
}

// insertKeyed inserts the tasks at idx with their keys. Tasks whose
// non-user keys have no record are left out, with an error in unrecorded.
func insertKeyed(ctx context.Context, tx pgx.Tx, tasks []*deputy.Task, idx []int,
	now time.Time,
) (inserted map[string]bool, unrecorded map[int]error, err error) {
	var refs []deputy.KeyRef
	for _, i := range idx {
		for _, k := range tasks[i].Keys {
			refs = append(refs, deputy.KeyRef{Kind: k.Kind, ID: k.ID})
		}
	}
	locked, err := lockKeys(ctx, tx, refs)
	if err != nil {
		return nil, nil, err
	}

	unrecorded = map[int]error{}
	ok := make([]int, 0, len(idx))
	for _, i := range idx {
		if k, missing := unrecordedKey(tasks[i], locked); missing {
			unrecorded[i] = deputy.Errorf(deputy.ECONFLICT, "task %q: key %s/%s is not recorded",
				tasks[i].ID, k.Kind, k.ID)
			continue
		}
		ok = append(ok, i)
	}
	if len(ok) == 0 {
		return map[string]bool{}, unrecorded, nil
	}
	if inserted, err = insertRows(ctx, tx, tasks, ok, now); err != nil {
		return nil, nil, err
	}

	changes := newKeyChanges(now)
	var tk taskKeyArrays
	for _, i := range ok {
		t := tasks[i]
		if !inserted[t.ID] {
			continue
		}
		for _, k := range t.Keys {
			changes.use(k, userName(t))
			tk.add(t.ID, k)
		}
	}
	if len(tk.taskIDs) == 0 {
		return inserted, unrecorded, nil
	}
	err = applyKeyChanges(ctx, tx, changes, locked, stmt{insertTaskKeys, tk.args()})
	return inserted, unrecorded, err
}

// Get returns a task with its keys, or ENOTFOUND.
func (db *DB) Get(ctx context.Context, id string) (*deputy.Task, error) {
	tasks, err := db.getMany(ctx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("get task: %w", wrapErr(err))
	}
	if len(tasks) == 0 {
		return nil, deputy.Errorf(deputy.ENOTFOUND, "task %q not found", id)
	}
	return tasks[0], nil
}

// GetMany returns the tasks that exist among ids, with their keys, in the
// order of ids. An id given twice is returned once.
func (db *DB) GetMany(ctx context.Context, ids []string) ([]*deputy.Task, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	found, err := db.getMany(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get tasks: %w", wrapErr(err))
	}
	byID := make(map[string]*deputy.Task, len(found))
	for _, t := range found {
		byID[t.ID] = t
	}
	tasks := make([]*deputy.Task, 0, len(found))
	for _, id := range ids {
		if t := byID[id]; t != nil {
			tasks = append(tasks, t)
			delete(byID, id)
		}
	}
	return tasks, nil
}

// getMany reads tasks and their keys in one round trip.
func (db *DB) getMany(ctx context.Context, ids []string) ([]*deputy.Task, error) {
	b := &pgx.Batch{}
	b.Queue("SELECT "+taskCols("")+" FROM tasks WHERE id = ANY($1)", ids)
	b.Queue(selectKeys, ids)
	br := db.pool.SendBatch(ctx, b)
	defer br.Close()

	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	tasks, _, err := scanTasks(rows)
	if err != nil {
		return nil, err
	}
	rows, err = br.Query()
	if err != nil {
		return nil, err
	}
	if err := scanKeys(rows, tasks, true); err != nil {
		return nil, err
	}
	return tasks, br.Close()
}

// Fetch page sizes.
const (
	defaultPageSize = 100
	maxPageSize     = 10000
)

// Fetch returns a page of tasks matching q, ordered by run time then id.
// Their keys are listed without secrets. Sizes above 10000 are cut to
// 10000.
func (db *DB) Fetch(ctx context.Context, q deputy.Query) (*deputy.Page, error) {
	size := q.Size
	switch {
	case size == 0:
		size = defaultPageSize
	case size < 0:
		return nil, deputy.Errorf(deputy.EINVALID, "page size must not be negative")
	case size > maxPageSize:
		size = maxPageSize
	}
	where, args := queryFilter(q)
	if q.After != "" {
		runAt, id, err := decodeCursor(q.After)
		if err != nil {
			return nil, err
		}
		args = append(args, runAt, id)
		where = append(where, fmt.Sprintf("(run_at, id) > ($%d, $%d)", len(args)-1, len(args)))
	}

	// tasks_run_at_idx leaves running tasks out: read them apart, sorted,
	// and merge the two ordered branches.
	limit := " ORDER BY run_at, id LIMIT " + strconv.Itoa(size+1)
	branch := func(cond string) string {
		return "(SELECT " + taskCols("") + " FROM tasks" +
			whereSQL(slices.Concat(where, []string{cond})) + limit + ")"
	}
	var branches []string
	idle, running := statusBranches(q.Statuses)
	if idle {
		branches = append(branches, branch("status NOT IN ('running', 'claiming')"))
	}
	if running {
		branches = append(branches, branch("status IN ('running', 'claiming')"))
	}
	sql := "SELECT * FROM (" + strings.Join(branches, " UNION ALL ") + ") t" + limit

	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("fetch tasks: %w", wrapErr(err))
	}
	tasks, keyed, err := scanTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("fetch tasks: %w", wrapErr(err))
	}
	page := &deputy.Page{Tasks: tasks}
	if len(tasks) > size {
		page.Tasks = tasks[:size]
		last := page.Tasks[size-1]
		page.Next = encodeCursor(last.RunAt, last.ID)
	}
	if err := loadKeys(ctx, db.pool, page.Tasks, keyed, false); err != nil {
		return nil, fmt.Errorf("fetch tasks: %w", wrapErr(err))
	}
	return page, nil
}

// Aggregate counts the enabled, recognized tasks matching q by type and
// status.
func (db *DB) Aggregate(ctx context.Context, q deputy.Query) ([]deputy.Count, error) {
	where, args := queryFilter(q)
	where = append(where, "enabled", "status <> 'unrecognized'")
	sql := "SELECT task_type, status, count(*) FROM tasks" + whereSQL(where) +
		" GROUP BY task_type, status ORDER BY task_type, status"
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("aggregate tasks: %w", wrapErr(err))
	}
	counts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (deputy.Count, error) {
		var (
			c      deputy.Count
			status string
			n      int64
		)
		err := row.Scan(&c.Type, &status, &n)
		c.Status, c.Count = deputy.Status(status), int(n)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("aggregate tasks: %w", wrapErr(err))
	}
	return counts, nil
}

// queryFilter returns the conditions of q and their arguments.
func queryFilter(q deputy.Query) ([]string, []any) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if len(q.Types) > 0 {
		add("task_type = ANY($?)", q.Types)
	}
	if len(q.Statuses) > 0 {
		statuses := make([]string, len(q.Statuses))
		for i, s := range q.Statuses {
			statuses[i] = string(s)
		}
		add("status = ANY($?)", statuses)
	}
	if q.Scope != "" {
		add("$? = ANY(scope)", q.Scope)
	}
	if q.SpaceID != "" {
		add("space_id = $?", q.SpaceID)
	}
	if q.UserName != "" {
		add("user_name = $?", q.UserName)
	}
	if q.Enabled != nil {
		add("enabled = $?", *q.Enabled)
	}
	if q.DueBefore != nil {
		add("run_at <= $?", *q.DueBefore)
	}
	return where, args
}

// statusBranches reports whether tasks with the given statuses may be
// idle (not running or claiming) and running: Fetch reads each apart.
func statusBranches(statuses []deputy.Status) (idle, running bool) {
	if len(statuses) == 0 {
		return true, true
	}
	for _, s := range statuses {
		if s == deputy.StatusRunning || s == deputy.StatusClaiming {
			running = true
		} else {
			idle = true
		}
	}
	return idle, running
}

func whereSQL(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}

// encodeCursor returns an opaque cursor for the position after a task.
func encodeCursor(runAt time.Time, id string) string {
	s := strconv.FormatInt(runAt.UnixMicro(), 10) + ":" + id
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func decodeCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		us, id, ok := strings.Cut(string(b), ":")
		n, perr := strconv.ParseInt(us, 10, 64)
		if ok && perr == nil {
			return time.UnixMicro(n).UTC(), id, nil
		}
	}
	return time.Time{}, "", deputy.Errorf(deputy.EINVALID, "invalid page cursor")
}

const updateTasks = `
UPDATE tasks t SET
    task_type = u.task_type, status = u.status, enabled = u.enabled,
    eff_priority = u.eff_priority, eff_cost = u.eff_cost, attempts = u.attempts,
    run_at = u.run_at, scheduled_at = u.scheduled_at, started_at = u.started_at,
    retry_at = u.retry_at, owner_id = u.owner_id, priority = u.priority, cost = u.cost,
    space_id = u.space_id, user_name = u.user_name, traceparent = u.traceparent,
    timeout_override = u.timeout_override, scope = u.scope::text[], params = u.params::jsonb,
    state = u.state::jsonb, schedule = u.schedule::jsonb, user_scope = u.user_scope::jsonb,
    has_keys = CASE WHEN $28::boolean THEN u.has_keys ELSE t.has_keys END,
    version = t.version + 1, updated_at = $27
FROM ` + taskUnnest + `
WHERE t.id = u.id AND t.version = u.version
RETURNING t.id, t.version`

// Update writes tasks, each conditional on its version. The claim a
// running task carries is kept, so its run can still complete.
func (db *DB) Update(ctx context.Context, tasks []*deputy.Task, opts deputy.UpdateOptions,
) ([]error, error) {
	errs := make([]error, len(tasks))
	first, dups := splitDups(len(tasks), func(i int) string { return tasks[i].ID })
	var cand []int
	for _, i := range first {
		if err := checkTask(tasks[i]); err != nil {
			errs[i] = err
			continue
		}
		cand = append(cand, i)
	}
	now := db.now()
	if !opts.Now.IsZero() {
		now = micro(opts.Now)
	}

	var (
		versions map[string]int64
		failed   map[int]error
	)
	write := func(q querier, tx pgx.Tx) error {
		var err error
		failed = map[int]error{}
		if tx != nil {
			versions, err = updateKeyed(ctx, tx, tasks, cand, now, failed)
		} else {
			versions, err = updateRows(ctx, q, tasks, cand, now, false)
		}
		if err != nil {
			return err
		}

		// Tell conflicts from missing tasks, duplicates included.
		var (
			unresolved []int
			ids        []string
		)
		for _, i := range cand {
			if _, ok := versions[tasks[i].ID]; !ok && failed[i] == nil {
				unresolved = append(unresolved, i)
			}
		}
		for _, i := range append(unresolved, dups...) {
			ids = append(ids, tasks[i].ID)
		}
		found, err := existing(ctx, q, ids)
		for _, i := range append(unresolved, dups...) {
			failed[i] = missingOrConflict(found, tasks[i].ID, "version changed")
		}
		return err
	}
	var err error
	if opts.ReplaceKeys {
		err = db.inTx(ctx, func(tx pgx.Tx) error { return write(tx, tx) })
	} else {
		err = write(db.pool, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("update tasks: %w", wrapErr(err))
	}

	wake := false
	for _, i := range dups {
		errs[i] = failed[i]
	}
	for _, i := range cand {
		if failed[i] != nil {
			errs[i] = failed[i]
			continue
		}
		t := tasks[i]
		t.Version, t.UpdatedAt = versions[t.ID], now
		wake = wake || claimableNow(t, now)
	}
	if wake {
		db.wake()
	}
	return errs, nil
}

// updateRows writes the tasks at idx, each conditional on its version, and
// returns the new versions of those written.
func updateRows(ctx context.Context, q querier, tasks []*deputy.Task, idx []int, now time.Time,
	replaceKeys bool,
) (map[string]int64, error) {
	versions := make(map[string]int64, len(idx))
	if len(idx) == 0 {
		return versions, nil
	}
	var a taskArrays
	for _, i := range idx {
		if err := a.add(tasks[i]); err != nil {
			return nil, err
		}
	}
	rows, err := q.Query(ctx, updateTasks, append(a.args(), now, replaceKeys)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id string
			v  int64
		)
		if err := rows.Scan(&id, &v); err != nil {
			return nil, err
		}
		versions[id] = v
	}
	return versions, rows.Err()
}

// updateKeyed writes the tasks at idx and replaces their keys. Tasks whose
// new non-user keys have no record fail in failed.
func updateKeyed(ctx context.Context, tx pgx.Tx, tasks []*deputy.Task, idx []int, now time.Time,
	failed map[int]error,
) (map[string]int64, error) {
	// Lock the tasks first and learn which will be written, and the leases
	// of those running.
	ids := make([]string, len(idx))
	for n, i := range idx {
		ids[n] = tasks[i].ID
	}
	type current struct {
		version int64
		hold    *time.Time
		keys    []deputy.TaskKey
	}
	cur := map[string]*current{}
	rows, err := tx.Query(ctx, `
SELECT t.id, t.version, CASE WHEN t.status IN ('running', 'claiming') THEN t.retry_at END,
    k.kind, k.key_id, k.created_by_user
FROM tasks t LEFT JOIN task_keys k ON k.task_id = t.id
WHERE t.id = ANY($1)
ORDER BY t.id
FOR UPDATE OF t`, ids)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var (
			id          string
			v           int64
			hold        *time.Time
			kind, keyID *string
			byUser      *bool
		)
		if err := rows.Scan(&id, &v, &hold, &kind, &keyID, &byUser); err != nil {
			rows.Close()
			return nil, err
		}
		c := cur[id]
		if c == nil {
			c = &current{version: v, hold: utcPtr(hold)}
			cur[id] = c
		}
		if kind != nil {
			c.keys = append(c.keys, deputy.TaskKey{Kind: *kind, ID: *keyID, CreatedByUser: *byUser})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	// Lock the records of the old and new keys, and leave out the tasks
	// whose new keys are unrecorded.
	var (
		refs  []deputy.KeyRef
		write []int
	)
	for _, i := range idx {
		c := cur[tasks[i].ID]
		if c == nil || c.version != tasks[i].Version {
			continue // updateRows finds it missing or stale
		}
		write = append(write, i)
		for _, k := range c.keys {
			refs = append(refs, deputy.KeyRef{Kind: k.Kind, ID: k.ID})
		}
		for _, k := range tasks[i].Keys {
			refs = append(refs, deputy.KeyRef{Kind: k.Kind, ID: k.ID})
		}
	}
	locked, err := lockKeys(ctx, tx, refs)
	if err != nil {
		return nil, err
	}
	ok := write[:0]
	for _, i := range write {
		if k, missing := unrecordedKey(tasks[i], locked); missing {
			failed[i] = deputy.Errorf(deputy.ECONFLICT, "task %q: key %s/%s is not recorded",
				tasks[i].ID, k.Kind, k.ID)
			continue
		}
		ok = append(ok, i)
	}

	versions, err := updateRows(ctx, tx, tasks, ok, now, true)
	if err != nil {
		return nil, err
	}

	// Swap the keys of the tasks written and count the references.
	changes := newKeyChanges(now)
	var (
		tk      taskKeyArrays
		written []string
	)
	for _, i := range ok {
		t := tasks[i]
		if _, done := versions[t.ID]; !done {
			continue
		}
		written = append(written, t.ID)
		c := cur[t.ID]
		for _, k := range c.keys {
			changes.release(deputy.KeyRef{Kind: k.Kind, ID: k.ID}, c.hold, time.Time{},
				k.CreatedByUser)
		}
		for _, k := range t.Keys {
			changes.use(k, userName(t))
			tk.add(t.ID, k)
		}
	}
	if len(written) == 0 {
		return versions, nil
	}
	err = applyKeyChanges(ctx, tx, changes, locked,
		stmt{deleteOtherTaskKeys, []any{written, tk.taskIDs, tk.kinds}},
		stmt{upsertTaskKeys, tk.args()})
	return versions, err
}

// removeSQL deletes the keys of the tasks the CTE gone deleted, and returns
// one row per task and key: gone returns each task's id, has_keys, the
// lease that holds its keys (hold) and when it was deleted (at).
const removeSQL = `
k AS (
    DELETE FROM task_keys k USING gone WHERE gone.has_keys AND k.task_id = gone.id
    RETURNING k.task_id, k.kind, k.key_id, k.created_by_user
)
SELECT gone.id, gone.hold, gone.at, k.kind, k.key_id, k.created_by_user
FROM gone LEFT JOIN k ON k.task_id = gone.id`

// Remove deletes tasks and releases their keys in the same transaction.
// The keys of a running task are held until its lease expires.
func (db *DB) Remove(ctx context.Context, ids []string, now time.Time) ([]error, error) {
	errs := make([]error, len(ids))
	if len(ids) == 0 {
		return errs, nil
	}
	first, dups := splitDups(len(ids), func(i int) string { return ids[i] })
	uniq := make([]string, len(first))
	for n, i := range first {
		uniq[n] = ids[i]
	}
	now = micro(now)

	var removed map[string]bool
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		removed, err = deleteWithKeys(ctx, tx, now, `
WITH gone AS (
    DELETE FROM tasks WHERE id = ANY($1)
    RETURNING id, has_keys, CASE WHEN status IN ('running', 'claiming') THEN retry_at END AS hold,
        $2::timestamptz AS at
),`+removeSQL, uniq, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("remove tasks: %w", wrapErr(err))
	}
	for _, i := range first {
		if !removed[ids[i]] {
			errs[i] = deputy.Errorf(deputy.ENOTFOUND, "task %q not found", ids[i])
		}
	}
	for _, i := range dups {
		errs[i] = deputy.Errorf(deputy.ENOTFOUND, "task %q not found", ids[i])
	}
	return errs, nil
}

// deleteWithKeys runs a statement built on removeSQL and releases the keys
// of the tasks it deleted. It returns their ids.
func deleteWithKeys(ctx context.Context, tx pgx.Tx, now time.Time, sql string, args ...any,
) (map[string]bool, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	gone := map[string]bool{}
	changes := newKeyChanges(now)
	var refs []deputy.KeyRef
	for rows.Next() {
		var (
			id          string
			hold, at    *time.Time
			kind, keyID *string
			byUser      *bool
		)
		if err := rows.Scan(&id, &hold, &at, &kind, &keyID, &byUser); err != nil {
			rows.Close()
			return nil, err
		}
		gone[id] = true
		if kind != nil {
			ref := deputy.KeyRef{Kind: *kind, ID: *keyID}
			changes.release(ref, utcPtr(hold), at.UTC(), *byUser)
			refs = append(refs, ref)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(refs) == 0 {
		return gone, nil
	}
	locked, err := lockKeys(ctx, tx, refs)
	if err != nil {
		return nil, err
	}
	return gone, applyKeyChanges(ctx, tx, changes, locked)
}
