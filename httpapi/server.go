// Package httpapi serves deputy's HTTP API over a [deputy.Manager].
//
// Every route lives under /api and also under /s/{space}/api, which names
// the space the call works in; without the prefix the space is
// [deputy.DefaultSpace]. Tasks are scheduled in the route's space, and a
// call only sees and changes the tasks of its space: a task of another space
// is reported as not found.
//
// With an [deputy.Authenticator] configured, every route except health and
// metrics authenticates the Authorization header. Tasks are then scheduled
// on behalf of the caller, so that they run with API keys granted for the
// caller, and a caller sees and changes only the tasks it scheduled unless
// it holds [Config.AdminRole].
//
// Requests and responses are JSON with snake_case fields. Errors are
// {"error":{"code":...,"message":...}} with the HTTP status of the
// [deputy.Error] code. Bulk calls answer 200 and report the ids that failed
// in "errors", each with the status its error would have on its own.
package httpapi

import (
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/deputyhq/deputy"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxBodyBytes is the default bound of request bodies: 10 MiB.
const DefaultMaxBodyBytes = 10 << 20

// Config configures a [Server].
type Config struct {
	// Manager schedules, reads and changes the tasks. Required.
	Manager *deputy.Manager

	// Authenticator authenticates the Authorization header of every call
	// except health and metrics. Nil means no authentication: any caller
	// may see and change every task of the space it names.
	Authenticator deputy.Authenticator

	// AdminRole names the role whose holders see and change every task of
	// their space and may list the keys pending invalidation. Empty means
	// no caller is an admin. It has no effect without an Authenticator.
	AdminRole string

	// Logger receives internal errors, with the request's method and path.
	// Defaults to discarding them.
	Logger *slog.Logger

	// Registry receives deputy's collector and the Go and process
	// collectors, and is what /metrics serves. Collectors it already holds
	// are kept. Nil means a new registry.
	Registry *prometheus.Registry

	// MaxBodyBytes bounds request bodies; a larger body gets 413. Defaults
	// to [DefaultMaxBodyBytes].
	MaxBodyBytes int64
}

// Server serves the HTTP API. It is an [http.Handler].
type Server struct {
	m       *deputy.Manager
	auth    deputy.Authenticator
	admin   string
	log     *slog.Logger
	maxBody int64
	mux     *http.ServeMux
}

// New returns a server for cfg. It panics when cfg.Manager is nil.
func New(cfg Config) *Server {
	if cfg.Manager == nil {
		panic("httpapi: new: nil Manager")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		m:       cfg.Manager,
		auth:    cfg.Authenticator,
		admin:   cfg.AdminRole,
		log:     cfg.Logger.With(slog.String("component", "httpapi")),
		maxBody: cfg.MaxBodyBytes,
		mux:     http.NewServeMux(),
	}
	s.routes()
	s.mux.Handle("GET /metrics", s.metricsHandler(cfg.Registry))
	return s
}

// Route options: whether a route authenticates its caller.
const (
	public = false
	authed = true
)

func (s *Server) routes() {
	s.route("POST /api/tasks", authed, s.handleSchedule)
	s.route("POST /api/tasks/_bulk_schedule", authed, s.handleBulkSchedule)
	s.route("POST /api/tasks/_ensure_scheduled", authed, s.handleEnsureScheduled)
	s.route("GET /api/tasks", authed, s.handleList)
	s.route("GET /api/tasks/_aggregate", authed, s.handleAggregate)
	s.route("GET /api/tasks/{id}", authed, s.handleGet)
	s.route("DELETE /api/tasks/{id}", authed, s.handleRemove)
	s.route("POST /api/tasks/{id}/_run_soon", authed, s.handleRunSoon)
	s.route("POST /api/tasks/_bulk_update", authed, s.handleBulkUpdate)
	s.route("POST /api/tasks/_bulk_delete", authed, s.handleBulkRemove)
	s.route("POST /api/tasks/_bulk_enable", authed, s.handleBulkEnable)
	s.route("POST /api/tasks/_bulk_disable", authed, s.handleBulkDisable)
	s.route("GET /api/task_manager/_health", public, s.handleHealth)
	s.route("GET /api/api_keys/_pending", authed, s.handlePendingKeys)
}

// handler serves one route for a call that has been given its space and,
// when authentication is on, its caller. A returned error is written as the
// response.
type handler func(w http.ResponseWriter, r *http.Request, c *call) error

// route registers h under pattern and under the same path prefixed with
// /s/{space}.
func (s *Server) route(pattern string, auth bool, h handler) {
	method, path, _ := strings.Cut(pattern, " ")
	hf := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.newCall(r, auth)
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
	s.mux.Handle(pattern, hf)
	s.mux.Handle(method+" /s/{space}"+path, hf)
}

// ServeHTTP implements [http.Handler]. Unknown routes and methods get JSON
// errors: 404, and 405 with an Allow header.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}

	// The mux answers unmatched requests itself, in plain text. Let it
	// decide between 404 and 405, and say the same in JSON.
	rec := allowRecorder{h: http.Header{}}
	h.ServeHTTP(&rec, r)
	if allow := rec.h.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
		s.writeError(w, r, withStatus(http.StatusMethodNotAllowed, deputy.Errorf(deputy.EINVALID,
			"method %s is not allowed here; allowed: %s", r.Method, allow)))
		return
	}
	s.writeError(w, r, deputy.Errorf(deputy.ENOTFOUND, "no route for %s %s", r.Method, r.URL.Path))
}

