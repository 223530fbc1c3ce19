package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/client"
	"github.com/deputyhq/deputy/httpapi"
	"github.com/deputyhq/deputy/sqlite"
)

// fixture is a deputy server over a fresh SQLite store.
type fixture struct {
	db  *sqlite.DB
	m   *deputy.Manager
	url string
}

// tokenAuth authenticates "Bearer <user>" as user; "root" is an admin.
type tokenAuth struct{}

func (tokenAuth) Authenticate(_ context.Context, h deputy.Secret) (*deputy.Caller, error) {
	user, ok := strings.CutPrefix(h.Reveal(), "Bearer ")
	if !ok || user == "" || user == "nobody" {
		return nil, deputy.Errorf(deputy.EUNAUTHORIZED, "invalid credentials")
	}
	c := &deputy.Caller{UserName: user}
	if user == "root" {
		c.Roles = []string{"admin"}
	}
	return c, nil
}

func setup(t *testing.T, auth deputy.Authenticator) *fixture {
	t.Helper()
	db, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "deputy.db")})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	m, err := deputy.New(db, deputy.Config{})
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	noop := func(context.Context, *deputy.Run) (deputy.Result, error) { return deputy.Result{}, nil }
	if err := m.Register(deputy.Definition{Type: "noop", Run: noop}); err != nil {
		t.Fatalf("register: %v", err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{
		Manager: m, Authenticator: auth, AdminRole: "admin",
	}))
	t.Cleanup(srv.Close)
	return &fixture{db: db, m: m, url: srv.URL}
}

func (f *fixture) client(t *testing.T, space string, auth deputy.Secret) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: f.url, Space: space, Authorization: auth})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

// wantError fails the test unless err is a *client.Error with status and
// code.
func wantError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != status || deputy.ErrorCode(err) != code {
		t.Fatalf("error = %v, want status %d and code %s", err, status, code)
	}
	if deputy.ErrorMessage(err) == "" {
		t.Fatalf("error %v has no message", err)
	}
}

func ids(tasks []*deputy.Task) string {
	var s []string
	for _, t := range tasks {
		s = append(s, t.ID)
	}
	return strings.Join(s, ",")
}

func errIDs(errs []deputy.BulkError) string {
	var s []string
	for _, e := range errs {
		s = append(s, e.ID+":"+deputy.ErrorCode(e.Err))
	}
	return strings.Join(s, ",")
}

func ptr[T any](v T) *T { return &v }

func TestNew(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "localhost:7420", "ftp://x", "http://", "http://u:p@x",
		"http://x/?a=1"} {
		if _, err := client.New(client.Config{BaseURL: u}); err == nil {
			t.Fatalf("New(%q) succeeded, want an error", u)
		}
	}
}

func TestClient_Tasks(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	c := f.client(t, "", "")
	ctx := t.Context()

	task, err := c.Schedule(ctx, deputy.NewTask{
		ID: "a", Type: "noop", Params: json.RawMessage(`{"x":1}`),
		Schedule: &deputy.Schedule{Interval: "1m"}, Scope: []string{"ops"},
	})
	if err != nil || task.ID != "a" || task.Schedule.Interval != "1m" || task.Version != 1 {
		t.Fatalf("Schedule = %+v, %v", task, err)
	}
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	res, err := c.BulkSchedule(ctx, []deputy.NewTask{
		{ID: "b", Type: "noop", RunAt: &later},
		{ID: "a", Type: "noop"},
		{ID: "c", Type: "noop", Enabled: ptr(false), RunAt: ptr(later.Add(time.Hour))},
	})
	if err != nil || ids(res.Tasks) != "b,c" || errIDs(res.Errors) != "a:conflict" {
		t.Fatalf("BulkSchedule = %+v, %v", res, err)
	}
	wantError(t, res.Errors[0].Err, http.StatusConflict, deputy.ECONFLICT)

	task, err = c.EnsureScheduled(ctx, deputy.NewTask{
		ID: "a", Type: "noop", Schedule: &deputy.Schedule{Interval: "5m"},
	})
	if err != nil || task.Schedule.Interval != "5m" {
		t.Fatalf("EnsureScheduled = %+v, %v", task, err)
	}
	if task, err = c.Get(ctx, "a"); err != nil || task.Version != 2 {
		t.Fatalf("Get = %+v, %v", task, err)
	}

	// List, page by page and all at once.
	page, err := c.List(ctx, client.ListQuery{Size: 2})
	if err != nil || ids(page.Tasks) != "a,b" || page.Next == "" {
		t.Fatalf("List = %+v, %v", page, err)
	}
	var all []*deputy.Task
	for task, err := range c.All(ctx, client.ListQuery{Size: 1, Types: []string{"noop"}}) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		all = append(all, task)
	}
	if ids(all) != "a,b,c" {
		t.Fatalf("All = %s, want a,b,c", ids(all))
	}
	page, err = c.List(ctx, client.ListQuery{
		Statuses: []deputy.Status{deputy.StatusIdle}, Scope: "ops", Enabled: ptr(true),
	})
	if err != nil || ids(page.Tasks) != "a" {
		t.Fatalf("List filtered = %+v, %v", page, err)
	}
	counts, err := c.Aggregate(ctx, client.ListQuery{})
	if err != nil || len(counts) != 1 || counts[0].Count != 2 {
		t.Fatalf("Aggregate = %+v, %v; want the 2 enabled tasks", counts, err)
	}

	// Change them in bulk.
	res, err = c.BulkUpdate(ctx, []string{"a", "b", "x"}, client.Update{
		State: json.RawMessage(`{"n":1}`), Schedule: &deputy.Schedule{Interval: "1h"},
	})
	if err != nil || ids(res.Tasks) != "a,b" || errIDs(res.Errors) != "x:not_found" {
		t.Fatalf("BulkUpdate = %+v, %v", res, err)
	}
	res, err = c.BulkEnable(ctx, []string{"c"}, true)
	if err != nil || ids(res.Tasks) != "c" || !res.Tasks[0].Enabled {
		t.Fatalf("BulkEnable = %+v, %v", res, err)
	}
	res, err = c.BulkDisable(ctx, []string{"a"}, true)
	if err != nil || ids(res.Tasks) != "a" || res.Tasks[0].Enabled || string(res.Tasks[0].State) != "{}" {
		t.Fatalf("BulkDisable = %+v, %v", res, err)
	}
	if task, err = c.RunSoon(ctx, "b"); err != nil || task.RunAt.After(time.Now()) {
		t.Fatalf("RunSoon = %+v, %v", task, err)
	}

	// Remove them.
	if err := c.Remove(ctx, "a"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	wantError(t, c.Remove(ctx, "a"), http.StatusNotFound, deputy.ENOTFOUND)
	if err := c.RemoveIfExists(ctx, "a"); err != nil {
		t.Fatalf("RemoveIfExists: %v", err)
	}
	res, err = c.BulkRemove(ctx, []string{"b", "a"})
	if err != nil || !slices.Equal(res.Deleted, []string{"b"}) || errIDs(res.Errors) != "a:not_found" {
		t.Fatalf("BulkRemove = %+v, %v", res, err)
	}
	if page, err := c.List(ctx, client.ListQuery{}); err != nil || ids(page.Tasks) != "c" {
		t.Fatalf("List = %+v, %v; want c left", page, err)
	}
}

