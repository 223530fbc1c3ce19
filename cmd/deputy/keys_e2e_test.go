package main

// End-to-end tests of the API key lifecycle through the real binary. The
// Elasticsearch and UIAM stand-ins run in the test process, behind wrappers
// that record every secret they hand out, what the runs' requests
// authenticated as and when keys were invalidated; deputy serve runs as a
// subprocess pointed at them, with short invalidation delays.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deputyhq/deputy/devserver/esdev"
	"github.com/deputyhq/deputy/devserver/uiamdev"
)

// e2eTaskHeader carries a tag unique to the task whose run makes a
// request. The tasks of these tests set it in their params, so that the
// recorder can tell their requests from deputy's own, and a task from an
// earlier one of the same id.
const e2eTaskHeader = "X-E2E-Task"

// Users and roles of the stand-ins.
const (
	bobUser     = "bob"   // a UIAM user, calling with a session token
	aliceUser   = "alice" // an Elasticsearch native user, calling with Basic
	opsUser     = "ops"   // an Elasticsearch native user holding the admin role
	adminRole   = "deputy_admin"
	serviceUser = "deputy"
)

// keyInterval is how often the invalidation task runs in these tests.
const keyInterval = time.Second

// syncBuffer collects output, safe for concurrent writers.
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

// runAuth is what one request of a run to the Elasticsearch stand-in's
// authenticate API presented and authenticated as.
type runAuth struct {
	tag      string // from e2eTaskHeader
	scheme   string // of the Authorization header
	uiamCred bool   // the credential was an essu_ one
	status   int
	username string
	authType string
	keyID    string
}

// keyStack is both stand-ins, served over HTTP in the test process.
type keyStack struct {
	es           *esdev.Server
	uiam         *uiamdev.Server
	esURL        string
	uiamURL      string
	sharedSecret string
	uiamDown     atomic.Bool // UIAM answers 503 to everything

	mu       sync.Mutex
	secrets  []string             // guarded by mu; every secret seen
	auths    []runAuth            // guarded by mu
	esInvals map[string]time.Time // guarded by mu; when each es key was invalidated
}

// newKeyStack serves the stand-ins until the test ends.
func newKeyStack(t *testing.T) *keyStack {
	t.Helper()
	s := &keyStack{sharedSecret: randomSecret(), esInvals: map[string]time.Time{}}
	s.addSecret(s.sharedSecret)

	s.uiam = uiamdev.New(uiamdev.Config{SharedSecret: s.sharedSecret})
	uts := httptest.NewServer(http.HandlerFunc(s.serveUIAM))
	t.Cleanup(uts.Close)
	s.uiamURL = uts.URL

	s.es = esdev.New(esdev.Config{UIAMURL: uts.URL, UIAMSharedSecret: s.sharedSecret})
	ets := httptest.NewServer(http.HandlerFunc(s.serveES))
	t.Cleanup(ets.Close)
	s.esURL = ets.URL
	return s
}

// teeWriter keeps a copy of a response.
type teeWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (tw *teeWriter) WriteHeader(code int) {
	tw.status = code
	tw.ResponseWriter.WriteHeader(code)
}

func (tw *teeWriter) Write(b []byte) (int, error) {
	if tw.status == 0 {
		tw.status = http.StatusOK
	}
	tw.body.Write(b)
	return tw.ResponseWriter.Write(b)
}