// allowRecorder keeps the headers a handler sets and drops the rest.
type allowRecorder struct{ h http.Header }

func (a *allowRecorder) Header() http.Header         { return a.h }
func (a *allowRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (a *allowRecorder) WriteHeader(int)             {}

// spaceRE matches the space ids of the /s/{space} prefix.
var spaceRE = regexp.MustCompile(`^[a-z0-9_\-]{1,128}$`)

// call is who a request acts as: the space of its route and, when
// authentication is on, the authenticated caller.
type call struct {
	space  string
	caller *deputy.Caller // nil without authentication
	admin  bool           // caller holds the admin role
}

// newCall reads the route's space and authenticates the caller of an
// authenticated route.
func (s *Server) newCall(r *http.Request, auth bool) (*call, error) {
	c := &call{space: r.PathValue("space")}
	if c.space == "" {
		c.space = deputy.DefaultSpace
	} else if !spaceRE.MatchString(c.space) {
		return nil, deputy.Errorf(deputy.EINVALID,
			"space id %q must be 1 to 128 lowercase letters, digits, '_' or '-'", truncate(c.space))
	}
	if !auth || s.auth == nil {
		return c, nil
	}

	header := deputy.Secret(r.Header.Get("Authorization"))
	if header == "" {
		return nil, deputy.Errorf(deputy.EUNAUTHORIZED, "missing Authorization header")
	}
	caller, err := s.auth.Authenticate(r.Context(), header)
	if err != nil {
		return nil, err
	}
	if caller == nil || caller.UserName == "" {
		// NB: tasks are owned by user name; a caller without one could
		// never be told apart from another.
		return nil, deputy.Errorf(deputy.EUNAUTHORIZED, "authentication failed")
	}

	// The authenticator may cache callers: work on a copy.
	cc := *caller
	cc.SpaceID = c.space
	if cc.Authorization == "" {
		cc.Authorization = header
	}
	c.caller = &cc
	c.admin = s.admin != "" && slices.Contains(cc.Roles, s.admin)
	return c, nil
}

// opts returns the options of Manager calls made for c.
func (c *call) opts() *deputy.Options {
	if c.caller == nil {
		return nil
	}
	return &deputy.Options{Caller: c.caller}
}

// sees reports whether c may see and change t: t is in c's space and, for a
// caller that is not an admin, scheduled by that caller.
func (c *call) sees(t *deputy.Task) bool {
	space := t.SpaceID
	if space == "" {
		space = deputy.DefaultSpace
	}
	switch {
	case space != c.space:
		return false
	case c.caller == nil || c.admin:
		return true
	default:
		return t.UserScope != nil && t.UserScope.UserName == c.caller.UserName
	}
}

// scope narrows q to the tasks c sees.
func (c *call) scope(q deputy.Query) deputy.Query {
	q.SpaceID = c.space
	if c.caller != nil && !c.admin {
		q.UserName = c.caller.UserName
	}
	return q
}

// mustSee returns an error unless c sees t.
func (c *call) mustSee(t *deputy.Task) error {
	if !c.sees(t) {
		return notFound(t.ID)
	}
	return nil
}

func notFound(id string) error {
	return deputy.Errorf(deputy.ENOTFOUND, "task %q not found", id)
}
