package main

// End-to-end tests: they build the real binary once, run it as a
// subprocess on a free port with a temporary data directory, and talk to it
// over HTTP and through its CLI.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the deputy binary TestMain builds.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deputy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "deputy")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build deputy:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the test process's environment without deputy's own
// variables, so that a developer's settings cannot change the tests.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DEPUTY_") || strings.HasPrefix(kv, "DATABASE_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// proc is a running deputy serve.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string // host:port the API listens on
	done chan struct{}
	err  error // of Wait, once done is closed

	mu  sync.Mutex
	log bytes.Buffer
}

// startDeputy starts deputy serve on a free loopback port with data dir
// data, and waits until it listens.
func startDeputy(t *testing.T, data string, extra ...string) *proc {
	t.Helper()
	return startDeputyOut(t, data, nil, extra...)
}

// readLog collects the daemon's log and reports the address it listens on.
func (p *proc) readLog(r io.Reader, addrc chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		p.mu.Lock()
		p.log.Write(line)
		p.log.WriteByte('\n')
		p.mu.Unlock()
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "deputy listening" {
			addrc <- rec.Addr
		}
	}
	p.err = p.cmd.Wait()
	close(p.done)
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// url returns the URL of an API path.
func (p *proc) url(path string) string { return "http://" + p.addr + path }

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("deputy did not exit within %s", timeout)
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	default:
		p.t.Fatalf("wait: %v", p.err)
		return -1
	}
}

// call makes an API request and returns the status and body.
func call(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// apiTask is what the tests read of a task.
type apiTask struct {
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	Enabled   bool            `json:"enabled"`
	Attempts  int             `json:"attempts"`
	OwnerID   string          `json:"owner_id"`
	StartedAt *time.Time      `json:"started_at"`
	State     json.RawMessage `json:"state"`
}

// getTask returns a task, or nil when it is not found.
func getTask(t *testing.T, p *proc, id string) *apiTask {
	t.Helper()
	status, body := call(t, http.MethodGet, p.url("/api/tasks/"+id), "")
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil
	default:
		t.Fatalf("get %s: %d %s", id, status, body)
	}
	var task apiTask
	if err := json.Unmarshal(body, &task); err != nil {
		t.Fatalf("decode task %s: %v", body, err)
	}
	return &task
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestE2E_RecurringHTTPTask(t *testing.T) {
	t.Parallel()
	p := startDeputy(t, t.TempDir())

	body := fmt.Sprintf(`{"id":"check","task_type":"http","params":{"url":%q},"schedule":{"interval":"1s"}}`,
		p.url("/api/task_manager/_health"))
	status, resp := call(t, http.MethodPost, p.url("/api/tasks"), body)
	if status != http.StatusCreated {
		t.Fatalf("schedule: %d %s", status, resp)
	}

	var runs int
	eventually(t, 20*time.Second, "two runs of the http task", func() bool {
		task := getTask(t, p, "check")
		if task == nil {
			t.Fatalf("task check vanished")
		}
		var st struct {
			Runs   int  `json:"runs"`
			Status int  `json:"status"`
			OK     bool `json:"ok"`
		}
		_ = json.Unmarshal(task.State, &st)
		runs = st.Runs
		return st.Runs >= 2 && st.Status == http.StatusOK && st.OK
	})

	status, resp = call(t, http.MethodDelete, p.url("/api/tasks/check"), "")
	if status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, resp)
	}
	status, resp = call(t, http.MethodGet, p.url("/api/tasks/check"), "")
	if status != http.StatusNotFound || !bytes.Contains(resp, []byte(`"not_found"`)) {
		t.Fatalf("get after delete: %d %s", status, resp)
	}
	t.Logf("the http task ran %d times before it was removed", runs)
}