func TestClient_EscapedID(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	c := f.client(t, "", "")
	ctx := t.Context()
	const id = "a b?c#d%2Fé"
	if _, err := c.Schedule(ctx, deputy.NewTask{ID: id, Type: "noop"}); err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	if task, err := c.Get(ctx, id); err != nil || task.ID != id {
		t.Fatalf("Get = %+v, %v", task, err)
	}
	if task, err := c.RunSoon(ctx, id); err != nil || task.ID != id {
		t.Fatalf("RunSoon = %+v, %v", task, err)
	}
	if err := c.Remove(ctx, id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

func TestClient_Errors(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	c := f.client(t, "", "")
	ctx := t.Context()

	_, err := c.Get(ctx, "nope")
	wantError(t, err, http.StatusNotFound, deputy.ENOTFOUND)
	_, err = c.Schedule(ctx, deputy.NewTask{Type: "noop", Schedule: &deputy.Schedule{Interval: "1y"}})
	wantError(t, err, http.StatusBadRequest, deputy.EINVALID)
	if !strings.Contains(deputy.ErrorMessage(err), "invalid interval") {
		t.Fatalf("message = %q, want the server's", deputy.ErrorMessage(err))
	}
	_, err = c.BulkSchedule(ctx, []deputy.NewTask{{Type: "nope"}})
	wantError(t, err, http.StatusBadRequest, deputy.EINVALID)
	_, err = c.BulkUpdate(ctx, []string{"a"}, client.Update{})
	wantError(t, err, http.StatusBadRequest, deputy.EINVALID)
	if _, err := c.Schedule(ctx, deputy.NewTask{ID: "a", Type: "noop"}); err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	_, err = c.Schedule(ctx, deputy.NewTask{ID: "a", Type: "noop"})
	wantError(t, err, http.StatusConflict, deputy.ECONFLICT)
	wantError(t, c.Do(ctx, "PUT", "/api/tasks", nil, nil, nil), http.StatusMethodNotAllowed,
		deputy.EINVALID)

	// A call cancelled by its context is unavailable, and says why.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Get(cctx, "a")
	if deputy.ErrorCode(err) != deputy.EUNAVAILABLE || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get = %v, want unavailable and context.Canceled", err)
	}
}

func TestClient_Unavailable(t *testing.T) {
	t.Parallel()

	t.Run("Down", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		c, err := client.New(client.Config{BaseURL: srv.URL})
		if err != nil {
			t.Fatalf("new client: %v", err)
		}
		_, err = c.Get(t.Context(), "a")
		if deputy.ErrorCode(err) != deputy.EUNAVAILABLE {
			t.Fatalf("Get = %v, want unavailable", err)
		}
	})

	t.Run("Proxy", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "upstream is down", http.StatusBadGateway)
		}))
		t.Cleanup(srv.Close)
		c, err := client.New(client.Config{BaseURL: srv.URL + "/deputy/"})
		if err != nil {
			t.Fatalf("new client: %v", err)
		}
		_, err = c.Get(t.Context(), "a")
		wantError(t, err, http.StatusBadGateway, deputy.EUNAVAILABLE)
		_, err = c.Health(t.Context())
		wantError(t, err, http.StatusBadGateway, deputy.EUNAVAILABLE)
	})
}

