package deputy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Status is the lifecycle state of a task.
type Status string

// Task statuses. Tasks are idle until claimed, running while a node owns
// them, and unrecognized when their type has been removed from the system.
const (
	StatusIdle         Status = "idle"
	StatusClaiming     Status = "claiming"
	StatusRunning      Status = "running"
	StatusFailed       Status = "failed"
	StatusShouldDelete Status = "should_delete"
	StatusUnrecognized Status = "unrecognized"
	StatusDeadLetter   Status = "dead_letter"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusIdle, StatusClaiming, StatusRunning, StatusFailed, StatusShouldDelete,
		StatusUnrecognized, StatusDeadLetter:
		return true
	}
	return false
}

// Priority orders claiming: higher priorities are claimed first.
type Priority int

// Priorities of the reference system.
const (
	PriorityLow               Priority = 1
	PriorityNormalLongRunning Priority = 40
	PriorityNormal            Priority = 50
)

// Cost is how much of a node's capacity a running task takes, in units where
// a normal task costs 2.
type Cost int

// Costs a definition or task may declare.
const (
	CostTiny       Cost = 1
	CostNormal     Cost = 2
	CostLarge      Cost = 4
	CostExtraLarge Cost = 10
)

var costNames = map[Cost]string{
	CostTiny: "tiny", CostNormal: "normal", CostLarge: "large", CostExtraLarge: "extralarge",
}

// String returns the cost's name: tiny, normal, large or extralarge.
func (c Cost) String() string {
	if n, ok := costNames[c]; ok {
		return n
	}
	return fmt.Sprintf("cost(%d)", int(c))
}

// ParseCost parses a cost name.
func ParseCost(s string) (Cost, error) {
	for c, n := range costNames {
		if n == strings.ToLower(s) {
			return c, nil
		}
	}
	return 0, Errorf(EINVALID, "unknown cost %q: want tiny, normal, large or extralarge", s)
}