// serveES serves the Elasticsearch stand-in and records what passes.
func (s *keyStack) serveES(w http.ResponseWriter, r *http.Request) {
	s.addAuthorization(r.Header.Get("Authorization"))
	tw := &teeWriter{ResponseWriter: w}
	s.es.ServeHTTP(tw, r)

	switch {
	case r.URL.Path == "/_security/api_key/grant" || r.URL.Path == "/_security/oauth2/token" ||
		r.URL.Path == "/_security/api_key" && r.Method != http.MethodDelete:
		s.addSecretFields(tw.body.Bytes(), "api_key", "encoded", "access_token", "refresh_token")
	case r.URL.Path == "/_security/api_key" && tw.status == http.StatusOK:
		var res struct {
			Invalidated []string `json:"invalidated_api_keys"`
		}
		_ = json.Unmarshal(tw.body.Bytes(), &res)
		s.mu.Lock()
		for _, id := range res.Invalidated {
			s.esInvals[id] = time.Now()
		}
		s.mu.Unlock()
	case r.URL.Path == "/_security/_authenticate" && r.Header.Get(e2eTaskHeader) != "":
		scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		a := runAuth{tag: r.Header.Get(e2eTaskHeader), scheme: scheme,
			uiamCred: strings.HasPrefix(cred, uiamdev.Prefix), status: tw.status}
		var body struct {
			Username string `json:"username"`
			AuthType string `json:"authentication_type"`
			APIKey   struct {
				ID string `json:"id"`
			} `json:"api_key"`
		}
		_ = json.Unmarshal(tw.body.Bytes(), &body)
		a.username, a.authType, a.keyID = body.Username, body.AuthType, body.APIKey.ID
		s.mu.Lock()
		s.auths = append(s.auths, a)
		s.mu.Unlock()
	}
}

// serveUIAM serves the UIAM stand-in, or 503 while it is down, and records
// the keys it grants.
func (s *keyStack) serveUIAM(w http.ResponseWriter, r *http.Request) {
	if s.uiamDown.Load() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"0xDE0503","message":"service unavailable"}}`)
		return
	}
	s.addAuthorization(r.Header.Get("Authorization"))
	tw := &teeWriter{ResponseWriter: w}
	s.uiam.ServeHTTP(tw, r)
	if strings.HasSuffix(r.URL.Path, "/_grant") {
		s.addSecretFields(tw.body.Bytes(), "key")
	}
}

func (s *keyStack) addSecret(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if len(v) >= 8 && !slices.Contains(s.secrets, v) {
			s.secrets = append(s.secrets, v)
		}
	}
}

// addSecretFields records the string fields of a JSON object.
func (s *keyStack) addSecretFields(body []byte, fields ...string) {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return
	}
	for _, f := range fields {
		if v, ok := m[f].(string); ok {
			s.addSecret(v)
		}
	}
}

// addAuthorization records the credential of an Authorization header and,
// for Basic and Elasticsearch API keys, the secret inside it.
func (s *keyStack) addAuthorization(h string) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok {
		return
	}
	s.addSecret(cred)
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return
	}
	if _, secret, ok := strings.Cut(string(raw), ":"); ok &&
		(strings.EqualFold(scheme, "Basic") || strings.EqualFold(scheme, "ApiKey")) {
		s.addSecret(secret)
	}
}

func (s *keyStack) secretList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.secrets)
}

// runAuths returns what the runs of the task tagged tag authenticated as,
// in order.
func (s *keyStack) runAuths(tag string) []runAuth {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []runAuth
	for _, a := range s.auths {
		if a.tag == tag {
			out = append(out, a)
		}
	}
	return out
}

// esInvalidatedAt returns when the es key id was invalidated.
func (s *keyStack) esInvalidatedAt(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.esInvals[id]
	return at, ok
}

// invalidated reports whether a key is invalidated at its stand-in, and
// when. It fails the test for a key the stand-in never issued.
func (s *keyStack) invalidated(t *testing.T, k keyRef) (bool, time.Time) {
	t.Helper()
	switch k.kind {
	case "es":
		for _, info := range s.es.Keys() {
			if info.ID == k.id {
				at, _ := s.esInvalidatedAt(k.id)
				return info.Invalidated, at
			}
		}
	case "uiam":
		for _, info := range s.uiam.Keys() {
			if info.ID == k.id {
				return info.Revoked, info.RevokedAt
			}
		}
	}
	t.Fatalf("the stand-ins never issued %s key %s", k.kind, k.id)
	return false, time.Time{}
}

// allKeys returns every key the stand-ins issued.
func (s *keyStack) allKeys() []keyRef {
	var out []keyRef
	for _, k := range s.es.Keys() {
		out = append(out, keyRef{"es", k.ID})
	}
	for _, k := range s.uiam.Keys() {
		out = append(out, keyRef{"uiam", k.ID})
	}
	return out
}

// keyRef names a key.
type keyRef struct{ kind, id string }

func (k keyRef) String() string { return k.kind + "/" + k.id }

// keyTask is what the tests read of a task.
type keyTask struct {
	ID     string          `json:"id"`
	Status string          `json:"status"`
	State  json.RawMessage `json:"state"`
	RunAt  time.Time       `json:"run_at"`
	Params struct {
		Headers map[string]string `json:"headers"`
	} `json:"params"`
	UserScope *struct {
		APIKeyID            string `json:"api_key_id"`
		UIAMAPIKeyID        string `json:"uiam_api_key_id"`
		SpaceID             string `json:"space_id"`
		APIKeyCreatedByUser bool   `json:"api_key_created_by_user"`
		UserName            string `json:"user_name"`
	} `json:"user_scope"`
}

// tag returns the tag the task's runs send in e2eTaskHeader.
func (kt *keyTask) tag() string { return kt.Params.Headers[e2eTaskHeader] }

// keys returns the task's keys.
func (kt *keyTask) keys() []keyRef {
	var out []keyRef
	if us := kt.UserScope; us != nil {
		if us.APIKeyID != "" {
			out = append(out, keyRef{"es", us.APIKeyID})
		}
		if us.UIAMAPIKeyID != "" {
			out = append(out, keyRef{"uiam", us.UIAMAPIKeyID})
		}
	}
	return out
}

// pendingKey is an entry of GET /api/api_keys/_pending.
type pendingKey struct {
	ID            string     `json:"id"`
	Kind          string     `json:"kind"`
	QueuedAt      time.Time  `json:"queued_at"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
}

