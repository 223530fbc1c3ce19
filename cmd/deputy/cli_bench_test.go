package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
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

func TestBench_Usage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"bench", "--store", "postgres"}, {"bench", "extra"},
		{"bench", "--log-level", "loud"}, {"bench", "--mode", "sprint"},
		{"bench", "--store", "mysql"}} {
		var stdout, stderr bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
			lookupEnv: func(string) (string, bool) { return "", false }}
		if code := run(context.Background(), e, args); code != exitUsage {
			t.Fatalf("deputy %v: exit %d, want %d; stderr %q", args, code, exitUsage,
				stderr.String())
		}
	}
}