func TestE2E_KilledDuringRun(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	p := startDeputy(t, data)

	status, resp := call(t, http.MethodPost, p.url("/api/tasks"),
		`{"id":"long","task_type":"sleep","params":{"duration":"10m"}}`)
	if status != http.StatusCreated {
		t.Fatalf("schedule: %d %s", status, resp)
	}
	var first *apiTask
	eventually(t, 20*time.Second, "the sleep task to run", func() bool {
		first = getTask(t, p, "long")
		return first != nil && first.Status == "running" && first.StartedAt != nil
	})

	// Kill the node mid-run: its claim, with a 5m lease, stays behind.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	p.wait(10 * time.Second)

	restarted := time.Now()
	p2 := startDeputy(t, data)
	var again *apiTask
	eventually(t, 15*time.Second, "the task to run again after the restart", func() bool {
		again = getTask(t, p2, "long")
		return again != nil && again.Status == "running" && again.StartedAt != nil &&
			again.StartedAt.After(*first.StartedAt)
	})
	if again.OwnerID != first.OwnerID {
		t.Fatalf("owner %q after restart, want the persisted node id %q", again.OwnerID, first.OwnerID)
	}
	// The lease is 5m: running again this soon means the restarted node
	// released its own claim.
	t.Logf("the task ran again %s after the restart", time.Since(restarted).Round(time.Millisecond))
}

func TestE2E_InvalidInput(t *testing.T) {
	t.Parallel()
	p := startDeputy(t, t.TempDir())

	tests := []struct {
		name, body, want string
	}{
		{"MalformedJSON", `{"id":"bad-json","task_type":"noop",`, "JSON"},
		{"UnknownType", `{"id":"bad-type","task_type":"nope"}`, `unknown task type "nope"`},
		{"BadInterval", `{"id":"bad-interval","task_type":"noop","schedule":{"interval":"often"}}`,
			"invalid interval"},
		{"RRuleWithoutTZID", `{"id":"bad-rrule","task_type":"noop","schedule":{"rrule":{"freq":"DAILY"}}}`,
			"tzid is required"},
		{"RunAtNotATime", `{"id":"bad-run-at","task_type":"noop","run_at":"tomorrow"}`, "run_at"},
		{"BadHTTPParams", `{"id":"bad-params","task_type":"http","params":{"url":"ftp://x"}}`,
			"must use http or https"},
	}
	t.Run("Requests", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				status, resp := call(t, http.MethodPost, p.url("/api/tasks"), tt.body)
				var e struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if err := json.Unmarshal(resp, &e); err != nil {
					t.Fatalf("decode error %s: %v", resp, err)
				}
				if status != http.StatusBadRequest || e.Error.Code != "invalid" ||
					!strings.Contains(e.Error.Message, tt.want) {
					t.Fatalf("POST %s: %d %s, want 400 invalid with %q", tt.body, status, resp, tt.want)
				}
			})
		}
	})

	status, resp := call(t, http.MethodGet, p.url("/api/tasks"), "")
	if status != http.StatusOK || !bytes.Contains(resp, []byte(`"tasks":[]`)) {
		t.Fatalf("list after invalid input: %d %s, want no tasks", status, resp)
	}
}

// runCLI runs the deputy binary with args and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return runCLIWith(t, stdin, nil, args...)
}

// runCLIEnv is runCLI with extra environment variables.
func runCLIEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	return runCLIWith(t, "", env, args...)
}

func runCLIWith(t *testing.T, stdin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = cleanEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	default:
		t.Fatalf("run deputy %v: %v", args, err)
		return -1, "", ""
	}
}

