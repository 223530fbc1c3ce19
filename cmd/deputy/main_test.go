package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/client"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want int
	}{
		{usagef("bad flag"), exitUsage},
		{deputy.Errorf(deputy.EINVALID, "bad"), exitUsage},
		{fmt.Errorf("get x: %w", deputy.Errorf(deputy.ENOTFOUND, "missing")), exitNotFound},
		{&client.Error{Status: 409, Err: deputy.Errorf(deputy.ECONFLICT, "taken")}, exitConflict},
		{deputy.Errorf(deputy.EUNAUTHORIZED, "who"), exitUnauthorized},
		{deputy.Errorf(deputy.EFORBIDDEN, "no"), exitUnauthorized},
		{deputy.Errorf(deputy.EUNAVAILABLE, "down"), exitUnavailable},
		{errors.New("boom"), exitError},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Fatalf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("plain"), "plain"},
		{fmt.Errorf("remove x: %w", &client.Error{Status: 404,
			Err: deputy.Errorf(deputy.ENOTFOUND, `task "x" not found`)}), `remove x: task "x" not found`},
		{fmt.Errorf("%w: dial refused", deputy.Errorf(deputy.EUNAVAILABLE, "cannot reach deputy")),
			"cannot reach deputy: dial refused"},
	}
	for _, tt := range tests {
		if got := errorText(tt.err); got != tt.want {
			t.Fatalf("errorText(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestRun_Usage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"nosuch"}, {"tasks", "nosuch"}, {"serve", "--bogus"},
		{"version", "extra"}, {"serve", "--capacity", "x"},
		{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--node-ttl", "5s",
			"--heartbeat-interval", "10s"}} {
		var stdout, stderr bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
			lookupEnv: func(string) (string, bool) { return "", false }}
		if code := run(context.Background(), e, args); code != exitUsage {
			t.Fatalf("deputy %v: exit %d, want %d; stderr %q", args, code, exitUsage, stderr.String())
		}
		if !strings.HasPrefix(stderr.String(), "deputy: ") {
			t.Fatalf("deputy %v: stderr %q", args, stderr.String())
		}
	}
}

func TestScheduleText(t *testing.T) {
	t.Parallel()
	minutes := make([]int, 60)
	for i := range minutes {
		minutes[i] = i
	}
	tests := []struct {
		s    *deputy.Schedule
		want string
	}{
		{nil, "once"},
		{&deputy.Schedule{Interval: "10s"}, "every 10s"},
		{&deputy.Schedule{RRule: &deputy.RRule{Freq: "DAILY", Interval: 2, TZID: "Europe/Paris",
			ByHour: []int{9}, ByMinute: []int{0}, ByWeekday: []string{"MO", "FR"}}},
			"rrule DAILY/2 Europe/Paris byhour=9 byminute=0 byweekday=MO,FR"},
		{&deputy.Schedule{RRule: &deputy.RRule{Freq: "HOURLY", TZID: "UTC", ByMinute: minutes}},
			"rrule HOURLY UTC byminute=0,1,2,3,…(60)"},
	}
	for _, tt := range tests {
		if got := scheduleText(tt.s); got != tt.want {
			t.Fatalf("scheduleText = %q, want %q", got, tt.want)
		}
	}
}