func (k pendingKey) ref() keyRef { return keyRef{k.Kind, k.ID} }

// keyWorld is deputy serve over a key stack, with the test's users.
type keyWorld struct {
	*keyStack
	removalDelay time.Duration
	cfgPath      string
	data         string

	p         *proc   // the running daemon
	procs     []*proc // every daemon started, for their logs
	stdout    syncBuffer
	responses syncBuffer // every response body of deputy's API

	bob, alice, ops string // Authorization headers
	tags            atomic.Int64
}

// newKeyWorld configures the stand-ins' users and writes deputy's
// configuration: api_key_type uiam, the invalidation task every second and
// the given removal delay.
func newKeyWorld(t *testing.T, removalDelay time.Duration) *keyWorld {
	t.Helper()
	w := &keyWorld{keyStack: newKeyStack(t), removalDelay: removalDelay, data: t.TempDir()}

	servicePassword, alicePassword, opsPassword := randomSecret(), randomSecret(), randomSecret()
	w.es.AddRole("deputy_service", "grant_api_key", "manage_api_key")
	w.es.AddUser(serviceUser, servicePassword, "deputy_service")
	w.es.AddUser(aliceUser, alicePassword, "viewer")
	w.es.AddUser(opsUser, opsPassword, adminRole)
	w.uiam.AddUser(bobUser, "viewer")
	w.bob = "Bearer " + w.uiam.SessionToken(bobUser)
	w.alice = basicAuth(aliceUser, alicePassword)
	w.ops = basicAuth(opsUser, opsPassword)
	w.addSecret(servicePassword, alicePassword, opsPassword)
	for _, h := range []string{w.bob, w.alice, w.ops} {
		w.addAuthorization(h)
	}

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	encryptionKey := hex.EncodeToString(key)
	w.addSecret(encryptionKey)
	cfg := fmt.Sprintf(`api_key_type: uiam
invalidate_api_key_task:
  interval: %ds
  removal_delay: %ds
encryption_key: %q
elasticsearch:
  url: %q
  username: %q
  password: %q
uiam:
  url: %q
  shared_secret: %q
admin_role: %q
credential_hosts: [%q]
`, keyInterval/time.Second, removalDelay/time.Second, encryptionKey,
		w.esURL, serviceUser, servicePassword, w.uiamURL, w.sharedSecret,
		adminRole, strings.TrimPrefix(w.esURL, "http://"))
	w.cfgPath = filepath.Join(t.TempDir(), "deputy.yaml")
	if err := os.WriteFile(w.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return w
}

// start starts deputy serve over the world's data directory.
func (w *keyWorld) start(t *testing.T) {
	t.Helper()
	w.p = startDeputyOut(t, w.data, &w.stdout, "--config", w.cfgPath)
	w.procs = append(w.procs, w.p)
}

// startDeputyOut is startDeputy that also keeps the daemon's standard
// output, so that it can be searched for secrets.
func startDeputyOut(t *testing.T, data string, stdout io.Writer, extra ...string) *proc {
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data", data,
		"--log-format", "json", "--log-level", "debug", "--poll-interval", "100ms"}, extra...)
	p := &proc{t: t, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout = stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start deputy: %v", err)
	}
	addrc := make(chan string, 1)
	go p.readLog(stderr, addrc)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("deputy log:\n%s", p.logText())
		}
	})
	select {
	case p.addr = <-addrc:
		return p
	case <-p.done:
		t.Fatalf("deputy exited before listening: %v\n%s", p.err, p.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("deputy did not listen within 30s\n%s", p.logText())
	}
	return nil
}

