package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/deputyhq/deputy"
)

// headerAuth authenticates fixed Authorization headers. Two headers stand
// for failures: "Down" for an unavailable service and "Crash" for an
// internal error.
type headerAuth map[string]deputy.Caller

func (a headerAuth) Authenticate(_ context.Context, h deputy.Secret) (*deputy.Caller, error) {
	switch h.Reveal() {
	case "Down":
		return nil, deputy.Errorf(deputy.EUNAVAILABLE, "authentication service is unavailable")
	case "Crash":
		return nil, errors.New("authenticate: connection reset while reading " + h.Reveal())
	}
	c, ok := a[h.Reveal()]
	if !ok {
		return nil, deputy.Errorf(deputy.EUNAUTHORIZED, "invalid credentials")
	}
	return &c, nil
}

// Credentials of the callers headerAuth knows.
const (
	alice = "Bearer alice-secret-token"
	bob   = "Bearer bob-secret-token"
	admin = "Bearer admin-secret-token"
)

func authFixture(t *testing.T) *fixture {
	t.Helper()
	return setup(t, options{
		auth: headerAuth{
			alice: {UserName: "alice", Roles: []string{"viewer"}},
			bob:   {UserName: "bob"},
			admin: {UserName: "root", Roles: []string{"viewer", "deputy_admin"}},
		},
		adminRole: "deputy_admin",
	})
}

// as returns the headers of a request made by caller.
func as(caller string) []string { return []string{"Authorization", caller} }

func TestAuth_Unauthenticated(t *testing.T) {
	t.Parallel()
	f := authFixture(t)
	for _, tt := range []struct{ method, path, body string }{
		{"POST", "/api/tasks", `{"task_type":"noop"}`},
		{"POST", "/api/tasks/_bulk_schedule", `{"tasks":[]}`},
		{"POST", "/api/tasks/_ensure_scheduled", `{"id":"a","task_type":"noop"}`},
		{"GET", "/api/tasks", ""},
		{"GET", "/api/tasks/_aggregate", ""},
		{"GET", "/s/other/api/tasks/a", ""},
		{"DELETE", "/api/tasks/a", ""},
		{"POST", "/api/tasks/a/_run_soon", ""},
		{"POST", "/api/tasks/_bulk_update", `{"ids":[],"state":{}}`},
		{"POST", "/api/tasks/_bulk_delete", `{"ids":[]}`},
		{"POST", "/api/tasks/_bulk_enable", `{"ids":[]}`},
		{"POST", "/api/tasks/_bulk_disable", `{"ids":[]}`},
		{"GET", "/api/api_keys/_pending", ""},
	} {
		for _, h := range [][]string{nil, as("Bearer nobody"), as("")} {
			w := f.do(tt.method, tt.path, tt.body, h...)
			wantError(t, w, http.StatusUnauthorized, deputy.EUNAUTHORIZED, "")
			if got := w.Header().Values("WWW-Authenticate"); len(got) == 0 ||
				!strings.HasPrefix(got[0], "Basic ") {
				t.Fatalf("%s %s: WWW-Authenticate = %q, want Basic, Bearer and ApiKey",
					tt.method, tt.path, got)
			}
		}
	}
	if got := f.tasks(); got != "" {
		t.Fatalf("stored %q, want nothing", got)
	}

	// Health and metrics are public.
	want(t, f.do("GET", "/api/task_manager/_health", ""), http.StatusOK)
	want(t, f.do("GET", "/s/other/api/task_manager/_health", ""), http.StatusOK)
	want(t, f.do("GET", "/metrics", ""), http.StatusOK)
}