func TestE2E_CLI(t *testing.T) {
	t.Parallel()
	p := startDeputy(t, t.TempDir())
	server := "--server=http://" + p.addr

	steps := []struct {
		args     []string
		stdin    string
		code     int
		contains string // in stdout, or in stderr for failures
	}{
		{[]string{"version"}, "", 0, "deputy "},
		{[]string{"tasks", "schedule", "--type", "noop", "--interval", "1h", "--id", "cli-1", "--disabled"},
			"", 0, "cli-1"},
		{[]string{"tasks", "schedule", "--type", "noop", "--interval", "1h", "--id", "cli-1"}, "", 4,
			"deputy: "},
		{[]string{"tasks", "schedule", "--type", "nope"}, "", 2, "unknown task type"},
		{[]string{"tasks", "schedule", "--type", "noop", "--interval", "often"}, "", 2, "invalid interval"},
		{[]string{"tasks", "schedule", "--type", "noop", "--params", "{"}, "", 2, "--params is not valid JSON"},
		{[]string{"tasks", "schedule", "--interval", "1s"}, "", 2, "--type is required"},
		{[]string{"tasks", "schedule", "-f", "-"}, `{"id":"cli-file","task_type":"noop","schedule":{"interval":"1h"}}`,
			0, "cli-file"},
		{[]string{"tasks", "get", "cli-1", "--output", "json"}, "", 0, `"id": "cli-1"`},
		{[]string{"tasks", "get", "cli-1"}, "", 0, "every 1h"},
		{[]string{"tasks", "get", "missing"}, "", 3, "deputy: "},
		{[]string{"tasks", "get"}, "", 2, "deputy: "},
		{[]string{"tasks", "list"}, "", 0, "ID"},
		{[]string{"tasks", "list", "--status", "bogus"}, "", 2, "unknown status"},
		{[]string{"tasks", "run-soon", "cli-1"}, "", 0, "cli-1"},
		{[]string{"tasks", "enable", "cli-1"}, "", 0, "cli-1"},
		{[]string{"tasks", "disable", "cli-1", "--output", "json"}, "", 0, `"enabled": false`},
		{[]string{"tasks", "enable", "nope-1"}, "", 3, "nope-1"},
		{[]string{"tasks", "remove", "cli-1", "cli-file"}, "", 0, "removed cli-file"},
		{[]string{"tasks", "remove", "cli-1"}, "", 3, "deputy: remove cli-1"},
		{[]string{"tasks", "remove", "cli-1", "--ignore-missing", "-o", "json"}, "", 0, `"removed"`},
		{[]string{"tasks", "--space", "team", "schedule", "--type", "noop", "--id", "in-team", "--interval", "1h"},
			"", 0, "in-team"},
		{[]string{"tasks", "get", "in-team"}, "", 3, "not found"},
		{[]string{"tasks", "--space", "team", "get", "in-team"}, "", 0, "team"},
		{[]string{"tasks", "--space", "team", "remove", "in-team"}, "", 0, "removed in-team"},
		{[]string{"tasks", "list", "--bogus-flag"}, "", 2, "deputy: "},
		{[]string{"tasks", "list", "--server", "http://127.0.0.1:1"}, "", 6, "cannot reach deputy"},
	}
	for _, s := range steps {
		args := s.args
		if args[0] == "tasks" {
			args = append([]string{"tasks", server}, args[1:]...)
		}
		code, stdout, stderr := runCLI(t, s.stdin, args...)
		out := stdout
		if s.code != 0 {
			out = stderr
			if !strings.HasPrefix(stderr, "deputy: ") {
				t.Fatalf("deputy %v: stderr %q does not start with \"deputy: \"", s.args, stderr)
			}
		}
		if code != s.code || !strings.Contains(out, s.contains) {
			t.Fatalf("deputy %v: exit %d, stdout %q, stderr %q; want exit %d and %q",
				s.args, code, stdout, stderr, s.code, s.contains)
		}
	}

	// --output json is for scripts: the list must parse.
	code, stdout, stderr := runCLI(t, "", "tasks", server, "list", "--output", "json")
	var page struct {
		Tasks []apiTask `json:"tasks"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &page) != nil || len(page.Tasks) != 0 {
		t.Fatalf("list --output json: exit %d, %q %q", code, stdout, stderr)
	}
}

func TestE2E_SIGTERM(t *testing.T) {
	t.Parallel()
	p := startDeputy(t, t.TempDir())
	status, resp := call(t, http.MethodPost, p.url("/api/tasks"),
		`{"id":"tick","task_type":"noop","schedule":{"interval":"1s"}}`)
	if status != http.StatusCreated {
		t.Fatalf("schedule: %d %s", status, resp)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal: %v", err)
	}
	if code := p.wait(40 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0\n%s", code, p.logText())
	}
	if log := p.logText(); !strings.Contains(log, `"msg":"deputy stopped"`) {
		t.Fatalf("no clean stop in the log:\n%s", log)
	}
}

func TestE2E_Examples(t *testing.T) {
	t.Parallel()
	p := startDeputy(t, t.TempDir(), "--examples")

	eventually(t, 20*time.Second, "the example health check to run", func() bool {
		task := getTask(t, p, exampleHealthCheck)
		return task != nil && bytes.Contains(task.State, []byte(`"ok":true`))
	})
	for _, id := range []string{exampleRRule, exampleRetry, exampleTimeout} {
		if getTask(t, p, id) == nil {
			t.Fatalf("example task %s is missing", id)
		}
	}
	eventually(t, 20*time.Second, "the example failure and timeout to be logged", func() bool {
		log := p.logText()
		return strings.Contains(log, `"msg":"task claimed; running"`) &&
			strings.Contains(log, "example failure") && strings.Contains(log, "task run timed out")
	})
}

func TestE2E_Dev(t *testing.T) {
	t.Parallel()
	p := startDeputy(t, t.TempDir(), "--dev")

	var password, esURL string
	eventually(t, 10*time.Second, "the development banner", func() bool {
		for line := range strings.Lines(p.logText()) {
			f := strings.Fields(line)
			switch {
			case len(f) == 4 && f[0] == "user:" && f[2] == "password:":
				password = f[3]
			case len(f) == 3 && f[0] == "Elasticsearch" && f[1] == "stand-in:":
				esURL = f[2]
			}
		}
		return password != "" && esURL != ""
	})
	if !strings.Contains(p.logText(), "DEVELOPMENT MODE") {
		t.Fatalf("the banner does not say it is development mode")
	}

	// The API authenticates against the stand-in.
	if status, resp := call(t, http.MethodGet, p.url("/api/tasks"), ""); status != http.StatusUnauthorized {
		t.Fatalf("anonymous list: %d %s, want 401", status, resp)
	}

	// A task scheduled by the dev user runs with a key granted for it, and
	// presents it to the Elasticsearch stand-in, a credential host.
	body := fmt.Sprintf(`{"id":"whoami","task_type":"http","schedule":{"interval":"1s"},`+
		`"params":{"url":%q,"present_credentials":true}}`, esURL+"/_security/_authenticate")
	req, err := http.NewRequest(http.MethodPost, p.url("/api/tasks"), strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.SetBasicAuth("dev", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("schedule: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !bytes.Contains(b, []byte(`"api_key_id"`)) {
		t.Fatalf("schedule as dev: %d %s, want 201 with an api key id", resp.StatusCode, b)
	}

	code, stdout, stderr := runCLIEnv(t, []string{"DEPUTY_AUTHORIZATION=Basic " +
		base64.StdEncoding.EncodeToString([]byte("dev:"+password))},
		"tasks", "--server=http://"+p.addr, "get", "whoami", "-o", "json")
	if code != 0 {
		t.Fatalf("get as dev: exit %d %s %s", code, stdout, stderr)
	}
	eventually(t, 20*time.Second, "a run authenticated as dev", func() bool {
		_, stdout, _ := runCLIEnv(t, []string{"DEPUTY_AUTHORIZATION=Basic " +
			base64.StdEncoding.EncodeToString([]byte("dev:"+password))},
			"tasks", "--server=http://"+p.addr, "get", "whoami", "-o", "json")
		return strings.Contains(stdout, `"status": 200`) && strings.Contains(stdout, `"ok": true`)
	})
}
