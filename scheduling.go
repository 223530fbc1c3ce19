package deputy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// NewTask is what a caller gives to schedule a task.
type NewTask struct {
	// ID is optional; a random id is generated when empty.
	ID string `json:"id,omitempty"`
	// Type names a registered definition. Required.
	Type string `json:"task_type"`
	// Params and State are JSON objects; they default to {}.
	Params json.RawMessage `json:"params,omitempty"`
	State  json.RawMessage `json:"state,omitempty"`
	// Schedule makes the task recurring.
	Schedule *Schedule `json:"schedule,omitempty"`
	// RunAt is the first run; it defaults to now, or to the first
	// occurrence of an rrule schedule.
	RunAt *time.Time `json:"run_at,omitempty"`
	// Scope groups tasks for queries.
	Scope []string `json:"scope,omitempty"`
	// Enabled defaults to true.
	Enabled *bool `json:"enabled,omitempty"`
	// TimeoutOverride replaces the definition's timeout for a one-off task.
	TimeoutOverride string    `json:"timeout_override,omitempty"`
	Priority        *Priority `json:"priority,omitempty"`
	Cost            *Cost     `json:"cost,omitempty"`
	Traceparent     string    `json:"traceparent,omitempty"`
	// SpaceID defaults to the caller's space, else [DefaultSpace].
	SpaceID string `json:"space_id,omitempty"`
}

// Options carries who a call is made for.
type Options struct {
	// Caller, when set, is the user on whose behalf the call is made. Tasks
	// scheduled with a caller run with API keys granted for them, when key
	// services are configured.
	Caller *Caller
	// RegenerateAPIKey, in bulk updates, replaces the tasks' keys with keys
	// granted for the caller and queues the old ones for invalidation.
	RegenerateAPIKey bool
}

func (o *Options) caller() *Caller {
	if o == nil {
		return nil
	}
	return o.Caller
}

// BulkResult is the per-id outcome of a bulk call.
type BulkResult struct {
	Tasks  []*Task
	Errors []BulkError
}

// BulkError is the failure of one id in a bulk call.
type BulkError struct {
	ID  string
	Err error
}

func (r *BulkResult) fail(id string, err error) {
	r.Errors = append(r.Errors, BulkError{ID: id, Err: err})
}

// maxBulk bounds the tasks of one bulk call.
const maxBulk = 10000

func validID(id string) error {
	if id == "" || len(id) > 256 {
		return Errorf(EINVALID, "task id must be 1 to 256 bytes long")
	}
	for _, r := range id {
		if unicode.IsControl(r) || r == '/' {
			return Errorf(EINVALID, "task id %q contains a control character or a slash", id)
		}
	}
	return nil
}

func jsonObject(field string, raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}"), nil
	}
	var v map[string]json.RawMessage
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, Errorf(EINVALID, "%s must be a JSON object", field)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, Errorf(EINVALID, "%s must be a JSON object", field)
	}
	return buf.Bytes(), nil
}