// do calls deputy's API with an Authorization header and keeps the
// response body for the search for secrets.
func (w *keyWorld) do(t *testing.T, auth, method, path, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, w.p.url(path), r)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, path, err)
	}
	w.responses.Write(b)
	w.responses.Write([]byte("\n"))
	return resp.StatusCode, b
}

// expect calls deputy's API and fails unless the answer has status want.
func (w *keyWorld) expect(t *testing.T, want int, auth, method, path, body string) []byte {
	t.Helper()
	status, resp := w.do(t, auth, method, path, body)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, status, resp, want)
	}
	return resp
}

// whoamiTask is the body of a task that asks the Elasticsearch stand-in
// who it is, presenting the credentials of its user. Its first run is due
// at once and the next in an hour, so that a test can remove it while no
// run holds its keys.
func (w *keyWorld) whoamiTask(id string) string {
	tag := fmt.Sprintf("%s#%d", id, w.tags.Add(1))
	return fmt.Sprintf(`{"id":%q,"task_type":"http","schedule":{"interval":"1h"},`+
		`"params":{"url":%q,"present_credentials":true,"headers":{%q:%q}}}`,
		id, w.esURL+"/_security/_authenticate", e2eTaskHeader, tag)
}

// schedule schedules a task as auth and returns it.
func (w *keyWorld) schedule(t *testing.T, auth, body string) *keyTask {
	t.Helper()
	resp := w.expect(t, http.StatusCreated, auth, http.MethodPost, "/api/tasks", body)
	var task keyTask
	if err := json.Unmarshal(resp, &task); err != nil {
		t.Fatalf("decode task %s: %v", resp, err)
	}
	return &task
}

// task returns a task as the admin sees it, or nil when it is not found.
func (w *keyWorld) task(t *testing.T, id string) *keyTask {
	t.Helper()
	status, resp := w.do(t, w.ops, http.MethodGet, "/api/tasks/"+id, "")
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil
	default:
		t.Fatalf("get %s: %d %s", id, status, resp)
	}
	var task keyTask
	if err := json.Unmarshal(resp, &task); err != nil {
		t.Fatalf("decode task %s: %v", resp, err)
	}
	return &task
}

// pending lists the keys queued for invalidation, as the admin.
func (w *keyWorld) pending(t *testing.T) []pendingKey {
	t.Helper()
	resp := w.expect(t, http.StatusOK, w.ops, http.MethodGet, "/api/api_keys/_pending", "")
	var page struct {
		Keys []pendingKey `json:"keys"`
	}
	if err := json.Unmarshal(resp, &page); err != nil {
		t.Fatalf("decode pending keys %s: %v", resp, err)
	}
	return page.Keys
}

// waitRun waits until task id, due at once and then hourly, has finished
// its first run: it is idle and next due in about an hour.
func (w *keyWorld) waitRun(t *testing.T, id string) *keyTask {
	t.Helper()
	var task *keyTask
	eventually(t, 20*time.Second, "a run of "+id, func() bool {
		task = w.task(t, id)
		if task == nil {
			t.Fatalf("task %s vanished", id)
		}
		return task.Status == "idle" && time.Until(task.RunAt) > 30*time.Minute
	})
	return task
}

