package deputy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/devserver/uiamdev"
	"github.com/deputyhq/deputy/elasticsearch"
	"github.com/deputyhq/deputy/internal/keyring"
	"github.com/deputyhq/deputy/uiam"
)

const sharedSecret = "dev-shared-secret-for-tests"

// syncBuffer is a log sink safe for concurrent writers.
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

// switchable lets a test take a service down and bring it back.
type switchable struct {
	h    http.Handler
	down atomic.Bool
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		http.Error(w, `{"error":{"code":"0xDE0503","message":"service unavailable"}}`, http.StatusServiceUnavailable)
		return
	}
	s.h.ServeHTTP(w, r)
}

// keyWorld is deputy wired to the Elasticsearch and UIAM stand-ins.
type keyWorld struct {
	*harness
	es, uiam     *switchable
	esdev        *esdev.Server
	uiamdev      *uiamdev.Server
	esURL        string
	esSvc        *elasticsearch.Service
	logs         *syncBuffer
	authed       chan authResult // what runs authenticated as
	secrets      []string        // every credential the test saw, to grep for
	secretsMu    sync.Mutex
	defaultCfg   deputy.Config
	userPassword string
}

type authResult struct {
	TaskID   string
	Username string
	AuthType string
	KeyID    string
	Kind     string
}

