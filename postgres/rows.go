package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deputyhq/deputy"
)

// taskColumns are the columns every read of a task selects, in the order
// scanTask reads them.
var taskColumns = []string{
	"id", "task_type", "status", "enabled", "eff_priority", "eff_cost", "attempts", "version",
	"claim_version", "has_keys", "run_at", "scheduled_at", "started_at", "retry_at", "created_at",
	"updated_at", "owner_id", "priority", "cost", "space_id", "traceparent", "timeout_override",
	"scope", "params", "state", "schedule", "user_scope",
}

// taskCols returns taskColumns for a select list, each prefixed with
// prefix, such as "t.".
func taskCols(prefix string) string {
	var b strings.Builder
	for i, c := range taskColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(prefix)
		b.WriteString(c)
	}
	return b.String()
}

// scanTask reads a row of taskColumns. It reports whether the task has
// keys, which are stored apart.
func scanTask(row pgx.Row) (*deputy.Task, bool, error) {
	var (
		t                                   deputy.Task
		status                              string
		effPriority, effCost, attempts      int32
		hasKeys                             bool
		priority, cost                      *int32
		params, state, schedule, userScope  []byte
		runAt, scheduledAt, created, update time.Time
	)
	err := row.Scan(&t.ID, &t.Type, &status, &t.Enabled, &effPriority, &effCost, &attempts,
		&t.Version, &t.ClaimVersion, &hasKeys, &runAt, &scheduledAt, &t.StartedAt, &t.RetryAt,
		&created, &update, &t.OwnerID, &priority, &cost, &t.SpaceID, &t.Traceparent,
		&t.TimeoutOverride, &t.Scope, &params, &state, &schedule, &userScope)
	if err != nil {
		return nil, false, err
	}

	t.Status = deputy.Status(status)
	t.EffectivePriority = deputy.Priority(effPriority)
	t.EffectiveCost = deputy.Cost(effCost)
	t.Attempts = int(attempts)
	t.RunAt, t.ScheduledAt, t.CreatedAt, t.UpdatedAt = runAt.UTC(), scheduledAt.UTC(),
		created.UTC(), update.UTC()
	t.StartedAt, t.RetryAt = utcPtr(t.StartedAt), utcPtr(t.RetryAt)
	if priority != nil {
		p := deputy.Priority(*priority)
		t.Priority = &p
	}
	if cost != nil {
		c := deputy.Cost(*cost)
		t.Cost = &c
	}
	if params != nil {
		t.Params = json.RawMessage(params)
	}
	if state != nil {
		t.State = json.RawMessage(state)
	}
	if schedule != nil {
		if err := json.Unmarshal(schedule, &t.Schedule); err != nil {
			return nil, false, fmt.Errorf("task %s: read schedule: %w", t.ID, err)
		}
	}
	if userScope != nil {
		if err := json.Unmarshal(userScope, &t.UserScope); err != nil {
			return nil, false, fmt.Errorf("task %s: read user scope: %w", t.ID, err)
		}
	}
	return &t, hasKeys, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// scanTasks reads rows of taskColumns and returns the tasks and the ids of
// those with keys.
func scanTasks(rows pgx.Rows) ([]*deputy.Task, []string, error) {
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

const selectKeys = `
SELECT task_id, kind, key_id, secret, created_by_user FROM task_keys
WHERE task_id = ANY($1) ORDER BY task_id, kind`

// loadKeys sets the keys of the tasks whose ids are in keyed, with their
// secrets or without.
func loadKeys(ctx context.Context, q querier, tasks []*deputy.Task, keyed []string,
	secrets bool,
) error {
	if len(keyed) == 0 {
		return nil
	}
	rows, err := q.Query(ctx, selectKeys, keyed)
	if err != nil {
		return err
	}
	return scanKeys(rows, tasks, secrets)
}

// scanKeys reads rows of selectKeys into the keys of tasks.
func scanKeys(rows pgx.Rows, tasks []*deputy.Task, secrets bool) error {
	defer rows.Close()
	byID := make(map[string]*deputy.Task, len(tasks))
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

// taskArrays holds a batch of tasks column by column, to be sent as arrays
// and turned back into rows by taskUnnest: one round trip for any number of
// tasks.
type taskArrays struct {
	ids, types, statuses, owners, spaces, traces, timeouts []string
	enabled, hasKeys                                       []bool
	effPriority, effCost, attempts                         []int32
	versions, claimVersions                                []int64
	runAt, scheduledAt                                     []time.Time
	startedAt, retryAt                                     []*time.Time
	priority, cost                                         []*int32
	userNames, scope, params, state, schedule, userScope   []*string
}

// taskUnnest turns the arguments of taskArrays.args back into rows named u.
// JSON and the scope travel as text and are cast where they are stored.
const taskUnnest = `unnest(
    $1::text[], $2::text[], $3::text[], $4::boolean[], $5::int[], $6::int[], $7::int[],
    $8::bigint[], $9::bigint[], $10::boolean[], $11::timestamptz[], $12::timestamptz[],
    $13::timestamptz[], $14::timestamptz[], $15::text[], $16::int[], $17::int[], $18::text[],
    $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[],
    $26::text[]
) AS u(id, task_type, status, enabled, eff_priority, eff_cost, attempts, version, claim_version,
    has_keys, run_at, scheduled_at, started_at, retry_at, owner_id, priority, cost, space_id,
    user_name, traceparent, timeout_override, scope, params, state, schedule, user_scope)`

func (a *taskArrays) args() []any {
	return []any{
		a.ids, a.types, a.statuses, a.enabled, a.effPriority, a.effCost, a.attempts,
		a.versions, a.claimVersions, a.hasKeys, a.runAt, a.scheduledAt, a.startedAt, a.retryAt,
		a.owners, a.priority, a.cost, a.spaces, a.userNames, a.traces, a.timeouts, a.scope,
		a.params, a.state, a.schedule, a.userScope,
	}
}

// add appends t. It fails with EINVALID when t cannot be stored.
func (a *taskArrays) add(t *deputy.Task) error {
	if err := checkTask(t); err != nil {
		return err
	}
	schedule, err := jsonText(t.Schedule)
	if err != nil {
		return deputy.Errorf(deputy.EINVALID, "task %q: schedule: %v", t.ID, err)
	}
	userScope, err := jsonText(t.UserScope)
	if err != nil {
		return deputy.Errorf(deputy.EINVALID, "task %q: user scope: %v", t.ID, err)
	}
	var userName *string
	if t.UserScope != nil && t.UserScope.UserName != "" {
		userName = &t.UserScope.UserName
	}

	a.ids = append(a.ids, t.ID)
	a.types = append(a.types, t.Type)
	a.statuses = append(a.statuses, string(t.Status))
	a.enabled = append(a.enabled, t.Enabled)
	a.effPriority = append(a.effPriority, int32(t.EffectivePriority))
	a.effCost = append(a.effCost, int32(t.EffectiveCost))
	a.attempts = append(a.attempts, int32(t.Attempts))
	a.versions = append(a.versions, t.Version)
	a.claimVersions = append(a.claimVersions, t.ClaimVersion)
	a.hasKeys = append(a.hasKeys, len(t.Keys) > 0)
	a.runAt = append(a.runAt, t.RunAt)
	a.scheduledAt = append(a.scheduledAt, t.ScheduledAt)
	a.startedAt = append(a.startedAt, t.StartedAt)
	a.retryAt = append(a.retryAt, t.RetryAt)
	a.owners = append(a.owners, t.OwnerID)
	a.priority = append(a.priority, int32Ptr(t.Priority))
	a.cost = append(a.cost, int32Ptr(t.Cost))
	a.spaces = append(a.spaces, t.SpaceID)
	a.userNames = append(a.userNames, userName)
	a.traces = append(a.traces, t.Traceparent)
	a.timeouts = append(a.timeouts, t.TimeoutOverride)
	a.scope = append(a.scope, textArray(t.Scope))
	a.params = append(a.params, rawText(t.Params))
	a.state = append(a.state, rawText(t.State))
	a.schedule = append(a.schedule, schedule)
	a.userScope = append(a.userScope, userScope)
	return nil
}

// checkTask reports what would make t unstorable, as EINVALID.
func checkTask(t *deputy.Task) error {
	switch {
	case t.ID == "":
		return deputy.Errorf(deputy.EINVALID, "task id is required")
	case len(t.Params) > 0 && !json.Valid(t.Params):
		return deputy.Errorf(deputy.EINVALID, "task %q: params are not valid JSON", t.ID)
	case len(t.State) > 0 && !json.Valid(t.State):
		return deputy.Errorf(deputy.EINVALID, "task %q: state is not valid JSON", t.ID)
	}
	kinds := make([]string, 0, len(t.Keys))
	for _, k := range t.Keys {
		if k.Kind == "" || k.ID == "" {
			return deputy.Errorf(deputy.EINVALID, "task %q: key kind and id are required", t.ID)
		}
		if slices.Contains(kinds, k.Kind) {
			return deputy.Errorf(deputy.EINVALID, "task %q: two keys of kind %q", t.ID, k.Kind)
		}
		kinds = append(kinds, k.Kind)
	}
	return nil
}

func int32Ptr[T ~int](v *T) *int32 {
	if v == nil {
		return nil
	}
	i := int32(*v)
	return &i
}

// rawText returns a JSON document as text, nil for an empty one.
func rawText(m json.RawMessage) *string {
	if len(m) == 0 {
		return nil
	}
	s := string(m)
	return &s
}

// jsonText encodes v as JSON text, nil for a nil pointer.
func jsonText[T any](v *T) (*string, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s := string(b)
	return &s, nil
}

// textArray writes a PostgreSQL array literal, nil for an empty slice. A
// literal per row is how a batch carries arrays of different lengths.
func textArray(ss []string) *string {
	if len(ss) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, r := range s {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	s := b.String()
	return &s
}

// claimableNow reports whether t can be claimed at now: the writes that make
// this true wake the other nodes.
func claimableNow(t *deputy.Task, now time.Time) bool {
	if !t.Enabled {
		return false
	}
	switch t.Status {
	case deputy.StatusIdle:
		return !t.RunAt.After(now)
	case deputy.StatusRunning, deputy.StatusClaiming:
		return t.RetryAt != nil && !t.RetryAt.After(now)
	}
	return false
}

// splitDups splits n items keyed by id into the first occurrences, sorted
// by id so that batches lock rows in one order, and the later duplicates,
// which bulk calls fail.
func splitDups(n int, id func(i int) string) (first, dups []int) {
	seen := make(map[string]bool, n)
	first = make([]int, 0, n)
	for i := range n {
		k := id(i)
		if seen[k] {
			dups = append(dups, i)
			continue
		}
		seen[k] = true
		first = append(first, i)
	}
	slices.SortFunc(first, func(a, b int) int { return strings.Compare(id(a), id(b)) })
	return first, dups
}

// existing returns which of ids exist, to tell a conflict from a missing
// task after a conditional write.
func existing(ctx context.Context, q querier, ids []string) (map[string]bool, error) {
	found := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return found, nil
	}
	rows, err := q.Query(ctx, "SELECT id FROM tasks WHERE id = ANY($1)", ids)
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, id := range got {
		found[id] = true
	}
	return found, nil
}

// missingOrConflict returns ENOTFOUND or ECONFLICT for a write to id that
// did not land.
func missingOrConflict(found map[string]bool, id, what string) error {
	if !found[id] {
		return deputy.Errorf(deputy.ENOTFOUND, "task %q not found", id)
	}
	return deputy.Errorf(deputy.ECONFLICT, "task %q: %s", id, what)
}