// build validates nt and turns it into a task to insert.
func (m *Manager) build(nt NewTask, caller *Caller, now time.Time) (*Task, error) {
	d := m.def(nt.Type)
	if nt.Type == "" {
		return nil, Errorf(EINVALID, "task_type is required")
	}
	if d == nil {
		return nil, Errorf(EINVALID, "unknown task type %q", nt.Type)
	}
	t := &Task{
		ID: nt.ID, Type: nt.Type, Schedule: nt.Schedule, Scope: nt.Scope, Enabled: true,
		TimeoutOverride: nt.TimeoutOverride, Priority: nt.Priority, Cost: nt.Cost,
		Traceparent: nt.Traceparent, SpaceID: nt.SpaceID, Status: StatusIdle, ScheduledAt: now,
	}
	if t.ID == "" {
		t.ID = newID()
	}
	if err := validID(t.ID); err != nil {
		return nil, err
	}
	if nt.Enabled != nil {
		t.Enabled = *nt.Enabled
	}
	if t.SpaceID == "" && caller != nil {
		t.SpaceID = caller.SpaceID
	}
	if t.SpaceID == "" {
		t.SpaceID = DefaultSpace
	}
	var err error
	if t.Params, err = jsonObject("params", nt.Params); err != nil {
		return nil, err
	}
	if t.State, err = jsonObject("state", nt.State); err != nil {
		return nil, err
	}
	if d.ValidateParams != nil {
		if err := d.ValidateParams(t.Params); err != nil {
			return nil, Errorf(EINVALID, "invalid params for %s: %v", t.Type, ErrorMessageOrText(err))
		}
	}
	if t.Schedule != nil {
		if err := t.Schedule.Validate(); err != nil {
			return nil, err
		}
	}
	if t.TimeoutOverride != "" {
		if _, err := ParseDuration(t.TimeoutOverride); err != nil {
			return nil, Errorf(EINVALID, "timeout_override: %v", err)
		}
	}
	if t.Cost != nil {
		if _, ok := costNames[*t.Cost]; !ok {
			return nil, Errorf(EINVALID, "unknown cost %d", int(*t.Cost))
		}
	}
	if t.Priority != nil && (*t.Priority < 1 || *t.Priority > 100) {
		return nil, Errorf(EINVALID, "priority %d out of range 1-100", int(*t.Priority))
	}
	for _, s := range t.Scope {
		if s == "" || len(s) > 256 {
			return nil, Errorf(EINVALID, "scope entries must be 1 to 256 characters")
		}
	}
	switch {
	case nt.RunAt != nil:
		t.RunAt = nt.RunAt.UTC()
	case t.Schedule != nil:
		if t.RunAt, err = t.Schedule.First(now); err != nil {
			return nil, err
		}
	default:
		t.RunAt = now
	}
	t.EffectivePriority, t.EffectiveCost = d.Priority, d.Cost
	if t.Priority != nil {
		t.EffectivePriority = *t.Priority
	}
	if t.Cost != nil {
		t.EffectiveCost = *t.Cost
	}
	return t, nil
}

// ErrorMessageOrText returns the message of a domain error, or the text of
// any other error.
func ErrorMessageOrText(err error) string {
	if ErrorCode(err) == EINTERNAL {
		return err.Error()
	}
	return ErrorMessage(err)
}

// Schedule validates and stores a new task. With opts.Caller and key
// services configured, the task runs with API keys granted for the caller.
// An existing id is an ECONFLICT error.
func (m *Manager) Schedule(ctx context.Context, nt NewTask, opts *Options) (*Task, error) {
	res, err := m.BulkSchedule(ctx, []NewTask{nt}, opts)
	if err != nil {
		return nil, err
	}
	if len(res.Errors) > 0 {
		return nil, res.Errors[0].Err
	}
	return res.Tasks[0], nil
}

// BulkSchedule validates and stores new tasks. Invalid input fails the whole
// call and stores nothing; an existing id fails only its task. Tasks of one
// type share the keys granted for the call.
func (m *Manager) BulkSchedule(ctx context.Context, nts []NewTask, opts *Options) (*BulkResult, error) {
	if len(nts) == 0 {
		return &BulkResult{}, nil
	}
	if len(nts) > maxBulk {
		return nil, Errorf(EINVALID, "at most %d tasks per call", maxBulk)
	}
	now := m.cfg.Now()
	tasks := make([]*Task, len(nts))
	seen := make(map[string]bool, len(nts))
	for i, nt := range nts {
		t, err := m.build(nt, opts.caller(), now)
		if err != nil {
			if len(nts) > 1 {
				return nil, fmt.Errorf("task %d: %w", i, err)
			}
			return nil, err
		}
		if seen[t.ID] {
			return nil, Errorf(EINVALID, "task id %q appears twice", t.ID)
		}
		seen[t.ID] = true
		tasks[i] = t
	}

	granted, err := m.grantFor(ctx, tasks, opts.caller())
	if err != nil {
		return nil, err
	}
	errs, err := m.store.Insert(ctx, tasks)
	if err != nil {
		m.releaseKeys(ctx, granted.refs())
		return nil, fmt.Errorf("schedule: %w", err)
	}
	res := &BulkResult{}
	due := false
	for i, t := range tasks {
		if errs[i] != nil {
			res.fail(t.ID, errs[i])
			continue
		}
		res.Tasks = append(res.Tasks, t)
		due = due || (t.Enabled && !t.RunAt.After(now))
	}
	// Keys granted for tasks whose write failed are released; keys still
	// used by the tasks that landed stay.
	if len(res.Errors) > 0 {
		m.releaseKeys(ctx, granted.refs())
	}
	if due {
		m.wake()
	}
	return res, nil
}

