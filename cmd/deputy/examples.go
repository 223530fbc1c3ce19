package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/builtin"
)

// Ids of the example tasks. They are fixed, so that scheduling the examples
// again, on every start, finds them instead of adding copies.
const (
	exampleHealthCheck = "example-health-check"
	exampleRRule       = "example-rrule-every-minute"
	exampleRetry       = "example-fail-then-succeed"
	exampleTimeout     = "example-timeout"
)

// exampleTasks returns the example set for a daemon listening on addr.
//
// The recurring http check targets the daemon's own health endpoint: on
// machines without network access it is the only real endpoint there is,
// and it shows a check that works. The rrule task runs once a minute (freq
// HOURLY with every byminute, in UTC). The fail task fails twice and retries (30s, then up to 5m
// later) before its third attempt succeeds. The sleep task sleeps 10s under
// a 2s timeout, so each attempt times out and is retried until it runs out
// of attempts and is removed.
func exampleTasks(addr string) []deputy.NewTask {
	minutes := make([]int, 60)
	for i := range minutes {
		minutes[i] = i
	}
	health := "http://" + selfAddr(addr) + "/api/task_manager/_health"
	return []deputy.NewTask{
		{
			ID:       exampleHealthCheck,
			Type:     builtin.HTTPType,
			Params:   mustJSON(map[string]any{"url": health}),
			Schedule: &deputy.Schedule{Interval: "10s"},
			Scope:    []string{"examples"},
		},
		{
			ID:   exampleRRule,
			Type: builtin.NoopType,
			Schedule: &deputy.Schedule{RRule: &deputy.RRule{
				Freq: deputy.Hourly, TZID: "UTC", ByMinute: minutes,
			}},
			Scope: []string{"examples"},
		},
		{
			ID:     exampleRetry,
			Type:   builtin.FailType,
			Params: mustJSON(builtin.FailParams{Message: "example failure", SucceedOnAttempt: 3}),
			Scope:  []string{"examples"},
		},
		{
			ID:              exampleTimeout,
			Type:            builtin.SleepType,
			Params:          mustJSON(builtin.SleepParams{Duration: "10s"}),
			TimeoutOverride: "2s",
			Scope:           []string{"examples"},
		},
	}
}

// scheduleExamples ensures the example tasks exist.
func scheduleExamples(ctx context.Context, m *deputy.Manager, addr string, log *slog.Logger) error {
	for _, nt := range exampleTasks(addr) {
		t, err := m.EnsureScheduled(ctx, nt, nil)
		if err != nil {
			return err
		}
		log.Info("example task scheduled",
			slog.String("task_id", t.ID),
			slog.String("task_type", t.Type),
			slog.Time("run_at", t.RunAt))
	}
	return nil
}

// selfAddr returns an address to reach a listener bound to addr from the
// same machine: a wildcard host becomes loopback.
func selfAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("examples: " + err.Error())
	}
	return b
}
