package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/httpapi"
	"github.com/deputyhq/deputy/sqlite"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// epoch is the fixed time of the fixture's clocks.
var epoch = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// options tune setup.
type options struct {
	auth      deputy.Authenticator
	adminRole string
	maxBody   int64
	// realClock runs the manager and store on the wall clock instead of
	// epoch.
	realClock bool
	// keys and cipher let the manager grant API keys.
	keys   []deputy.KeyService
	cipher deputy.Cipher
}

// fixture is a server over a manager over a fresh SQLite store.
type fixture struct {
	t    *testing.T
	db   *sqlite.DB
	m    *deputy.Manager
	srv  *httpapi.Server
	logs *syncBuffer
}

func setup(t *testing.T, o options) *fixture {
	t.Helper()
	now := func() time.Time { return epoch }
	if o.realClock {
		now = time.Now
	}
	db, err := sqlite.Open(t.Context(), sqlite.Config{
		Path: filepath.Join(t.TempDir(), "deputy.db"),
		Now:  now,
	})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })

	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := deputy.New(db, deputy.Config{
		NodeID:       "node-1",
		Now:          now,
		PollInterval: 10 * time.Millisecond,
		Logger:       log,
		KeyServices:  o.keys,
		Cipher:       o.cipher,
	})
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	err = m.Register(
		deputy.Definition{Type: "noop", Run: func(context.Context, *deputy.Run) (deputy.Result, error) {
			return deputy.Result{}, nil
		}},
		deputy.Definition{
			Type: "check",
			ValidateParams: func(p json.RawMessage) error {
				var v struct{ URL string }
				if err := json.Unmarshal(p, &v); err != nil || v.URL == "" {
					return errors.New("url is required")
				}
				return nil
			},
			Run: func(context.Context, *deputy.Run) (deputy.Result, error) { return deputy.Result{}, nil },
		},
	)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	srv := httpapi.New(httpapi.Config{
		Manager:       m,
		Authenticator: o.auth,
		AdminRole:     o.adminRole,
		Logger:        log,
		MaxBodyBytes:  o.maxBody,
	})
	return &fixture{t: t, db: db, m: m, srv: srv, logs: logs}
}

// do serves one request. headers are name, value pairs.
func (f *fixture) do(method, path, body string, headers ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, path, nil)
	} else {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, r)
	return w
}

// want fails the test unless the response has the given status.
func want(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body: %s", w.Code, status, w.Body)
	}
}

// wantError fails the test unless the response is a JSON error with the
// given status and code whose message contains msg.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code, msg string) {
	t.Helper()
	want(t, w, status)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("decode error body %s: %v", w.Body, err)
	}
	if body.Error.Code != code || !strings.Contains(body.Error.Message, msg) {
		t.Fatalf("error = %+v, want code %q and a message containing %q", body.Error, code, msg)
	}
}

// decode decodes a JSON response.
func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %s: %v", w.Body, err)
	}
	return v
}

// bulkResult is the JSON form of bulk responses.
type bulkResult struct {
	Tasks  []*deputy.Task
	Errors []struct {
		ID     string
		Status int
		Error  struct{ Code, Message string }
	}
	Deleted []string
}

// ids returns the ids of tasks.
func ids(tasks []*deputy.Task) string {
	var s []string
	for _, t := range tasks {
		s = append(s, t.ID)
	}
	return strings.Join(s, ",")
}

// errorIDs returns the ids and statuses of bulk errors, as id:status.
func (r bulkResult) errorIDs() string {
	var s []string
	for _, e := range r.Errors {
		s = append(s, e.ID+":"+http.StatusText(e.Status))
	}
	return strings.Join(s, ",")
}

// schedule schedules a task through the API and fails the test on error.
func (f *fixture) schedule(path, body string, headers ...string) *deputy.Task {
	f.t.Helper()
	w := f.do("POST", path, body, headers...)
	want(f.t, w, http.StatusCreated)
	return decode[*deputy.Task](f.t, w)
}

// tasks returns the ids of every stored task, in every space.
func (f *fixture) tasks() string {
	f.t.Helper()
	page, err := f.m.Fetch(f.t.Context(), deputy.Query{})
	if err != nil {
		f.t.Fatalf("fetch: %v", err)
	}
	return ids(page.Tasks)
}

// get returns a stored task.
func (f *fixture) get(id string) *deputy.Task {
	f.t.Helper()
	task, err := f.m.Get(f.t.Context(), id)
	if err != nil {
		f.t.Fatalf("get %s: %v", id, err)
	}
	return task
}

// golden compares a JSON response body, indented, with testdata/name.json,
// or rewrites that file with -update.
func golden(t *testing.T, name string, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, body, "", "  "); err != nil {
		t.Fatalf("indent %s: %v", body, err)
	}
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatalf("update golden file: %v", err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(b, buf.Bytes()) {
		t.Fatalf("%s differs from the response (run with -update to accept it):\ngot:\n%s\nwant:\n%s",
			path, buf.Bytes(), b)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