// EnsureScheduled schedules a task with a fixed id unless it exists. For an
// existing task, an interval schedule that differs is updated; no key is
// granted for it.
func (m *Manager) EnsureScheduled(ctx context.Context, nt NewTask, opts *Options) (*Task, error) {
	if err := validID(nt.ID); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		existing, err := m.store.Get(ctx, nt.ID)
		if err == nil {
			return m.ensureSchedule(ctx, existing, nt.Schedule, opts)
		}
		if ErrorCode(err) != ENOTFOUND {
			return nil, err
		}
		t, err := m.Schedule(ctx, nt, opts)
		if ErrorCode(err) == ECONFLICT && attempt < 2 {
			continue // created meanwhile: update it instead
		}
		return t, err
	}
}

func (m *Manager) ensureSchedule(ctx context.Context, t *Task, s *Schedule, opts *Options) (*Task, error) {
	if s == nil || s.Interval == "" || t.Schedule.Equal(s) {
		return t, nil
	}
	res, err := m.BulkUpdateSchedules(ctx, []string{t.ID}, *s, opts)
	if err != nil {
		return nil, err
	}
	if len(res.Tasks) == 1 {
		return res.Tasks[0], nil
	}
	// A conflict or removal meanwhile is not an error for ensure.
	return t, nil
}

// Get returns a task, or an ENOTFOUND error.
func (m *Manager) Get(ctx context.Context, id string) (*Task, error) {
	return m.store.Get(ctx, id)
}

// BulkGet returns the tasks among ids, and an ENOTFOUND error for each
// missing one.
func (m *Manager) BulkGet(ctx context.Context, ids []string) (*BulkResult, error) {
	tasks, err := m.store.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	res := &BulkResult{Tasks: tasks}
	found := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		found[t.ID] = true
	}
	for _, id := range ids {
		if !found[id] {
			res.fail(id, Errorf(ENOTFOUND, "task %q not found", id))
		}
	}
	return res, nil
}

// Fetch returns a page of tasks matching q.
func (m *Manager) Fetch(ctx context.Context, q Query) (*Page, error) {
	if q.Size < 0 || q.Size > 10000 {
		return nil, Errorf(EINVALID, "size must be between 1 and 10000")
	}
	for _, s := range q.Statuses {
		if !s.Valid() {
			return nil, Errorf(EINVALID, "unknown status %q", s)
		}
	}
	return m.store.Fetch(ctx, q)
}

// Aggregate counts the enabled, recognized tasks matching q by type and
// status.
func (m *Manager) Aggregate(ctx context.Context, q Query) ([]Count, error) {
	return m.store.Aggregate(ctx, q)
}

// Remove removes a task and queues its keys for invalidation once nothing
// uses them. A missing task is an ENOTFOUND error.
func (m *Manager) Remove(ctx context.Context, id string) error {
	errs, err := m.store.Remove(ctx, []string{id}, m.cfg.Now())
	if err != nil {
		return err
	}
	return errs[0]
}

// RemoveIfExists removes a task; a missing task is not an error.
func (m *Manager) RemoveIfExists(ctx context.Context, id string) error {
	err := m.Remove(ctx, id)
	if ErrorCode(err) == ENOTFOUND {
		return nil
	}
	return err
}

// BulkRemove removes tasks, reporting missing ones per id.
func (m *Manager) BulkRemove(ctx context.Context, ids []string) (*BulkResult, error) {
	if len(ids) > maxBulk {
		return nil, Errorf(EINVALID, "at most %d ids per call", maxBulk)
	}
	errs, err := m.store.Remove(ctx, ids, m.cfg.Now())
	if err != nil {
		return nil, err
	}
	res := &BulkResult{}
	for i, e := range errs {
		if e != nil {
			res.fail(ids[i], e)
		}
	}
	return res, nil
}