// checkUserScope fails unless task runs as user with exactly the key kinds
// given.
func checkUserScope(t *testing.T, task *keyTask, user string, kinds ...string) {
	t.Helper()
	us := task.UserScope
	if us == nil || us.UserName != user || us.SpaceID != "default" || us.APIKeyCreatedByUser {
		t.Fatalf("task %s: user scope %+v, want %s's in the default space", task.ID, us, user)
	}
	var got []string
	for _, k := range task.keys() {
		got = append(got, k.kind)
	}
	if !slices.Equal(got, kinds) {
		t.Fatalf("task %s: key kinds %v, want %v", task.ID, got, kinds)
	}
}

// checkRuns fails unless task has run and every run authenticated at the
// Elasticsearch stand-in as user with the task's key of kind.
func (w *keyWorld) checkRuns(t *testing.T, task *keyTask, user, kind string) {
	t.Helper()
	want := keyRef{kind: kind}
	for _, k := range task.keys() {
		if k.kind == kind {
			want = k
		}
	}
	auths := w.runAuths(task.tag())
	if task.tag() == "" || len(auths) == 0 {
		t.Fatalf("no run of %s reached the Elasticsearch stand-in", task.ID)
	}
	for _, a := range auths {
		if a.status != http.StatusOK || a.scheme != "ApiKey" || a.uiamCred != (kind == "uiam") ||
			a.username != user || a.authType != "api_key" || a.keyID != want.id {
			t.Fatalf("a run of %s authenticated as %+v; want %s with %s", task.ID, a, user, want)
		}
	}
	var st struct {
		Status      int    `json:"status"`
		OK          bool   `json:"ok"`
		BodyExcerpt string `json:"body_excerpt"`
	}
	_ = json.Unmarshal(task.State, &st)
	if st.Status != http.StatusOK || !st.OK || st.BodyExcerpt != "" {
		t.Fatalf("task %s state %s: want status 200, ok and no body excerpt", task.ID, task.State)
	}
}

// checkQueued fails unless the queue holds exactly want, untried, and
// returns the entries.
func (w *keyWorld) checkQueued(t *testing.T, want []keyRef) []pendingKey {
	t.Helper()
	queued := w.pending(t)
	var got []keyRef
	for _, k := range queued {
		if k.Attempts != 0 || k.LastError != "" {
			t.Fatalf("queued %+v: want it untried", k)
		}
		got = append(got, k.ref())
	}
	if !sameKeys(got, want) {
		t.Fatalf("queued %v, want %v", got, want)
	}
	return queued
}

// waitInvalidated waits until every queued key is invalidated at its
// stand-in and the queue is empty, and checks that none was invalidated
// before the removal delay passed.
func (w *keyWorld) waitInvalidated(t *testing.T, queued []pendingKey, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "the queued keys to be invalidated and the queue to drain", func() bool {
		for _, k := range queued {
			if done, _ := w.invalidated(t, k.ref()); !done {
				return false
			}
		}
		return len(w.pending(t)) == 0
	})
	for _, k := range queued {
		_, at := w.invalidated(t, k.ref())
		if waited := at.Sub(k.QueuedAt); waited < w.removalDelay {
			t.Fatalf("key %s invalidated %s after it was queued, before the removal delay of %s",
				k.ref(), waited, w.removalDelay)
		}
	}
}

// checkValid fails if a key is invalidated.
func (w *keyWorld) checkValid(t *testing.T, keys []keyRef) {
	t.Helper()
	for _, k := range keys {
		if done, _ := w.invalidated(t, k); done {
			t.Fatalf("key %s was invalidated, but a task still uses it", k)
		}
	}
}

