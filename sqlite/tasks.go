package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/deputyhq/deputy"
)

// dataColumns are the task columns that writes set from a [deputy.Task], in
// the order of taskData.
var dataColumns = []string{
	"task_type", "params", "state", "schedule", "run_at", "scheduled_at", "started_at", "retry_at",
	"attempts", "status", "owner_id", "traceparent", "scope", "enabled", "timeout_override",
	"priority", "cost", "space_id", "user_scope", "user_name", "eff_priority", "eff_cost",
}

// taskColumns are the columns that reads return, in the order of scanTask.
const taskColumns = `id, task_type, params, state, schedule, run_at, scheduled_at, started_at,
	retry_at, attempts, status, owner_id, traceparent, scope, enabled, timeout_override, priority,
	cost, space_id, user_scope, version, claim_version, eff_priority, eff_cost, has_keys,
	created_at, updated_at`

var (
	qInsertTask = writeQuery(`INSERT INTO tasks (id, ` + strings.Join(dataColumns, ", ") + `,
		version, claim_version, has_keys, created_at, updated_at)
	VALUES (` + placeholders(len(dataColumns)+6) + `)
	ON CONFLICT (id) DO NOTHING`)

	qUpdateTask = writeQuery(`UPDATE tasks SET ` + strings.Join(dataColumns, " = ?, ") + ` = ?,
		has_keys = coalesce(?, has_keys), version = version + 1, updated_at = ?
	WHERE id = ? AND version = ?`)

	qTaskRunState = writeQuery(`SELECT version, status, retry_at FROM tasks WHERE id = ?`)

	qTaskExists = writeQuery(`SELECT 1 FROM tasks WHERE id = ?`)

	qDeleteTask = writeQuery(`DELETE FROM tasks WHERE id = ? RETURNING has_keys, status, retry_at`)

	qTaskKeys = writeQuery(`SELECT task_id, kind, key_id, secret, created_by_user FROM task_keys
	WHERE task_id IN (SELECT value FROM json_each(?))
	ORDER BY task_id, kind`)
)

// placeholders returns n comma-separated parameters.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// taskData returns the values of dataColumns for t.
func taskData(t *deputy.Task) ([]any, error) {
	schedule, err := jsonOrNull(t.Schedule != nil, t.Schedule)
	if err != nil {
		return nil, fmt.Errorf("task %s: schedule: %w", t.ID, err)
	}
	scope, err := jsonOrNull(len(t.Scope) > 0, t.Scope)
	if err != nil {
		return nil, fmt.Errorf("task %s: scope: %w", t.ID, err)
	}
	userScope, err := jsonOrNull(t.UserScope != nil, t.UserScope)
	if err != nil {
		return nil, fmt.Errorf("task %s: user scope: %w", t.ID, err)
	}
	return []any{
		t.Type, rawOrNull(t.Params), rawOrNull(t.State), schedule, micros(t.RunAt),
		micros(t.ScheduledAt), microsPtr(t.StartedAt), microsPtr(t.RetryAt), t.Attempts,
		string(t.Status), stringOrNull(t.OwnerID), t.Traceparent, scope, boolInt(t.Enabled),
		t.TimeoutOverride, intOrNull(t.Priority), intOrNull(t.Cost), t.SpaceID, userScope,
		userName(t), int(t.EffectivePriority), int(t.EffectiveCost),
	}, nil
}

// userName returns the name of the user t runs as, if any.
func userName(t *deputy.Task) string {
	if t.UserScope == nil {
		return ""
	}
	return t.UserScope.UserName
}