// RunSoon makes an idle task due now. A running task, or a write that lost
// a race, is an ECONFLICT error.
func (m *Manager) RunSoon(ctx context.Context, id string) (*Task, error) {
	t, err := m.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch t.Status {
	case StatusUnrecognized:
		return nil, Errorf(EINVALID, "task %q has an unrecognized type", id)
	case StatusRunning, StatusClaiming:
		return nil, Errorf(ECONFLICT, "task %q is already running", id)
	}
	now := m.cfg.Now()
	t.Status, t.RunAt, t.ScheduledAt = StatusIdle, now, now
	errs, err := m.store.Update(ctx, []*Task{t}, UpdateOptions{Now: now})
	if err != nil {
		return nil, err
	}
	if errs[0] != nil {
		return nil, errs[0]
	}
	m.wake()
	return t, nil
}

// BulkEnable enables tasks; with runSoon, idle ones become due now.
func (m *Manager) BulkEnable(ctx context.Context, ids []string, runSoon bool, opts *Options) (*BulkResult, error) {
	now := m.cfg.Now()
	res, err := m.bulkUpdate(ctx, ids, opts, func(t *Task) (bool, error) {
		if t.Enabled {
			return false, nil
		}
		t.Enabled = true
		if runSoon && t.Status == StatusIdle {
			t.RunAt, t.ScheduledAt = now, now
		}
		return true, nil
	})
	if err == nil && runSoon {
		m.wake()
	}
	return res, err
}

// BulkDisable disables tasks; with clearState, their state is reset to {}.
func (m *Manager) BulkDisable(ctx context.Context, ids []string, clearState bool, opts *Options) (*BulkResult, error) {
	return m.bulkUpdate(ctx, ids, opts, func(t *Task) (bool, error) {
		if !t.Enabled && !clearState {
			return false, nil
		}
		t.Enabled = false
		if clearState {
			t.State = json.RawMessage("{}")
		}
		return true, nil
	})
}

// BulkUpdateSchedules replaces the schedule of idle tasks whose schedule
// differs, moving their next run by the change of interval.
func (m *Manager) BulkUpdateSchedules(ctx context.Context, ids []string, s Schedule,
	opts *Options,
) (*BulkResult, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	now := m.cfg.Now()
	return m.bulkUpdate(ctx, ids, opts, func(t *Task) (bool, error) {
		if t.Status != StatusIdle || t.Schedule.Equal(&s) {
			return false, nil
		}
		return true, m.reschedule(t, &s, now)
	})
}

// reschedule sets t's schedule to s and moves its next run accordingly:
// for intervals, by the difference of the intervals.
func (m *Manager) reschedule(t *Task, s *Schedule, now time.Time) error {
	switch {
	case t.Schedule != nil && t.Schedule.Interval != "" && s.Interval != "":
		oldI, _ := t.Schedule.interval()
		newI, err := s.interval()
		if err != nil {
			return err
		}
		t.RunAt = t.RunAt.Add(newI - oldI)
		if t.RunAt.Before(now) {
			t.RunAt = now
		}
	case s.RRule != nil:
		next, err := s.First(now)
		if err != nil {
			return err
		}
		t.RunAt = next
	}
	sc := *s
	t.Schedule = &sc
	return nil
}

// BulkUpdateState replaces the state of tasks with what fn returns.
func (m *Manager) BulkUpdateState(ctx context.Context, ids []string,
	fn func(state json.RawMessage, id string) (json.RawMessage, error), opts *Options,
) (*BulkResult, error) {
	return m.bulkUpdate(ctx, ids, opts, func(t *Task) (bool, error) {
		s, err := fn(t.State, t.ID)
		if err != nil {
			return false, err
		}
		if t.State, err = jsonObject("state", s); err != nil {
			return false, err
		}
		return true, nil
	})
}