// checkOutput fails when a daemon logged an error, a line that is not
// JSON or a record with two values for one key, or when a secret shows in
// the daemon's output or in a response.
func (w *keyWorld) checkOutput(t *testing.T) {
	t.Helper()
	var logs strings.Builder
	for _, p := range w.procs {
		logs.WriteString(p.logText())
	}
	for line := range strings.Lines(logs.String()) {
		var rec struct {
			Level string `json:"level"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %s", line)
		} else if rec.Level == "ERROR" {
			t.Errorf("error logged: %s", line)
		}
		if key := repeatedKey(line); key != "" {
			t.Errorf("log record has two values for %q: %s", key, line)
		}
	}
	w.checkNoSecret(t, "the daemon's log", logs.String())
	w.checkNoSecret(t, "the daemon's standard output", w.stdout.String())
	w.checkNoSecret(t, "a response of deputy's API", w.responses.String())
}

// repeatedKey returns a key that the JSON object line holds twice at its
// top level, if any: a reader keeps one of the values and loses the other.
func repeatedKey(line string) string {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := tok.(string)
		if seen[key] {
			return key
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return ""
		}
	}
	return ""
}

// checkNoSecret fails when text holds one of the secrets the test knows.
// It names the secret by its position only.
func (w *keyWorld) checkNoSecret(t *testing.T, where, text string) {
	t.Helper()
	secrets := w.secretList()
	if len(secrets) < 10 {
		t.Fatalf("the test knows only %d secrets; the recorder is broken", len(secrets))
	}
	for i, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("secret #%d (%d characters) shows in %s", i, len(s), where)
		}
	}
}

// checkAtRest fails when a secret shows in a file of the data directory:
// keys are stored encrypted, and credentials not at all.
func (w *keyWorld) checkAtRest(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(w.data)
	if err != nil {
		t.Fatalf("read data directory: %v", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(w.data, e.Name()))
		if err != nil {
			t.Fatalf("read %s: %v", e.Name(), err)
		}
		w.checkNoSecret(t, "the data file "+e.Name(), string(b))
	}
}

// sameKeys reports whether a and b hold the same keys, in any order.
func sameKeys(a, b []keyRef) bool {
	cmp := func(x, y keyRef) int { return strings.Compare(x.String(), y.String()) }
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// randomSecret returns a fresh secret, unique enough to search output for.
func randomSecret() string { return "e2e-" + rand.Text() }

// TestE2E_KeysSeedVerification is the verification of the change deputy
// models, through the binary: with api_key_type uiam, a removal delay of
// 10s and a 1s interval, a user schedules two tasks with a UIAM session
// token; both hold an Elasticsearch and a UIAM key and their runs
// authenticate as the user with the UIAM key; removing one queues both its
// keys, which are invalidated after the delay; the same again for a bulk
// delete of all tasks; nothing is logged as an error, and no secret shows
// in any output, response or data file.
func TestE2E_KeysSeedVerification(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, 10*time.Second)
	w.start(t)
	wait := w.removalDelay + keyInterval + 15*time.Second

	// Two tasks, scheduled by bob one call each, run with their UIAM keys.
	tasks := map[string]*keyTask{}
	for _, id := range []string{"task-1", "task-2"} {
		task := w.schedule(t, w.bob, w.whoamiTask(id))
		checkUserScope(t, task, bobUser, "es", "uiam")
		tasks[id] = task
	}
	for id, task := range tasks {
		w.waitRun(t, id)
		w.checkRuns(t, w.task(t, id), bobUser, "uiam")
		if got := w.task(t, id).keys(); !sameKeys(got, task.keys()) {
			t.Fatalf("task %s: keys %v after its run, want %v", id, got, task.keys())
		}
	}

	// Removing one task queues both its keys, and only them; after the
	// delay and one interval both are invalidated and the queue is empty.
	w.expect(t, http.StatusNoContent, w.bob, http.MethodDelete, "/api/tasks/task-1", "")
	queued := w.checkQueued(t, tasks["task-1"].keys())
	w.waitInvalidated(t, queued, wait)
	w.checkValid(t, tasks["task-2"].keys())

	// The same again with a bulk delete of all tasks, the removed one
	// scheduled anew.
	tasks["task-1"] = w.schedule(t, w.bob, w.whoamiTask("task-1"))
	checkUserScope(t, tasks["task-1"], bobUser, "es", "uiam")
	w.checkRuns(t, w.waitRun(t, "task-1"), bobUser, "uiam")
	status, resp := w.do(t, w.bob, http.MethodPost, "/api/tasks/_bulk_delete",
		`{"ids":["task-1","task-2"]}`)
	var del struct {
		Deleted []string          `json:"deleted"`
		Errors  []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(resp, &del); err != nil || status != http.StatusOK ||
		len(del.Deleted) != 2 || len(del.Errors) != 0 {
		t.Fatalf("bulk delete: %d %s, want both deleted", status, resp)
	}
	queued = w.checkQueued(t, append(tasks["task-1"].keys(), tasks["task-2"].keys()...))
	w.waitInvalidated(t, queued, wait)
	for _, k := range w.allKeys() {
		if done, _ := w.invalidated(t, k); !done {
			t.Errorf("key %s left valid", k)
		}
	}
	if n := len(w.allKeys()); n != 6 {
		t.Errorf("the stand-ins issued %d keys, want 6: two kinds for three tasks", n)
	}

	w.checkAtRest(t)
	w.checkOutput(t)
}

// TestE2E_KeysFallbackWarning: with api_key_type uiam, a task scheduled
// with the Basic credentials of an Elasticsearch user holds no UIAM key; it
// runs with its Elasticsearch key, and the daemon warns, naming the task.
func TestE2E_KeysFallbackWarning(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, 10*time.Second)
	w.start(t)

	task := w.schedule(t, w.alice, w.whoamiTask("es-only"))
	checkUserScope(t, task, aliceUser, "es")
	w.checkRuns(t, w.waitRun(t, "es-only"), aliceUser, "es")

	var warning string
	eventually(t, 10*time.Second, "the fallback warning", func() bool {
		for line := range strings.Lines(w.p.logText()) {
			var rec struct {
				Level  string `json:"level"`
				Msg    string `json:"msg"`
				TaskID string `json:"task_id"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "WARN" &&
				rec.TaskID == "es-only" && strings.Contains(rec.Msg, "api key") {
				warning = line
				return true
			}
		}
		return false
	})
	if !strings.Contains(warning, "another kind") {
		t.Fatalf("warning %s: want it to say the run uses another kind of key", warning)
	}
	w.checkOutput(t)
}

