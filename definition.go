package deputy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
)

// DefaultTimeout is the run timeout of a definition that sets none.
const DefaultTimeout = 5 * time.Minute

// Definition describes a task type: how its tasks are validated and run.
type Definition struct {
	// Type is the task type the definition runs. Required and unique.
	Type string
	// Title and Description are shown to operators.
	Title       string
	Description string
	// Timeout bounds a run; its context is cancelled when it expires.
	// Defaults to 5m.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of a one-off task before it is
	// removed. Zero means the manager's MaxAttempts.
	MaxAttempts int
	// Priority orders claiming. Zero means [PriorityNormal].
	Priority Priority
	// Cost is the share of capacity a run takes. Zero means [CostNormal].
	Cost Cost
	// MaxConcurrency limits how many tasks of this type run at once on one
	// node. Zero means no limit beyond capacity.
	MaxConcurrency int
	// ValidateParams, when set, checks the params of every task of this type
	// before it is stored. Its error is reported as invalid input.
	ValidateParams func(params json.RawMessage) error
	// Run runs one task. It returns the outcome or an error; see [Result],
	// [RetryAt] and [Unrecoverable].
	Run func(ctx context.Context, r *Run) (Result, error)
}

// Run is what a definition's Run function is given.
type Run struct {
	// Task is the task being run, without its secrets.
	Task *Task
	// Request presents the task user's API key. It is nil when the task was
	// scheduled without credentials.
	Request *Request
	// Logger carries the task's id and type.
	Logger *slog.Logger
}

// Result is the outcome of a successful run.
type Result struct {
	// State replaces the task's state. Nil keeps the current state.
	State json.RawMessage
	// RunAt, when set, is when the task runs next, overriding its schedule
	// for this once. A one-off task with a RunAt runs again instead of being
	// removed.
	RunAt time.Time
	// Schedule, when set, replaces the task's schedule.
	Schedule *Schedule
	// Delete removes the task.
	Delete bool
	// Disable disables the task.
	Disable bool
}

// Request carries the credentials a run presents on behalf of the user who
// scheduled the task. It never exposes the stored secret directly.
type Request struct {
	// SpaceID is the space the task was scheduled in.
	SpaceID string
	// KeyKind is the kind of key presented, such as "es" or "uiam".
	KeyKind string
	// KeyID is the id of the key presented.
	KeyID string
	// UserName is the user the task runs as.
	UserName string

	header http.Header
	hosts  func(host string) bool
}

// NewRequest returns a request that presents the given headers. It is for
// key services and tests; task code receives requests from the manager.
// allowHost, when not nil, limits the hosts [Request.Client] presents the
// headers to.
func NewRequest(spaceID, kind, keyID, user string, h http.Header, allowHost func(string) bool) *Request {
	return &Request{SpaceID: spaceID, KeyKind: kind, KeyID: keyID, UserName: user, header: h.Clone(), hosts: allowHost}
}

// Apply sets the request's credential headers on an outgoing request.
func (r *Request) Apply(req *http.Request) {
	for k, v := range r.header {
		req.Header[k] = append([]string(nil), v...)
	}
}

// Header returns a copy of the headers the request presents.
func (r *Request) Header() http.Header { return r.header.Clone() }

// Client returns an HTTP client that presents the request's credentials to
// the allowed hosts, and nothing to other hosts.
func (r *Request) Client(base *http.Client) *http.Client {
	if base == nil {
		base = http.DefaultClient
	}
	c := *base
	next := base.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &presentingTransport{req: r, next: next}
	return &c
}

// String hides the credentials.
func (r *Request) String() string {
	return "deputy.Request{space=" + r.SpaceID + " kind=" + r.KeyKind + " key_id=" + r.KeyID + "}"
}

// LogValue hides the credentials from slog.
func (r *Request) LogValue() slog.Value {
	return slog.GroupValue(slog.String("space_id", r.SpaceID), slog.String("key_kind", r.KeyKind),
		slog.String("key_id", r.KeyID))
}

type presentingTransport struct {
	req  *Request
	next http.RoundTripper
}

func (t *presentingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.req.hosts != nil && !t.req.hosts(req.URL.Host) {
		return t.next.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	t.req.Apply(req)
	return t.next.RoundTrip(req)
}
