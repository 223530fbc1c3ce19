package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestBench_JSONLine runs a small burn-down on SQLite: progress goes to
// stderr and one JSON line with the figures to stdout.
func TestBench_JSONLine(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		lookupEnv: func(string) (string, bool) { return "", false }}
	args := []string{"bench", "--mode", "burndown", "-n", "200", "--chunk", "50",
		"--data", t.TempDir()}
	if code := run(context.Background(), e, args); code != exitOK {
		t.Fatalf("deputy %v: exit %d; stderr %q", args, code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res struct {
		Mode        string  `json:"mode"`
		N           int     `json:"n"`
		Completed   int     `json:"completed"`
		TasksPerSec float64 `json:"tasks_per_sec"`
	}
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &res) != nil {
		t.Fatalf("stdout = %q, want one JSON line", stdout.String())
	}
	if res.Mode != "burndown" || res.N != 200 || res.Completed != 200 || res.TasksPerSec <= 0 {
		t.Fatalf("result = %+v", res)
	}
	if !strings.Contains(stderr.String(), "burndown:") {
		t.Fatalf("stderr = %q, want progress", stderr.String())
	}
}

// TestBench_Usage gives invalid settings, those of the command line and
// those bench refuses: each exits 2, prints no result and leaves nothing
// in --data.
func TestBench_Usage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--store", "postgres"}, {"extra"},
		{"--log-level", "loud"}, {"--mode", "sprint"}, {"--store", "mysql"},
		{"-n", "0"}, {"-n", "-1"}, {"--rate", "0"}, {"--rate", "NaN"}, {"--duration", "0s"},
		{"--chunk", "0"}, {"--chunk", "20000"}, {"--schedulers", "0"}, {"--capacity", "-1"},
		{"--waiting", "-1"}, {"--poll-interval", "5ms"},
		{"--mode", "steady", "--rate", "0.001", "--duration", "2s"},
		{"--mode", "steady", "--rate", "1e9", "--duration", "2s"}} {
		dir := t.TempDir()
		args = append([]string{"bench", "--data", dir}, args...)
		var stdout, stderr bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
			lookupEnv: func(string) (string, bool) { return "", false }}
		if code := run(context.Background(), e, args); code != exitUsage || stdout.Len() > 0 {
			t.Errorf("deputy %v: exit %d, stdout %q; want %d and none; stderr %q", args, code,
				stdout.String(), exitUsage, stderr.String())
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
			t.Errorf("deputy %v left %v, %v", args, entries, err)
		}
	}
}

// TestBench_Interrupted sends SIGINT to a steady run of the binary: it
// exits 1, says it was interrupted, prints no result and removes its file.
func TestBench_Interrupted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(binary, "bench", "--mode", "steady", "--rate", "100",
		"--duration", "1m", "--data", dir)
	cmd.Env = cleanEnv()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}

	// Interrupt once the run reports progress, then read the rest.
	sc := bufio.NewScanner(stderr)
	var out strings.Builder
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "steady:") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("signal: %v", err)
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != exitError {
		t.Errorf("exit = %v, want %d; stderr %q", err, exitError, out.String())
	}
	if !strings.Contains(out.String(), "deputy: bench: interrupted") || stdout.Len() > 0 {
		t.Errorf("stdout %q, stderr %q; want no result and the interruption",
			stdout.String(), out.String())
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("data dir after the run: %v, %v; want it empty", entries, err)
	}
}

// TestBench_DatabaseURLEnv runs on PostgreSQL with the URL in DATABASE_URL
// alone, and refuses a --schema that exists, leaving it in place.
func TestBench_DatabaseURLEnv(t *testing.T) {
	t.Parallel()
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		t.Skip("TEST_DATABASE_URL is not set")
	}
	lookup := func(k string) (string, bool) {
		if k == "DATABASE_URL" {
			return url, true
		}
		return "", false
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, lookupEnv: lookup}
	args := []string{"bench", "--store", "postgres", "-n", "100", "--chunk", "50"}
	if code := run(context.Background(), e, args); code != exitOK ||
		!strings.Contains(stdout.String(), `"completed":100`) {
		t.Fatalf("deputy %v: exit %d, stdout %q; stderr %q", args, code, stdout.String(),
			stderr.String())
	}

	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	schema := "deputy_bench_cli_" + strings.ToLower(rand.Text())
	if _, err := conn.Exec(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema) }()
	stdout.Reset()
	stderr.Reset()
	args = []string{"bench", "--store", "postgres", "--schema", schema, "-n", "10"}
	if code := run(context.Background(), e, args); code != exitUsage || stdout.Len() > 0 ||
		!strings.Contains(stderr.String(), "exists") {
		t.Fatalf("deputy %v: exit %d, stdout %q, stderr %q; want %d and a refusal", args,
			code, stdout.String(), stderr.String(), exitUsage)
	}
	var exists bool
	err = conn.QueryRow(t.Context(),
		"SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists)
	if err != nil || !exists {
		t.Fatalf("schema %s after the refusal: exists %v, %v", schema, exists, err)
	}
}