func jsonOrNull(ok bool, v any) (any, error) {
	if !ok {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func rawOrNull(m json.RawMessage) any {
	if m == nil {
		return nil
	}
	return string(m)
}

func stringOrNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func intOrNull[T ~int](p *T) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// scanTask reads the taskColumns of one row and reports whether the task
// has keys.
func scanTask(row rowScanner) (*deputy.Task, bool, error) {
	var (
		t                                         deputy.Task
		params, state, schedule, scope, userScope []byte
		runAt, scheduledAt, createdAt, updatedAt  int64
		startedAt, retryAt, priority, cost        sql.Null[int64]
		status                                    string
		ownerID                                   sql.Null[string]
		enabled, hasKeys                          bool
	)
	err := row.Scan(&t.ID, &t.Type, &params, &state, &schedule, &runAt, &scheduledAt, &startedAt,
		&retryAt, &t.Attempts, &status, &ownerID, &t.Traceparent, &scope, &enabled,
		&t.TimeoutOverride, &priority, &cost, &t.SpaceID, &userScope, &t.Version, &t.ClaimVersion,
		&t.EffectivePriority, &t.EffectiveCost, &hasKeys, &createdAt, &updatedAt)
	if err != nil {
		return nil, false, err
	}

	t.Params, t.State = params, state
	t.RunAt, t.ScheduledAt = fromMicros(runAt), fromMicros(scheduledAt)
	t.StartedAt, t.RetryAt = fromMicrosPtr(startedAt), fromMicrosPtr(retryAt)
	t.CreatedAt, t.UpdatedAt = fromMicros(createdAt), fromMicros(updatedAt)
	t.Status, t.OwnerID, t.Enabled = deputy.Status(status), ownerID.V, enabled
	if priority.Valid {
		p := deputy.Priority(priority.V)
		t.Priority = &p
	}
	if cost.Valid {
		c := deputy.Cost(cost.V)
		t.Cost = &c
	}
	if err := unmarshalIf(schedule, &t.Schedule); err != nil {
		return nil, false, fmt.Errorf("task %s: schedule: %w", t.ID, err)
	}
	if err := unmarshalIf(scope, &t.Scope); err != nil {
		return nil, false, fmt.Errorf("task %s: scope: %w", t.ID, err)
	}
	if err := unmarshalIf(userScope, &t.UserScope); err != nil {
		return nil, false, fmt.Errorf("task %s: user scope: %w", t.ID, err)
	}
	return &t, hasKeys, nil
}

func unmarshalIf(b []byte, v any) error {
	if b == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

// scanTasks reads the rows of a taskColumns query and returns the tasks and
// the ids of those with keys.
func scanTasks(rows *sql.Rows) ([]*deputy.Task, []string, error) {
	defer rows.Close()
	var (
		tasks []*deputy.Task
		keyed []string
	)
	for rows.Next() {
		t, hasKeys, err := scanTask(rows)
		if err != nil {
			return nil, nil, err
		}
		tasks = append(tasks, t)
		if hasKeys {
			keyed = append(keyed, t.ID)
		}
	}
	return tasks, keyed, rows.Err()
}

// loadKeys sets the keys of the tasks whose ids are keyed, with their
// secrets or without.
func loadKeys(ctx context.Context, q querier, tasks []*deputy.Task, keyed []string, secrets bool,
) error {
	if len(keyed) == 0 {
		return nil
	}
	ids, err := json.Marshal(keyed)
	if err != nil {
		return err
	}
	rows, err := q.QueryContext(ctx, qTaskKeys, string(ids))
	if err != nil {
		return err
	}
	defer rows.Close()

	byID := make(map[string]*deputy.Task, len(keyed))
	for _, t := range tasks {
		byID[t.ID] = t
	}
	for rows.Next() {
		var (
			taskID string
			k      deputy.TaskKey
		)
		if err := rows.Scan(&taskID, &k.Kind, &k.ID, &k.Secret, &k.CreatedByUser); err != nil {
			return err
		}
		if !secrets {
			k.Secret = nil
		}
		if t := byID[taskID]; t != nil {
			t.Keys = append(t.Keys, k)
		}
	}
	return rows.Err()
}

// Insert implements [deputy.Store]. The store's clock, [Config.Now], stamps
// the tasks.
func (db *DB) Insert(ctx context.Context, tasks []*deputy.Task) ([]error, error) {
	// TODO(deputy): Store.Insert takes no write time, unlike Update and
	// Remove, so the stamps come from this store's clock rather than the
	// manager's; pass the time in once the contract has it.
	now := db.cfg.Now().UTC().Truncate(time.Microsecond)
	errs := make([]error, len(tasks))
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		for i, t := range tasks {
			if err := perItem(errs, i, w.insertTask(ctx, t, now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert tasks: %w", err)
	}

	for i, t := range tasks {
		if errs[i] == nil {
			t.Version, t.CreatedAt, t.UpdatedAt = 1, now, now
		}
	}
	return errs, nil
}

// insertTask inserts t with its keys. A domain error says why t cannot be
// inserted; nothing of it is written then.
func (w *wtx) insertTask(ctx context.Context, t *deputy.Task, now time.Time) error {
	if err := checkTaskKeys(t); err != nil {
		return err
	}
	if err := w.checkRecorded(ctx, t); err != nil {
		return err
	}
	data, err := taskData(t)
	if err != nil {
		return err
	}

	args := append([]any{t.ID}, data...)
	args = append(args, 1, 0, boolInt(len(t.Keys) > 0), micros(now), micros(now))
	n, err := w.execAffected(ctx, qInsertTask, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return deputy.Errorf(deputy.ECONFLICT, "task %s already exists", t.ID)
	}
	return w.addKeys(ctx, t, now)
}

// perItem records err as item i's outcome when it is a domain error, and
// returns any other error to fail the whole call.
func perItem(errs []error, i int, err error) error {
	var de *deputy.Error
	if errors.As(err, &de) {
		errs[i] = err
		return nil
	}
	return err
}

// Get implements [deputy.Store].
func (db *DB) Get(ctx context.Context, id string) (*deputy.Task, error) {
	tasks, err := db.getMany(ctx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("get task: %w", err)
	}
	if len(tasks) == 0 {
		return nil, deputy.Errorf(deputy.ENOTFOUND, "task %s not found", id)
	}
	return tasks[0], nil
}

// GetMany implements [deputy.Store]. An id given twice is returned once.
func (db *DB) GetMany(ctx context.Context, ids []string) ([]*deputy.Task, error) {
	tasks, err := db.getMany(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get tasks: %w", err)
	}
	return tasks, nil
}

func (db *DB) getMany(ctx context.Context, ids []string) ([]*deputy.Task, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	var found []*deputy.Task
	err = db.read(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+taskColumns+` FROM tasks
			WHERE id IN (SELECT value FROM json_each(?))`, string(idsJSON))
		if err != nil {
			return err
		}
		var keyed []string
		if found, keyed, err = scanTasks(rows); err != nil {
			return err
		}
		return loadKeys(ctx, tx, found, keyed, true)
	})
	if err != nil {
		return nil, err
	}
	return inOrder(found, ids), nil
}

// inOrder returns the tasks in the order of their ids in ids, each once.
func inOrder(tasks []*deputy.Task, ids []string) []*deputy.Task {
	byID := make(map[string]*deputy.Task, len(tasks))
	for _, t := range tasks {
		byID[t.ID] = t
	}
	ordered := make([]*deputy.Task, 0, len(tasks))
	for _, id := range ids {
		if t := byID[id]; t != nil {
			ordered = append(ordered, t)
			delete(byID, id)
		}
	}
	return ordered
}

// filter returns the WHERE conditions and arguments of q.
func filter(q deputy.Query) ([]string, []any) {
	var (
		conds []string
		args  []any
	)
	in := func(col string, vals []string) {
		conds = append(conds, col+" IN ("+placeholders(len(vals))+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	if len(q.Types) > 0 {
		in("task_type", q.Types)
	}
	if len(q.Statuses) > 0 {
		statuses := make([]string, len(q.Statuses))
		for i, s := range q.Statuses {
			statuses[i] = string(s)
		}
		in("status", statuses)
	}
	if q.Scope != "" {
		conds = append(conds, "EXISTS (SELECT 1 FROM json_each(tasks.scope) WHERE value = ?)")
		args = append(args, q.Scope)
	}
	if q.SpaceID != "" {
		conds = append(conds, "space_id = ?")
		args = append(args, q.SpaceID)
	}
	if q.UserName != "" {
		conds = append(conds, "user_name = ?")
		args = append(args, q.UserName)
	}
	if q.Enabled != nil {
		conds = append(conds, "enabled = ?")
		args = append(args, boolInt(*q.Enabled))
	}
	if q.DueBefore != nil {
		conds = append(conds, "run_at <= ?")
		args = append(args, micros(*q.DueBefore))
	}
	return conds, args
}

// where joins conditions into a WHERE clause.
func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// Page sizes of [DB.Fetch].
const (
	defaultPageSize = 100
	maxPageSize     = 10000
)

// Fetch implements [deputy.Store]. Tasks come with their keys, without
// secrets.
func (db *DB) Fetch(ctx context.Context, q deputy.Query) (*deputy.Page, error) {
	query, args, size, err := fetchQuery(q)
	if err != nil {
		return nil, fmt.Errorf("fetch tasks: %w", err)
	}

	page := &deputy.Page{}
	err = db.read(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		tasks, keyed, err := scanTasks(rows)
		if err != nil {
			return err
		}
		if len(tasks) > size {
			tasks = tasks[:size]
			page.Next = encodeCursor(tasks[size-1])
		}
		page.Tasks = tasks
		return loadKeys(ctx, tx, tasks, keyed, false)
	})
	if err != nil {
		return nil, fmt.Errorf("fetch tasks: %w", err)
	}
	return page, nil
}

// fetchQuery returns the query of a page of q, its arguments and the page
// size. The query reads one more task than the page holds, to tell whether
// another page follows.
func fetchQuery(q deputy.Query) (string, []any, int, error) {
	size := q.Size
	if size <= 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	conds, args := filter(q)
	if q.After != "" {
		runAt, id, err := decodeCursor(q.After)
		if err != nil {
			return "", nil, 0, err
		}
		conds = append(conds, "(run_at, id) > (?, ?)")
		args = append(args, runAt, id)
	}
	query := `SELECT ` + taskColumns + ` FROM tasks` + where(conds) + ` ORDER BY run_at, id LIMIT ?`
	return query, append(args, size+1), size, nil
}

// encodeCursor returns the cursor of the page after t.
func encodeCursor(t *deputy.Task) string {
	s := strconv.FormatInt(micros(t.RunAt), 10) + ":" + t.ID
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		runAt, id, ok := strings.Cut(string(b), ":")
		if v, perr := strconv.ParseInt(runAt, 10, 64); ok && perr == nil {
			return v, id, nil
		}
	}
	return 0, "", deputy.Errorf(deputy.EINVALID, "invalid page cursor %q", c)
}

// Aggregate implements [deputy.Store].
func (db *DB) Aggregate(ctx context.Context, q deputy.Query) ([]deputy.Count, error) {
	conds, args := filter(q)
	conds = append(conds, "enabled = 1", "status <> 'unrecognized'")
	query := `SELECT task_type, status, count(*) FROM tasks` + where(conds) +
		` GROUP BY task_type, status ORDER BY task_type, status`

	var counts []deputy.Count
	err := db.read(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c deputy.Count
			if err := rows.Scan(&c.Type, &c.Status, &c.Count); err != nil {
				return err
			}
			counts = append(counts, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("aggregate tasks: %w", err)
	}
	return counts, nil
}

// Update implements [deputy.Store].
func (db *DB) Update(ctx context.Context, tasks []*deputy.Task, opts deputy.UpdateOptions,
) ([]error, error) {
	now := opts.Now.UTC().Truncate(time.Microsecond)
	errs := make([]error, len(tasks))
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		for i, t := range tasks {
			if err := perItem(errs, i, w.updateTask(ctx, t, now, opts.ReplaceKeys)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update tasks: %w", err)
	}

	for i, t := range tasks {
		if errs[i] == nil {
			t.Version++
			t.UpdatedAt = now
		}
	}
	return errs, nil
}

// updateTask writes t if it is still at t.Version, replacing its keys when
// replaceKeys is set. A domain error says why t cannot be written; nothing
// of it is written then.
func (w *wtx) updateTask(ctx context.Context, t *deputy.Task, now time.Time, replaceKeys bool,
) error {
	// Check everything that can fail before writing anything.
	var (
		hold    sql.Null[int64]
		hasKeys any
	)
	if replaceKeys {
		if err := checkTaskKeys(t); err != nil {
			return err
		}
		var (
			version int64
			status  string
			retryAt sql.Null[int64]
		)
		err := w.queryRow(ctx, qTaskRunState, t.ID).Scan(&version, &status, &retryAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return notFound(t.ID)
		case err != nil:
			return err
		case version != t.Version:
			return staleVersion(t)
		}
		if err := w.checkRecorded(ctx, t); err != nil {
			return err
		}
		if running(deputy.Status(status)) {
			hold = retryAt
		}
		hasKeys = boolInt(len(t.Keys) > 0)
	}
	data, err := taskData(t)
	if err != nil {
		return err
	}

	args := append(data, hasKeys, micros(now), t.ID, t.Version)
	n, err := w.execAffected(ctx, qUpdateTask, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return w.missingOr(ctx, t.ID, staleVersion(t))
	}
	if !replaceKeys {
		return nil
	}

	// Adopt the new keys before releasing the old ones, so that a key kept
	// across the swap never drops to zero references.
	old, err := w.takeKeys(ctx, t.ID)
	if err != nil {
		return err
	}
	if err := w.addKeys(ctx, t, now); err != nil {
		return err
	}
	return w.unrefAll(ctx, old, now, hold)
}

func staleVersion(t *deputy.Task) error {
	return deputy.Errorf(deputy.ECONFLICT, "task %s was changed since version %d", t.ID, t.Version)
}

func notFound(id string) error {
	return deputy.Errorf(deputy.ENOTFOUND, "task %s not found", id)
}

// missingOr explains why a conditional write of task id changed nothing:
// ENOTFOUND when the task is gone, else conflict.
func (w *wtx) missingOr(ctx context.Context, id string, conflict error) error {
	var one int
	err := w.queryRow(ctx, qTaskExists, id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return notFound(id)
	case err != nil:
		return err
	}
	return conflict
}

// running reports whether a task in status s is held by a run.
func running(s deputy.Status) bool {
	return s == deputy.StatusRunning || s == deputy.StatusClaiming
}

// Remove implements [deputy.Store].
func (db *DB) Remove(ctx context.Context, ids []string, now time.Time) ([]error, error) {
	errs := make([]error, len(ids))
	err := db.write(ctx, func(ctx context.Context, w *wtx) error {
		for i, id := range ids {
			var (
				hasKeys bool
				status  string
				retryAt sql.Null[int64]
			)
			err := w.queryRow(ctx, qDeleteTask, id).Scan(&hasKeys, &status, &retryAt)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				errs[i] = notFound(id)
				continue
			case err != nil:
				return err
			}
			if !running(deputy.Status(status)) {
				retryAt.Valid = false
			}
			if err := w.releaseKeys(ctx, id, hasKeys, now, retryAt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("remove tasks: %w", err)
	}
	return errs, nil
}