// TestE2E_KeysCrashAfterRemove: the daemon is killed after a task is
// removed and before its keys are invalidated; restarted over the same
// data, it still invalidates them and the queue drains.
func TestE2E_KeysCrashAfterRemove(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, 5*time.Second)
	w.start(t)

	task := w.schedule(t, w.bob, w.whoamiTask("doomed"))
	checkUserScope(t, task, bobUser, "es", "uiam")
	w.waitRun(t, "doomed")
	w.expect(t, http.StatusNoContent, w.bob, http.MethodDelete, "/api/tasks/doomed", "")
	queued := w.checkQueued(t, task.keys())

	if err := w.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	w.p.wait(10 * time.Second)
	w.checkValid(t, task.keys()) // the crash came before the removal delay passed

	w.start(t)
	if got := w.checkQueued(t, task.keys()); !slices.EqualFunc(got, queued,
		func(a, b pendingKey) bool { return a.ref() == b.ref() && a.QueuedAt.Equal(b.QueuedAt) }) {
		t.Fatalf("queue after the restart %+v, want %+v", got, queued)
	}
	w.waitInvalidated(t, queued, w.removalDelay+keyInterval+20*time.Second)
	w.checkOutput(t)
}

// TestE2E_KeysServiceDown: UIAM is down when a removed task's keys come
// due; the Elasticsearch key is invalidated regardless, the UIAM key stays
// queued with its attempts and error, and once UIAM is back, after the
// retry backoff (30s for a first failure), it is revoked and the queue
// drains.
func TestE2E_KeysServiceDown(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, time.Second)
	w.start(t)

	task := w.schedule(t, w.bob, w.whoamiTask("outage"))
	checkUserScope(t, task, bobUser, "es", "uiam")
	w.waitRun(t, "outage")
	esKey, uiamKey := task.keys()[0], task.keys()[1]

	// The admin calls with Basic credentials, which need no UIAM.
	w.uiamDown.Store(true)
	w.expect(t, http.StatusNoContent, w.ops, http.MethodDelete, "/api/tasks/outage", "")
	var failed pendingKey
	eventually(t, 20*time.Second, "a failed attempt to revoke the uiam key", func() bool {
		queued := w.pending(t)
		if len(queued) != 1 || queued[0].ref() != uiamKey {
			return false
		}
		failed = queued[0]
		return failed.Attempts >= 1 && failed.LastError != "" && failed.NextAttemptAt != nil
	})
	if done, _ := w.invalidated(t, esKey); !done {
		t.Fatalf("the es key was held up by the uiam outage")
	}
	if done, _ := w.invalidated(t, uiamKey); done {
		t.Fatalf("the uiam key was revoked while UIAM was down")
	}
	t.Logf("failed attempt: %+v", failed)

	w.uiamDown.Store(false)
	backoff := time.Until(*failed.NextAttemptAt)
	w.waitInvalidated(t, []pendingKey{failed}, backoff+keyInterval+20*time.Second)
	w.checkOutput(t)
}