// ownerFixture holds alice's a1 and a2 and bob's b1 in the default space,
// and alice's a3 in space s2.
func ownerFixture(t *testing.T) *fixture {
	t.Helper()
	f := authFixture(t)
	task := f.schedule("/api/tasks", `{"id":"a1","task_type":"noop"}`, as(alice)...)
	if task.UserScope == nil || task.UserScope.UserName != "alice" || task.SpaceID != "default" {
		t.Fatalf("task = %+v / %+v, want alice's in default", task, task.UserScope)
	}
	f.schedule("/api/tasks", `{"id":"a2","task_type":"noop"}`, as(alice)...)
	f.schedule("/api/tasks", `{"id":"b1","task_type":"noop"}`, as(bob)...)
	f.schedule("/s/s2/api/tasks", `{"id":"a3","task_type":"noop"}`, as(alice)...)
	return f
}

func TestAuth_Owner(t *testing.T) {
	t.Parallel()
	f := ownerFixture(t)

	t.Run("Get", func(t *testing.T) {
		t.Parallel()
		want(t, f.do("GET", "/api/tasks/a1", "", as(alice)...), http.StatusOK)
		want(t, f.do("GET", "/api/tasks/a1", "", as(admin)...), http.StatusOK)
		wantError(t, f.do("GET", "/api/tasks/a1", "", as(bob)...), http.StatusNotFound,
			deputy.ENOTFOUND, `task "a1" not found`)
		wantError(t, f.do("GET", "/s/s2/api/tasks/a1", "", as(alice)...), http.StatusNotFound,
			deputy.ENOTFOUND, "a1")
		wantError(t, f.do("GET", "/api/tasks/a3", "", as(admin)...), http.StatusNotFound,
			deputy.ENOTFOUND, "a3")
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct{ caller, path, want string }{
			{alice, "/api/tasks", "a1,a2"},
			{bob, "/api/tasks", "b1"},
			{admin, "/api/tasks", "a1,a2,b1"},
			{alice, "/s/s2/api/tasks", "a3"},
			{bob, "/s/s2/api/tasks", ""},
		} {
			w := f.do("GET", tt.path, "", as(tt.caller)...)
			want(t, w, http.StatusOK)
			if got := ids(decode[bulkResult](t, w).Tasks); got != tt.want {
				t.Fatalf("%s as %s: tasks = %q, want %q", tt.path, tt.caller, got, tt.want)
			}
		}
		w := f.do("GET", "/api/tasks/_aggregate", "", as(bob)...)
		want(t, w, http.StatusOK)
		if counts := decode[struct{ Counts []deputy.Count }](t, w).Counts; len(counts) != 1 ||
			counts[0].Count != 1 {
			t.Fatalf("bob's counts = %+v, want his one task", counts)
		}
	})

	t.Run("Change", func(t *testing.T) {
		t.Parallel()
		f := ownerFixture(t)
		wantError(t, f.do("DELETE", "/api/tasks/a1", "", as(bob)...), http.StatusNotFound,
			deputy.ENOTFOUND, "a1")
		want(t, f.do("DELETE", "/api/tasks/a1?ignore_missing=true", "", as(bob)...),
			http.StatusNoContent)
		wantError(t, f.do("POST", "/api/tasks/a1/_run_soon", "", as(bob)...), http.StatusNotFound,
			deputy.ENOTFOUND, "a1")
		wantError(t, f.do("POST", "/api/tasks/_ensure_scheduled",
			`{"id":"a1","task_type":"noop","schedule":{"interval":"1m"}}`, as(bob)...),
			http.StatusConflict, deputy.ECONFLICT, "already exists")
		for _, path := range []string{"_bulk_disable", "_bulk_enable", "_bulk_update", "_bulk_delete"} {
			w := f.do("POST", "/api/tasks/"+path, bulkBody(path), as(bob)...)
			want(t, w, http.StatusOK)
			res := decode[bulkResult](t, w)
			if res.errorIDs() != "a1:Not Found" {
				t.Fatalf("%s as bob: errors = %q, want a1 not found", path, res.errorIDs())
			}
		}
		if got := f.get("a1"); got.Version != 1 {
			t.Fatalf("a1 version = %d, want 1: bob changed nothing", got.Version)
		}
		if got := f.tasks(); got != "a1,a2,a3" {
			t.Fatalf("stored %q, want bob's b1 gone and alice's kept", got)
		}
	})
}