func TestClient_Space(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	ops, def := f.client(t, "ops", ""), f.client(t, "", "")
	ctx := t.Context()
	task, err := ops.Schedule(ctx, deputy.NewTask{ID: "a", Type: "noop"})
	if err != nil || task.SpaceID != "ops" {
		t.Fatalf("Schedule = %+v, %v; want a task in ops", task, err)
	}
	_, err = def.Get(ctx, "a")
	wantError(t, err, http.StatusNotFound, deputy.ENOTFOUND)
	if _, err := ops.Get(ctx, "a"); err != nil {
		t.Fatalf("Get in ops: %v", err)
	}
	_, err = f.client(t, "Not A Space", "").Get(ctx, "a")
	wantError(t, err, http.StatusBadRequest, deputy.EINVALID)
}

func TestClient_Auth(t *testing.T) {
	t.Parallel()
	f := setup(t, tokenAuth{})
	ctx := t.Context()
	alice, root := f.client(t, "", "Bearer alice"), f.client(t, "", "Bearer root")

	task, err := alice.Schedule(ctx, deputy.NewTask{ID: "a", Type: "noop"})
	if err != nil || task.UserScope == nil || task.UserScope.UserName != "alice" {
		t.Fatalf("Schedule = %+v, %v; want alice's task", task, err)
	}
	_, err = f.client(t, "", "Bearer bob").Get(ctx, "a")
	wantError(t, err, http.StatusNotFound, deputy.ENOTFOUND)
	_, err = f.client(t, "", "Bearer nobody").Get(ctx, "a")
	wantError(t, err, http.StatusUnauthorized, deputy.EUNAUTHORIZED)
	_, err = f.client(t, "", "").List(ctx, client.ListQuery{})
	wantError(t, err, http.StatusUnauthorized, deputy.EUNAUTHORIZED)

	_, err = alice.PendingKeys(ctx, 10)
	wantError(t, err, http.StatusForbidden, deputy.EFORBIDDEN)
	keys, err := root.PendingKeys(ctx, 10)
	if err != nil || len(keys) != 0 {
		t.Fatalf("PendingKeys = %+v, %v; want none", keys, err)
	}
	if _, err := root.Get(ctx, "a"); err != nil {
		t.Fatalf("Get as admin: %v", err)
	}
}

func TestClient_PendingKeys(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	ctx := t.Context()
	queued := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := f.db.RecordKeys(ctx, []deputy.Key{
		{Kind: "es", ID: "k1", Secret: []byte("sealed"), UserName: "alice", GrantedAt: queued},
	}); err != nil {
		t.Fatalf("record keys: %v", err)
	}
	if err := f.db.ReleaseKeys(ctx, []deputy.KeyRef{{Kind: "es", ID: "k1"}}, queued); err != nil {
		t.Fatalf("release keys: %v", err)
	}
	keys, err := f.client(t, "", "").PendingKeys(ctx, 0)
	if err != nil || len(keys) != 1 {
		t.Fatalf("PendingKeys = %+v, %v; want one", keys, err)
	}
	if k := keys[0]; k.ID != "k1" || k.Kind != "es" || !k.QueuedAt.Equal(queued) || k.Secret != nil {
		t.Fatalf("key = %+v, want k1 queued at %v without a secret", k, queued)
	}
}

func TestClient_Health(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	c := f.client(t, "", "")
	h, err := c.Health(t.Context())
	if err != nil || h.Status != "OK" || h.ID != f.m.NodeID() {
		t.Fatalf("Health = %+v, %v", h, err)
	}

	// An unhealthy server answers 503 with its report.
	if err := f.db.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}
	h, err = c.Health(t.Context())
	if err != nil || h.Status != "error" || h.Reason == "" {
		t.Fatalf("Health = %+v, %v; want an error report", h, err)
	}
}

func TestClient_Do(t *testing.T) {
	t.Parallel()
	f := setup(t, nil)
	c := f.client(t, "", "")
	var raw json.RawMessage
	err := c.Do(t.Context(), "POST", "/api/tasks", nil,
		json.RawMessage(`{"id":"a","task_type":"noop"}`), &raw)
	if err != nil || !strings.Contains(string(raw), `"id":"a"`) {
		t.Fatalf("Do = %s, %v", raw, err)
	}
	err = c.Do(t.Context(), "POST", "/api/tasks", nil, json.RawMessage(`{"task_type":"noop","x":1}`), nil)
	wantError(t, err, http.StatusBadRequest, deputy.EINVALID)
	if !strings.Contains(deputy.ErrorMessage(err), `unknown field "x"`) {
		t.Fatalf("message = %q, want the unknown field named", deputy.ErrorMessage(err))
	}
}