// Patch is a change applied by [Manager.BulkUpdate]. Nil fields are left
// alone.
type Patch struct {
	Schedule *Schedule
	State    json.RawMessage
	Params   json.RawMessage
	Enabled  *bool
}

// BulkUpdate applies a patch to tasks. With opts.RegenerateAPIKey, tasks
// get keys newly granted for opts.Caller: the old keys of every task whose
// write landed are queued for invalidation, and the new keys of every task
// whose write failed are.
func (m *Manager) BulkUpdate(ctx context.Context, ids []string, p Patch, opts *Options) (*BulkResult, error) {
	now := m.cfg.Now()
	if p.Schedule != nil {
		if err := p.Schedule.Validate(); err != nil {
			return nil, err
		}
	}
	var err error
	if p.State != nil {
		if p.State, err = jsonObject("state", p.State); err != nil {
			return nil, err
		}
	}
	if p.Params != nil {
		if p.Params, err = jsonObject("params", p.Params); err != nil {
			return nil, err
		}
	}
	apply := func(t *Task) (bool, error) {
		changed := false
		if p.Schedule != nil && !t.Schedule.Equal(p.Schedule) {
			if err := m.reschedule(t, p.Schedule, now); err != nil {
				return false, err
			}
			changed = true
		}
		if p.State != nil {
			t.State, changed = p.State, true
		}
		if p.Params != nil {
			if d := m.def(t.Type); d != nil && d.ValidateParams != nil {
				if err := d.ValidateParams(p.Params); err != nil {
					return false, Errorf(EINVALID, "invalid params for %s: %v", t.Type, ErrorMessageOrText(err))
				}
			}
			t.Params, changed = p.Params, true
		}
		if p.Enabled != nil && *p.Enabled != t.Enabled {
			t.Enabled, changed = *p.Enabled, true
		}
		return changed, nil
	}
	if opts != nil && opts.RegenerateAPIKey {
		return m.bulkRekey(ctx, ids, opts.caller(), apply)
	}
	return m.bulkUpdate(ctx, ids, opts, apply)
}

// maxConflictRetries is how many more times a bulk call retries the ids
// whose write lost a race.
const maxConflictRetries = 2

// bulkUpdate reads tasks, applies fn to each, and writes the changed ones
// conditionally, retrying version conflicts with fresh reads.
func (m *Manager) bulkUpdate(ctx context.Context, ids []string, _ *Options,
	fn func(t *Task) (bool, error),
) (*BulkResult, error) {
	return m.bulkWrite(ctx, ids, UpdateOptions{}, fn)
}

func (m *Manager) bulkWrite(ctx context.Context, ids []string, opts UpdateOptions,
	fn func(t *Task) (bool, error),
) (*BulkResult, error) {
	if len(ids) > maxBulk {
		return nil, Errorf(EINVALID, "at most %d ids per call", maxBulk)
	}
	res := &BulkResult{}
	pending := dedupe(ids)
	for attempt := 0; len(pending) > 0; attempt++ {
		tasks, err := m.store.GetMany(ctx, pending)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]*Task, len(tasks))
		for _, t := range tasks {
			byID[t.ID] = t
		}
		var writes []*Task
		for _, id := range pending {
			t := byID[id]
			if t == nil {
				res.fail(id, Errorf(ENOTFOUND, "task %q not found", id))
				continue
			}
			changed, err := fn(t)
			switch {
			case err != nil:
				res.fail(id, err)
			case changed:
				writes = append(writes, t)
			default:
				res.Tasks = append(res.Tasks, t)
			}
		}
		if len(writes) == 0 {
			break
		}
		opts.Now = m.cfg.Now()
		errs, err := m.store.Update(ctx, writes, opts)
		if err != nil {
			return nil, err
		}
		pending = pending[:0]
		for i, t := range writes {
			switch {
			case errs[i] == nil:
				res.Tasks = append(res.Tasks, t)
			case ErrorCode(errs[i]) == ECONFLICT && attempt < maxConflictRetries:
				pending = append(pending, t.ID)
			default:
				res.fail(t.ID, errs[i])
			}
		}
	}
	return res, nil
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, strings.Clone(id))
		}
	}
	return out
}