// bulkBody returns a body for a bulk route acting on a1 and b1.
func bulkBody(route string) string {
	if route == "_bulk_update" {
		return `{"ids":["a1","b1"],"state":{"by":"bob"}}`
	}
	return `{"ids":["a1","b1"]}`
}

func TestAuth_Admin(t *testing.T) {
	t.Parallel()
	f := authFixture(t)
	f.schedule("/api/tasks", `{"id":"a1","task_type":"noop"}`, as(alice)...)

	w := f.do("POST", "/api/tasks/_bulk_disable", `{"ids":["a1"]}`, as(admin)...)
	want(t, w, http.StatusOK)
	if got := decode[bulkResult](t, w); ids(got.Tasks) != "a1" || len(got.Errors) != 0 {
		t.Fatalf("admin disable = %+v, want a1", got)
	}
	want(t, f.do("GET", "/api/api_keys/_pending", "", as(admin)...), http.StatusOK)
	wantError(t, f.do("GET", "/api/api_keys/_pending", "", as(alice)...), http.StatusForbidden,
		deputy.EFORBIDDEN, "admins only")

	// The admin's own tasks are theirs, like anyone's.
	task := f.schedule("/s/ops/api/tasks", `{"id":"r1","task_type":"noop"}`, as(admin)...)
	if task.UserScope.UserName != "root" || task.SpaceID != "ops" || task.UserScope.SpaceID != "ops" {
		t.Fatalf("task = %+v / %+v, want root's in ops", task, task.UserScope)
	}
}

func TestAuth_Failures(t *testing.T) {
	t.Parallel()
	f := authFixture(t)
	wantError(t, f.do("GET", "/api/tasks", "", as("Down")...), http.StatusServiceUnavailable,
		deputy.EUNAVAILABLE, "unavailable")
	w := f.do("GET", "/api/tasks", "", as("Crash")...)
	wantError(t, w, http.StatusInternalServerError, deputy.EINTERNAL, "internal error")
	if strings.Contains(w.Body.String(), "connection reset") {
		t.Fatalf("body %s shows the internal error", w.Body)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"path":"/api/tasks"`) || !strings.Contains(logs, "connection reset") {
		t.Fatalf("logs = %s, want the internal error with its path", logs)
	}
}

func TestAuth_NoSecretInLogsOrResponses(t *testing.T) {
	t.Parallel()
	f := authFixture(t)
	var bodies strings.Builder
	record := func(w interface{ Header() http.Header }, body string) {
		bodies.WriteString(body)
		for k, v := range w.Header() {
			bodies.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	for _, tt := range []struct{ method, path, body string }{
		{"POST", "/api/tasks", `{"id":"a1","task_type":"noop"}`},
		{"POST", "/api/tasks", `{"id":"a1","task_type":"noop"}`},
		{"POST", "/api/tasks", `{"task_type":"nope"}`},
		{"GET", "/api/tasks/a1", ""},
		{"GET", "/api/tasks", ""},
		{"POST", "/api/tasks/_bulk_update", `{"ids":["a1"],"regenerate_api_key":true}`},
		{"GET", "/api/api_keys/_pending", ""},
	} {
		w := f.do(tt.method, tt.path, tt.body, as(alice)...)
		record(w, w.Body.String())
	}

	// Break the store so that the next calls fail inside.
	if err := f.db.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}
	w := f.do("GET", "/api/tasks/a1", "", as(alice)...)
	wantError(t, w, http.StatusInternalServerError, deputy.EINTERNAL, "internal error")
	record(w, w.Body.String())

	out := bodies.String() + f.logs.String()
	if !strings.Contains(f.logs.String(), `"path":"/api/tasks/a1"`) {
		t.Fatalf("logs = %s, want the internal error logged", f.logs)
	}
	if strings.Contains(out, "alice-secret-token") {
		t.Fatalf("alice's credential appears in a response or a log line:\n%s", out)
	}
}