// TestE2E_KeysRotation: a bulk update that regenerates the keys of two
// tasks, whose write fails for one of them, queues the old keys of the task
// that was updated and any new key granted for the one that was not; the
// keys the tasks hold afterwards stay valid and in use.
func TestE2E_KeysRotation(t *testing.T) {
	t.Parallel()
	w := newKeyWorld(t, 2*time.Second)
	w.start(t)

	old := map[string]*keyTask{
		"rot-http": w.schedule(t, w.bob, w.whoamiTask("rot-http")),
		"rot-noop": w.schedule(t, w.bob,
			`{"id":"rot-noop","task_type":"noop","schedule":{"interval":"1h"}}`),
	}
	for id, task := range old {
		checkUserScope(t, task, bobUser, "es", "uiam")
		w.waitRun(t, id)
	}

	// Empty params are valid for noop and invalid for http (no url).
	status, resp := w.do(t, w.bob, http.MethodPost, "/api/tasks/_bulk_update",
		`{"ids":["rot-http","rot-noop"],"params":{},"regenerate_api_key":true}`)
	var res struct {
		Tasks  []keyTask `json:"tasks"`
		Errors []struct {
			ID     string `json:"id"`
			Status int    `json:"status"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(resp, &res); err != nil || status != http.StatusOK ||
		len(res.Tasks) != 1 || res.Tasks[0].ID != "rot-noop" || len(res.Errors) != 1 ||
		res.Errors[0].ID != "rot-http" || res.Errors[0].Status != http.StatusBadRequest {
		t.Fatalf("bulk update: %d %s, want rot-noop updated and rot-http invalid", status, resp)
	}
	now := map[string]*keyTask{"rot-http": w.task(t, "rot-http"), "rot-noop": w.task(t, "rot-noop")}
	if !sameKeys(now["rot-http"].keys(), old["rot-http"].keys()) {
		t.Fatalf("rot-http keys %v, want its old keys %v", now["rot-http"].keys(),
			old["rot-http"].keys())
	}
	checkUserScope(t, now["rot-noop"], bobUser, "es", "uiam")
	for _, k := range now["rot-noop"].keys() {
		if slices.Contains(old["rot-noop"].keys(), k) {
			t.Fatalf("rot-noop kept its old key %s", k)
		}
	}

	// Queued: rot-noop's old keys, and whatever was granted for rot-http's
	// failed write. Every key no task holds must be queued.
	held := append(now["rot-http"].keys(), now["rot-noop"].keys()...)
	var unheld []keyRef
	for _, k := range w.allKeys() {
		if !slices.Contains(held, k) {
			unheld = append(unheld, k)
		}
	}
	for _, k := range old["rot-noop"].keys() {
		if !slices.Contains(unheld, k) {
			t.Fatalf("old key %s of rot-noop is still held", k)
		}
	}
	t.Logf("keys granted for the failed write: %d", len(unheld)-2)
	queued := w.checkQueued(t, unheld)
	w.waitInvalidated(t, queued, w.removalDelay+keyInterval+15*time.Second)
	w.checkValid(t, held)

	// rot-http still runs with its old UIAM key.
	tag := now["rot-http"].tag()
	before := len(w.runAuths(tag))
	w.expect(t, http.StatusOK, w.bob, http.MethodPost, "/api/tasks/rot-http/_run_soon", "")
	eventually(t, 20*time.Second, "another run of rot-http", func() bool {
		return len(w.runAuths(tag)) > before && w.task(t, "rot-http").Status == "idle"
	})
	w.checkRuns(t, w.task(t, "rot-http"), bobUser, "uiam")
	w.checkOutput(t)
}