// MarshalText implements encoding.TextMarshaler.
func (c Cost) MarshalText() ([]byte, error) {
	if _, ok := costNames[c]; !ok {
		return nil, fmt.Errorf("marshal cost: unknown cost %d", int(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Cost) UnmarshalText(b []byte) error {
	v, err := ParseCost(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// DefaultSpace is the space of tasks scheduled without one.
const DefaultSpace = "default"

// Task is one unit of scheduled work and its bookkeeping.
type Task struct {
	// ID is caller-given or generated at schedule time.
	ID string `json:"id"`
	// Type names the [Definition] that runs the task.
	Type string `json:"task_type"`
	// Params is the task's input, a JSON object.
	Params json.RawMessage `json:"params"`
	// State is the output of the last successful run and the input of the
	// next one, a JSON object.
	State json.RawMessage `json:"state"`
	// Schedule, when set, makes the task recurring.
	Schedule *Schedule `json:"schedule,omitempty"`
	// RunAt is the earliest time the task may run.
	RunAt time.Time `json:"run_at"`
	// ScheduledAt is when the task was last (re)scheduled; drift is measured
	// from it.
	ScheduledAt time.Time `json:"scheduled_at"`
	// StartedAt is when the current run started, while one is in progress.
	StartedAt *time.Time `json:"started_at"`
	// RetryAt is when the current owner's lease expires, while running.
	RetryAt *time.Time `json:"retry_at"`
	// Attempts counts consecutive unsuccessful attempts, including a run in
	// progress.
	Attempts int `json:"attempts"`
	// Status is the lifecycle state.
	Status Status `json:"status"`
	// OwnerID is the node running the task, while running.
	OwnerID string `json:"owner_id,omitempty"`
	// Traceparent is the W3C trace parent of the scheduling request.
	Traceparent string `json:"traceparent,omitempty"`
	// Scope groups tasks for queries, such as ["alerting"].
	Scope []string `json:"scope,omitempty"`
	// Enabled tasks are claimed; disabled ones are not.
	Enabled bool `json:"enabled"`
	// TimeoutOverride replaces the definition's timeout for one-off tasks.
	TimeoutOverride string `json:"timeout_override,omitempty"`
	// Priority, when set, overrides the definition's priority.
	Priority *Priority `json:"priority,omitempty"`
	// Cost, when set, overrides the definition's cost.
	Cost *Cost `json:"cost,omitempty"`
	// SpaceID is the space the task belongs to.
	SpaceID string `json:"space_id"`
	// UserScope describes the user the task runs as, when it was scheduled
	// with credentials.
	UserScope *UserScope `json:"user_scope,omitempty"`
	// Version is the optimistic concurrency token: every write is
	// conditional on it.
	Version int64 `json:"version"`
	// CreatedAt and UpdatedAt record the task's first and last write.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	// Keys are the API keys the task runs with. They hold encrypted secrets
	// and never leave deputy.
	Keys []TaskKey `json:"-"`
	// ClaimVersion is a random token a claim gives the task. The outcome of
	// a run is written only while the task still carries it, so a run that
	// outlived its lease cannot overwrite a newer claim, nor a run of a
	// removed task touch a new task with the same id.
	ClaimVersion int64 `json:"-"`
	// EffectivePriority and EffectiveCost are the overrides or else the
	// definition's values, stored for claiming.
	EffectivePriority Priority `json:"-"`
	EffectiveCost     Cost     `json:"-"`
}

// Recurring reports whether t has a schedule.
func (t *Task) Recurring() bool { return t.Schedule != nil }

// Clone returns a deep copy of t.
func (t *Task) Clone() *Task {
	c := *t
	c.Params = append(json.RawMessage(nil), t.Params...)
	c.State = append(json.RawMessage(nil), t.State...)
	if t.Schedule != nil {
		s := *t.Schedule
		if s.RRule != nil {
			r := *s.RRule
			s.RRule = &r
		}
		c.Schedule = &s
	}
	c.Scope = append([]string(nil), t.Scope...)
	c.Keys = append([]TaskKey(nil), t.Keys...)
	if t.UserScope != nil {
		u := *t.UserScope
		u.KeyIDs = make(map[string]string, len(t.UserScope.KeyIDs))
		for k, v := range t.UserScope.KeyIDs {
			u.KeyIDs[k] = v
		}
		c.UserScope = &u
	}
	return &c
}

// WithoutSecrets returns a copy of t without its keys, as task code sees it.
func (t *Task) WithoutSecrets() *Task {
	c := t.Clone()
	c.Keys = nil
	return c
}

// TaskKey is one API key a task runs with.
type TaskKey struct {
	// Kind names the key service, such as "es" or "uiam".
	Kind string
	// ID is the key's id at its service; it is not secret.
	ID string
	// Secret is the encrypted credential. It is nil for keys the store
	// returns without secrets.
	Secret []byte
	// CreatedByUser marks a key the caller brought; deputy never
	// invalidates it.
	CreatedByUser bool
}

// UserScope describes who a task runs as. It holds no secret.
type UserScope struct {
	// KeyIDs maps a key kind to the id of the task's key of that kind.
	KeyIDs map[string]string `json:"-"`
	// SpaceID is the space the task was scheduled in.
	SpaceID string `json:"space_id"`
	// APIKeyCreatedByUser is set when the caller's own key was reused.
	APIKeyCreatedByUser bool `json:"api_key_created_by_user"`
	// UserName is the user the task runs as.
	UserName string `json:"user_name,omitempty"`
}

// keyIDField returns the JSON field that carries the id of a key kind:
// api_key_id for Elasticsearch keys and <kind>_api_key_id for the others.
func keyIDField(kind string) string {
	if kind == "es" {
		return "api_key_id"
	}
	return kind + "_api_key_id"
}

// MarshalJSON writes the key ids as api_key_id and <kind>_api_key_id
// fields next to the others.
func (u UserScope) MarshalJSON() ([]byte, error) {
	type plain UserScope
	b, err := json.Marshal(plain(u))
	if err != nil || len(u.KeyIDs) == 0 {
		return b, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for kind, id := range u.KeyIDs {
		m[keyIDField(kind)] = id
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (u *UserScope) UnmarshalJSON(b []byte) error {
	type plain UserScope
	if err := json.Unmarshal(b, (*plain)(u)); err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, v := range m {
		id, ok := v.(string)
		if !ok || !strings.HasSuffix(k, "api_key_id") {
			continue
		}
		kind := strings.TrimSuffix(strings.TrimSuffix(k, "api_key_id"), "_")
		if kind == "" {
			kind = "es"
		}
		if u.KeyIDs == nil {
			u.KeyIDs = map[string]string{}
		}
		u.KeyIDs[kind] = id
	}
	return nil
}