func newKeyWorld(t *testing.T, apiKeyType string) *keyWorld {
	t.Helper()
	w := &keyWorld{logs: &syncBuffer{}, authed: make(chan authResult, 100), userPassword: "changeme-user-pw"}
	w.uiamdev = uiamdev.New(uiamdev.Config{SharedSecret: sharedSecret})
	w.uiam = &switchable{h: w.uiamdev}
	uiamSrv := httptest.NewServer(w.uiam)
	t.Cleanup(uiamSrv.Close)
	w.esdev = esdev.New(esdev.Config{UIAMURL: uiamSrv.URL, UIAMSharedSecret: sharedSecret})
	w.es = &switchable{h: w.esdev}
	esSrv := httptest.NewServer(w.es)
	t.Cleanup(esSrv.Close)
	w.esURL = esSrv.URL

	w.esdev.AddRole("deputy_service", "grant_api_key", "manage_api_key")
	w.esdev.AddUser("deputy", "deputy-service-pw", "deputy_service")
	w.esdev.AddUser("alice", w.userPassword, "viewer")
	w.uiamdev.AddUser("bob", "viewer")
	w.addSecret("deputy-service-pw", w.userPassword, sharedSecret)

	var err error
	w.esSvc, err = elasticsearch.New(elasticsearch.Config{
		URL: esSrv.URL, Username: "deputy", Password: "deputy-service-pw", UIAMSharedSecret: sharedSecret,
		CacheTTL: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	uiamSvc, err := uiam.New(uiam.Config{URL: uiamSrv.URL, SharedSecret: sharedSecret})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.New(bytes.Repeat([]byte{7}, keyring.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(esSrv.URL, "http://")
	w.defaultCfg = deputy.Config{
		KeyServices: []deputy.KeyService{w.esSvc, uiamSvc}, APIKeyType: apiKeyType, Cipher: kr,
		RemovalDelay: 10 * time.Second, InvalidateInterval: time.Minute, CredentialHosts: []string{host},
		Logger: slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	w.harness = newHarness(t, w.defaultCfg, w.whoami())
	return w
}

func (w *keyWorld) addSecret(s ...string) {
	w.secretsMu.Lock()
	defer w.secretsMu.Unlock()
	w.secrets = append(w.secrets, s...)
}

// whoami is a task type that authenticates at Elasticsearch with the
// task's request and reports who it ran as.
func (w *keyWorld) whoami() deputy.Definition {
	return deputy.Definition{Type: "whoami", Run: func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		if r.Request == nil {
			w.authed <- authResult{TaskID: r.Task.ID}
			return deputy.Result{}, nil
		}
		auth := r.Request.Header().Get("Authorization")
		w.addSecret(strings.TrimPrefix(auth, "ApiKey "))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.esURL+"/_security/_authenticate", nil)
		if r.Request.KeyKind == "uiam" {
			req.Header.Set("x-client-authentication", sharedSecret)
		}
		resp, err := r.Request.Client(nil).Do(req)
		if err != nil {
			return deputy.Result{}, err
		}
		defer resp.Body.Close()
		var body struct {
			Username string `json:"username"`
			AuthType string `json:"authentication_type"`
			APIKey   struct {
				ID string `json:"id"`
			} `json:"api_key"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		w.authed <- authResult{TaskID: r.Task.ID, Username: body.Username, AuthType: body.AuthType,
			KeyID: body.APIKey.ID, Kind: r.Request.KeyKind}
		return deputy.Result{}, nil
	}}
}

func (w *keyWorld) caller(t *testing.T, authorization string) *deputy.Caller {
	t.Helper()
	w.addSecret(strings.Fields(authorization)[1])
	c, err := w.esSvc.Authenticate(context.Background(), deputy.Secret(authorization))
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	return c
}

func (w *keyWorld) sessionCaller(t *testing.T) *deputy.Caller {
	return w.caller(t, "Bearer "+w.uiamdev.SessionToken("bob"))
}

func (w *keyWorld) nextAuth(t *testing.T) authResult {
	t.Helper()
	select {
	case a := <-w.authed:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a run")
		return authResult{}
	}
}

func (w *keyWorld) pending(t *testing.T) []deputy.PendingKey {
	t.Helper()
	keys, err := w.m.PendingKeys(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// invalidateNow moves the clock past the removal delay and the next run of
// the invalidation task, and waits for that run to finish.
func (w *keyWorld) invalidateNow(t *testing.T) {
	t.Helper()
	var before time.Time
	// Wait for the run due at start to be over, so that the next run is
	// one that starts after the clock moved.
	waitFor(t, "the invalidation task to be idle", func() bool {
		task := w.task(t, deputy.InvalidateTaskID)
		before = task.RunAt
		return task.Status == deputy.StatusIdle && string(task.State) != "{}"
	})
	w.clock.Advance(w.defaultCfg.RemovalDelay + w.defaultCfg.InvalidateInterval + time.Second)
	waitFor(t, "the invalidation task to run", func() bool {
		task := w.task(t, deputy.InvalidateTaskID)
		return task.Status == deputy.StatusIdle && task.RunAt.After(before)
	})
}

func (w *keyWorld) esKey(id string) *esdev.KeyInfo {
	for _, k := range w.esdev.Keys() {
		if k.ID == id {
			return &k
		}
	}
	return nil
}

func (w *keyWorld) uiamKey(id string) *uiamdev.KeyInfo {
	for _, k := range w.uiamdev.Keys() {
		if k.ID == id {
			return &k
		}
	}
	return nil
}

// checkLogs fails when a log line is an error or carries a secret.
func (w *keyWorld) checkLogs(t *testing.T) {
	t.Helper()
	logs := w.logs.String()
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("error logged: %s", line)
		}
	}
	w.secretsMu.Lock()
	defer w.secretsMu.Unlock()
	for _, s := range w.secrets {
		if s == "" {
			continue
		}
		if strings.Contains(logs, s) {
			t.Errorf("a secret appears in the logs")
		}
		dec, err := base64.StdEncoding.DecodeString(s)
		if err == nil && len(dec) > 8 && strings.Contains(logs, string(dec)) {
			t.Errorf("a decoded secret appears in the logs")
		}
	}
}

// TestKeys_SeedVerification reproduces the verification of the change
// deputy models: with api_key_type uiam, tasks scheduled with a UIAM session
// token hold both kinds of key, run with the UIAM key, and removing a task
// queues both its keys, which the invalidation task invalidates after the
// removal delay.
func TestKeys_SeedVerification(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "uiam")
	ctx := context.Background()
	w.start(t, w.m)
	caller := w.sessionCaller(t)

	var tasks []*deputy.Task
	for _, id := range []string{"task-1", "task-2"} {
		task, err := w.m.Schedule(ctx, deputy.NewTask{ID: id, Type: "whoami",
			Schedule: &deputy.Schedule{Interval: "1h"}}, &deputy.Options{Caller: caller})
		if err != nil {
			t.Fatal(err)
		}
		us := task.UserScope
		if us == nil || us.KeyIDs["es"] == "" || us.KeyIDs["uiam"] == "" || us.UserName != "bob" ||
			us.APIKeyCreatedByUser {
			t.Fatalf("user scope = %+v; want an es and a uiam key for bob", us)
		}
		tasks = append(tasks, task)
	}
	for range tasks {
		a := w.nextAuth(t)
		task := tasks[0]
		if a.TaskID == tasks[1].ID {
			task = tasks[1]
		}
		if a.Username != "bob" || a.AuthType != "api_key" || a.Kind != "uiam" ||
			a.KeyID != task.UserScope.KeyIDs["uiam"] {
			t.Fatalf("run authenticated as %+v; want bob with the task's uiam key", a)
		}
	}

	// Remove one task: both its keys are queued, the other task's are not.
	if err := w.m.Remove(ctx, "task-1"); err != nil {
		t.Fatal(err)
	}
	queued := w.pending(t)
	if len(queued) != 2 {
		t.Fatalf("queued %d keys; want the 2 keys of the removed task", len(queued))
	}
	for _, k := range queued {
		if k.ID != tasks[0].UserScope.KeyIDs[k.Kind] || len(k.Secret) != 0 {
			t.Fatalf("queued %+v; want task-1's %s key without its secret", k, k.Kind)
		}
	}
	w.invalidateNow(t)
	if n := len(w.pending(t)); n != 0 {
		t.Fatalf("%d keys still queued after invalidation", n)
	}
	if k := w.esKey(tasks[0].UserScope.KeyIDs["es"]); k == nil || !k.Invalidated {
		t.Fatalf("es key of task-1 = %+v; want invalidated", k)
	}
	if k := w.uiamKey(tasks[0].UserScope.KeyIDs["uiam"]); k == nil || !k.Revoked {
		t.Fatalf("uiam key of task-1 = %+v; want revoked", k)
	}
	if k := w.esKey(tasks[1].UserScope.KeyIDs["es"]); k == nil || k.Invalidated {
		t.Fatalf("es key of task-2 = %+v; want it still valid", k)
	}

	// The same with a bulk delete of all tasks.
	if _, err := w.m.Schedule(ctx, deputy.NewTask{ID: "task-1", Type: "whoami",
		Schedule: &deputy.Schedule{Interval: "1h"}}, &deputy.Options{Caller: caller}); err != nil {
		t.Fatal(err)
	}
	w.nextAuth(t)
	waitFor(t, "the run to finish", func() bool { return w.task(t, "task-1").Status == deputy.StatusIdle })
	res, err := w.m.BulkRemove(ctx, []string{"task-1", "task-2"})
	if err != nil || len(res.Errors) != 0 {
		t.Fatalf("bulk remove = %+v, %v", res, err)
	}
	if n := len(w.pending(t)); n != 4 {
		t.Fatalf("queued %d keys after the bulk delete; want 4", n)
	}
	w.invalidateNow(t)
	if n := len(w.pending(t)); n != 0 {
		t.Fatalf("%d keys still queued after invalidation", n)
	}
	for _, k := range w.esdev.Keys() {
		if !k.Invalidated {
			t.Errorf("es key %s left valid", k.ID)
		}
	}
	for _, k := range w.uiamdev.Keys() {
		if !k.Revoked {
			t.Errorf("uiam key %s left valid", k.ID)
		}
	}
	w.checkLogs(t)
}

func TestKeys_HeldByRunningTask(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "es")
	release := make(chan struct{})
	block := deputy.Definition{Type: "block", Run: func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		w.authed <- authResult{TaskID: r.Task.ID}
		<-release
		return deputy.Result{}, nil
	}}
	if err := w.m.Register(block); err != nil {
		t.Fatal(err)
	}
	w.start(t, w.m)
	ctx := context.Background()
	task, err := w.m.Schedule(ctx, deputy.NewTask{ID: "long", Type: "block"},
		&deputy.Options{Caller: w.sessionCaller(t)})
	if err != nil {
		t.Fatal(err)
	}
	w.nextAuth(t)
	// Removed while its run holds the key: the key waits for the run.
	if err := w.m.Remove(ctx, "long"); err != nil {
		t.Fatal(err)
	}
	w.invalidateNow(t)
	if k := w.esKey(task.UserScope.KeyIDs["es"]); k.Invalidated {
		t.Fatal("invalidated a key while a run held it")
	}
	if n := len(w.pending(t)); n != 2 {
		t.Fatalf("%d keys queued; want both keys held for the run", n)
	}
	close(release)
	w.clock.Advance(deputy.DefaultLease)
	w.invalidateNow(t)
	if k := w.esKey(task.UserScope.KeyIDs["es"]); !k.Invalidated {
		t.Fatal("the key outlived the run's lease")
	}
}

func TestKeys_SharedKeysQueuedWhenUnused(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "es")
	ctx := context.Background()
	caller := w.sessionCaller(t)
	var nts []deputy.NewTask
	for _, id := range []string{"a", "b", "c"} {
		nts = append(nts, deputy.NewTask{ID: id, Type: "whoami"})
	}
	if _, err := w.m.BulkSchedule(ctx, nts, &deputy.Options{Caller: caller}); err != nil {
		t.Fatal(err)
	}
	if n, m := len(w.esdev.Keys()), len(w.uiamdev.Keys()); n != 1 || m != 1 {
		t.Fatalf("granted %d es and %d uiam keys for one type; want one of each", n, m)
	}
	if _, err := w.m.BulkRemove(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if n := len(w.pending(t)); n != 0 {
		t.Fatalf("queued %d keys still used by task c", n)
	}
	if err := w.m.Remove(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if n := len(w.pending(t)); n != 2 {
		t.Fatalf("queued %d keys after the last task went; want 2", n)
	}
}

func TestKeys_Rotation(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "es")
	ctx := context.Background()
	strict := deputy.Definition{Type: "strict", Run: w.whoami().Run,
		ValidateParams: func(p json.RawMessage) error {
			if strings.Contains(string(p), "bad") {
				return deputy.Errorf(deputy.EINVALID, "bad params")
			}
			return nil
		}}
	if err := w.m.Register(strict); err != nil {
		t.Fatal(err)
	}
	caller := w.sessionCaller(t)
	opts := &deputy.Options{Caller: caller}
	for _, nt := range []deputy.NewTask{{ID: "ok", Type: "whoami"}, {ID: "fails", Type: "strict"}} {
		if _, err := w.m.Schedule(ctx, nt, opts); err != nil {
			t.Fatal(err)
		}
	}
	old := map[string]*deputy.Task{"ok": w.task(t, "ok"), "fails": w.task(t, "fails")}

	// The patch is invalid for the "strict" type only: that write fails.
	grantsBefore := len(w.esdev.Keys()) + len(w.uiamdev.Keys())
	res, err := w.m.BulkUpdate(ctx, []string{"ok", "fails"},
		deputy.Patch{Params: json.RawMessage(`{"v":"bad"}`)},
		&deputy.Options{Caller: caller, RegenerateAPIKey: true})
	if err != nil || len(res.Tasks) != 1 || len(res.Errors) != 1 || res.Errors[0].ID != "fails" {
		t.Fatalf("bulk update = %+v, %v; want one success and one failure", res, err)
	}
	now := map[string]*deputy.Task{"ok": w.task(t, "ok"), "fails": w.task(t, "fails")}
	if now["ok"].UserScope.KeyIDs["es"] == old["ok"].UserScope.KeyIDs["es"] {
		t.Fatal("the updated task kept its old key")
	}
	if now["fails"].UserScope.KeyIDs["es"] != old["fails"].UserScope.KeyIDs["es"] {
		t.Fatal("the task whose write failed lost its key")
	}
	// One key of each kind for the type whose change is valid, none for the
	// type whose change could only fail.
	if n := len(w.esdev.Keys()) + len(w.uiamdev.Keys()) - grantsBefore; n != 2 {
		t.Fatalf("granted %d keys; want 2", n)
	}
	// The old keys of the updated task are queued, and nothing else.
	queued := map[string]bool{}
	for _, k := range w.pending(t) {
		queued[k.Kind+"/"+k.ID] = true
	}
	want := map[string]bool{
		"es/" + old["ok"].UserScope.KeyIDs["es"]: true, "uiam/" + old["ok"].UserScope.KeyIDs["uiam"]: true,
	}
	if len(queued) != len(want) {
		t.Fatalf("queued %v; want %v", queued, want)
	}
	for k := range want {
		if !queued[k] {
			t.Fatalf("queued %v; want %v", queued, want)
		}
	}
}

func TestKeys_ServiceDownDuringInvalidation(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "uiam")
	ctx := context.Background()
	w.start(t, w.m)
	task, err := w.m.Schedule(ctx, deputy.NewTask{ID: "x", Type: "whoami", RunAt: ptr(w.clock.Now().Add(time.Hour))},
		&deputy.Options{Caller: w.sessionCaller(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.m.Remove(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	w.uiam.down.Store(true)
	w.invalidateNow(t)
	queued := w.pending(t)
	if len(queued) != 1 || queued[0].Kind != "uiam" || queued[0].Attempts != 1 || queued[0].LastError == "" ||
		queued[0].NextAttemptAt == nil {
		t.Fatalf("after a failed invalidation: %+v; want the uiam key queued with its failure", queued)
	}
	if k := w.esKey(task.UserScope.KeyIDs["es"]); !k.Invalidated {
		t.Fatal("the es key was held up by the uiam failure")
	}
	w.uiam.down.Store(false)
	w.invalidateNow(t)
	if n := len(w.pending(t)); n != 0 {
		t.Fatalf("%d keys still queued after the service came back", n)
	}
	if k := w.uiamKey(task.UserScope.KeyIDs["uiam"]); !k.Revoked {
		t.Fatal("the uiam key was not revoked")
	}
}

func TestKeys_CrashAfterRemove(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "es")
	ctx := context.Background()
	task, err := w.m.Schedule(ctx, deputy.NewTask{ID: "x", Type: "whoami", RunAt: ptr(w.clock.Now().Add(time.Hour))},
		&deputy.Options{Caller: w.sessionCaller(t)})
	if err != nil {
		t.Fatal(err)
	}
	// The node removes the task and dies before invalidating anything.
	if err := w.m.Remove(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	// Another process starts over the same store and invalidates the keys.
	w.m = w.manager(t, w.defaultCfg, w.whoami())
	w.start(t, w.m)
	w.invalidateNow(t)
	if n := len(w.pending(t)); n != 0 {
		t.Fatalf("%d keys still queued: %+v; invalidation task %+v", n, w.pending(t),
			w.task(t, deputy.InvalidateTaskID))
	}
	if k := w.esKey(task.UserScope.KeyIDs["es"]); !k.Invalidated {
		t.Fatal("the es key of the removed task survived the crash")
	}
}

func TestKeys_CrashBetweenGrantAndWrite(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "es")
	ctx := context.Background()
	// A grant whose task write never happened: the key was recorded as
	// granted, then the process died.
	gk, err := w.esSvc.Grant(ctx, w.sessionCaller(t), "deputy: whoami - bob")
	if err != nil {
		t.Fatal(err)
	}
	kr := w.defaultCfg.Cipher
	sealed, _ := kr.Seal([]byte(gk.Secret.Reveal()), []byte("deputy:api_key:es:"+gk.ID))
	key := deputy.Key{Kind: "es", ID: gk.ID, Secret: sealed, GrantedAt: w.clock.Now()}
	if err := w.store.RecordKeys(ctx, []deputy.Key{key}); err != nil {
		t.Fatal(err)
	}
	w.start(t, w.m)
	w.clock.Advance(deputy.DefaultUnusedKeyGrace)
	w.invalidateNow(t)
	w.invalidateNow(t)
	if k := w.esKey(gk.ID); k == nil || !k.Invalidated {
		t.Fatalf("orphaned key %+v; want it invalidated", k)
	}
}

func TestKeys_FallbackWarning(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "uiam")
	w.start(t, w.m)
	// Basic credentials yield an Elasticsearch key only.
	caller := w.caller(t, "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:"+w.userPassword)))
	task, err := w.m.Schedule(context.Background(), deputy.NewTask{ID: "es-only", Type: "whoami"},
		&deputy.Options{Caller: caller})
	if err != nil {
		t.Fatal(err)
	}
	if task.UserScope.KeyIDs["uiam"] != "" || task.UserScope.KeyIDs["es"] == "" {
		t.Fatalf("user scope = %+v; want an es key only", task.UserScope)
	}
	a := w.nextAuth(t)
	if a.Username != "alice" || a.Kind != "es" || a.KeyID != task.UserScope.KeyIDs["es"] {
		t.Fatalf("run authenticated as %+v; want alice with the es key", a)
	}
	waitFor(t, "the fallback warning", func() bool {
		for _, line := range strings.Split(w.logs.String(), "\n") {
			if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "another kind") &&
				strings.Contains(line, `"task_id":"es-only"`) {
				return true
			}
		}
		return false
	})
	w.checkLogs(t)
}

func TestKeys_CallerOwnKeys(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "es")
	ctx := context.Background()

	// An Elasticsearch API key of the caller is reused and never queued.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+w.userPassword))
	gk, err := w.esSvc.Grant(ctx, w.caller(t, basic), "alice's own")
	if err != nil {
		t.Fatal(err)
	}
	own := w.caller(t, "ApiKey "+gk.Secret.Reveal())
	task, err := w.m.Schedule(ctx, deputy.NewTask{ID: "own", Type: "whoami"}, &deputy.Options{Caller: own})
	if err != nil {
		t.Fatal(err)
	}
	if !task.UserScope.APIKeyCreatedByUser || task.UserScope.KeyIDs["es"] != gk.ID {
		t.Fatalf("user scope = %+v; want the caller's key, marked created by user", task.UserScope)
	}
	if err := w.m.Remove(ctx, "own"); err != nil {
		t.Fatal(err)
	}
	if n := len(w.pending(t)); n != 0 {
		t.Fatalf("queued %d keys; the caller's own key must never be invalidated", n)
	}

	// A raw organization-level UIAM key cannot yield an Elasticsearch key.
	_, secret := w.uiamdev.CreateKey("bob", "org key")
	w.addSecret(secret)
	_, err = w.m.Schedule(ctx, deputy.NewTask{ID: "org", Type: "whoami"},
		&deputy.Options{Caller: &deputy.Caller{Authorization: deputy.Secret("ApiKey " + secret), UserName: "bob"}})
	if deputy.ErrorCode(err) != deputy.EINVALID || strings.Contains(err.Error(), secret) {
		t.Fatalf("schedule with an org-level key = %v; want a clear invalid error", err)
	}
	if task := w.task(t, "org"); task != nil {
		t.Fatal("a task was stored despite the error")
	}
}

func TestKeys_NoEncryptionKey(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, "es")
	cfg := w.defaultCfg
	cfg.Cipher = nil
	m := w.manager(t, cfg, w.whoami())
	_, err := m.Schedule(context.Background(), deputy.NewTask{ID: "x", Type: "whoami"},
		&deputy.Options{Caller: w.sessionCaller(t)})
	if deputy.ErrorCode(err) != deputy.EUNAVAILABLE || !strings.Contains(deputy.ErrorMessage(err), "encryption_key") {
		t.Fatalf("schedule without an encryption key = %v", err)
	}
	if n := len(w.esdev.Keys()); n != 0 {
		t.Fatalf("granted %d keys for a write that could not happen", n)
	}
}

func ptr[T any](v T) *T { return &v }
