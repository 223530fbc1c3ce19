package e2e

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// nodeConfig describes one `deputy serve` process.
type nodeConfig struct {
	id     string
	dbURL  string
	logDir string // where the node's log file goes
	// migrate lets serve apply the migrations; otherwise it runs with
	// --no-migrate.
	migrate bool
}

// node is one running `deputy serve` process.
type node struct {
	id   string
	addr string // host:port of its API
	cmd  *exec.Cmd
	log  *nodeLog

	done chan struct{} // closed when the process has exited
	err  error         // of Wait, once done is closed
}

// startNode starts a node and waits until its API listens.
func startNode(cfg nodeConfig) (*node, error) {
	data, err := os.MkdirTemp("", "deputy-e2e-data-")
	if err != nil {
		return nil, err
	}
	args := []string{"serve",
		"--listen", "127.0.0.1:0",
		"--data", data,
		"--node-id", cfg.id,
		"--store", "postgres",
		"--poll-interval", pollInterval.String(),
		"--heartbeat-interval", heartbeat.String(),
		"--node-ttl", nodeTTL.String(),
		"--capacity", fmt.Sprint(capacity),
		"--log-format", "json",
		"--log-level", cmp.Or(os.Getenv("E2E_LOG_LEVEL"), "info"),
	}
	if !cfg.migrate {
		args = append(args, "--no-migrate")
	}
	l, err := newNodeLog(filepath.Join(cfg.logDir, cfg.id+".log"))
	if err != nil {
		os.RemoveAll(data)
		return nil, err
	}
	n := &node{id: cfg.id, cmd: exec.Command(binary, args...), log: l, done: make(chan struct{})}
	n.cmd.Env = nodeEnv(cfg.dbURL)
	pr, pw := io.Pipe()
	n.cmd.Stdout, n.cmd.Stderr = pw, pw
	if err := n.cmd.Start(); err != nil {
		l.close()
		os.RemoveAll(data)
		return nil, fmt.Errorf("start %s: %w", cfg.id, err)
	}
	copied := make(chan struct{})
	go func() {
		l.copy(pr)
		close(copied)
	}()
	go func() {
		n.err = n.cmd.Wait()
		pw.Close()
		<-copied
		l.close()
		os.RemoveAll(data)
		close(n.done)
	}()

	select {
	case n.addr = <-l.listening:
		return n, nil
	case <-n.done:
		return nil, fmt.Errorf("%s exited before listening: %v\n%s", cfg.id, n.err, l.tail(30))
	case <-time.After(60 * time.Second):
		n.kill()
		return nil, fmt.Errorf("%s did not listen within 60s\n%s", cfg.id, l.tail(30))
	}
}

// nodeEnv is the test's environment without deputy's own variables, so
// that a developer's settings cannot change the tests, plus the database.
func nodeEnv(dbURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DEPUTY_") || strings.HasPrefix(kv, "DATABASE_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "DATABASE_URL="+dbURL)
}

// migrate runs `deputy migrate` on dbURL.
func migrate(dbURL string) error {
	cmd := exec.Command(binary, "migrate", "--log-format", "json")
	cmd.Env = nodeEnv(dbURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("deputy migrate: %w\n%s", err, out)
	}
	return nil
}

// alive reports whether the process still runs.
func (n *node) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// kill kills the process with SIGKILL and waits for it to exit.
func (n *node) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// stop asks the process to shut down with SIGTERM and waits up to timeout
// for it to exit, killing it then. It returns why the exit was not clean.
func (n *node) stop(timeout time.Duration) error {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		if n.err != nil {
			return fmt.Errorf("%s exited after SIGTERM: %w", n.id, n.err)
		}
		return nil
	case <-time.After(timeout):
		n.kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM", n.id, timeout)
	}
}

// nodeLog keeps a node's output lines and writes them to a file. It learns
// the API address from the "deputy listening" line.
type nodeLog struct {
	listening chan string // receives the address once

	mu    sync.Mutex
	f     *os.File // guarded by mu
	lines []string // guarded by mu
	seen  bool     // the listening line was seen, guarded by mu
}

// newNodeLog returns a log writing to a new file at path.
func newNodeLog(path string) (*nodeLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &nodeLog{f: f, listening: make(chan string, 1)}, nil
}

// copy reads the process's output until it ends.
func (l *nodeLog) copy(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			l.add(strings.TrimRight(line, "\n"))
		}
		if err != nil {
			return
		}
	}
}

// add keeps a line, and hands on the address of the listening line.
func (l *nodeLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if l.f != nil {
		_, _ = l.f.WriteString(line + "\n")
	}
	if l.seen {
		return
	}
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "deputy listening" {
		l.seen = true
		l.listening <- rec.Addr
	}
}

// close closes the file; the lines stay.
func (l *nodeLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// tail returns the last n lines.
func (l *nodeLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(len(l.lines)-n, 0):], "\n")
}

// crashRE matches what a Go program prints when it panics, crashes or
// races, and what the manager logs when a task panics.
var crashRE = regexp.MustCompile(`(?i)panic|^fatal error|WARNING: DATA RACE`)

// crashes returns the lines that tell of a panic, a crash or a data race.
func (l *nodeLog) crashes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if crashRE.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

// levelCounts counts the structured log lines at WARN and ERROR by message,
// such as "WARN claim tasks".
func (l *nodeLog) levelCounts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	counts := map[string]int{}
	for _, line := range l.lines {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec.Level == "WARN" || rec.Level == "ERROR" {
			counts[rec.Level+" "+rec.Msg]++
		}
	}
	return counts
}
