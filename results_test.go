package deputy

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func newTestManager() *Manager {
	cfg := Config{Rand: rand.New(rand.NewPCG(1, 2)), Now: func() time.Time { return base }}.withDefaults()
	return &Manager{cfg: cfg, log: cfg.Logger}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(7, 7))
	if d := RetryDelay(1, r); d != 30*time.Second {
		t.Fatalf("RetryDelay(1) = %v; want 30s", d)
	}
	for attempts, ceiling := range map[int]time.Duration{
		2: 5 * time.Minute, 3: 10 * time.Minute, 4: 20 * time.Minute, 5: 40 * time.Minute,
		6: time.Hour, 30: time.Hour, 1000: time.Hour,
	} {
		var top time.Duration
		for range 500 {
			d := RetryDelay(attempts, r)
			if d < 0 || d > ceiling {
				t.Fatalf("RetryDelay(%d) = %v; want within [0, %v]", attempts, d, ceiling)
			}
			top = max(top, d)
		}
		if top < ceiling/2 {
			t.Fatalf("RetryDelay(%d) never exceeded %v in 500 draws; want spread up to %v", attempts, top, ceiling)
		}
	}
}

func TestManager_outcome(t *testing.T) {
	t.Parallel()
	m := newTestManager()
	def := &Definition{Type: "t", MaxAttempts: 3}
	oneOff := func(attempts int) *Task {
		return &Task{ID: "a", Type: "t", Attempts: attempts, RunAt: base.Add(-time.Second), ClaimVersion: 9}
	}
	recurring := func(attempts int) *Task {
		t := oneOff(attempts)
		t.RunAt = base
		t.Schedule = &Schedule{Interval: "1m"}
		return t
	}
	now := base.Add(time.Second)
	boom := errors.New("boom")
	state := json.RawMessage(`{"n":1}`)

	for _, tc := range []struct {
		name string
		task *Task
		res  Result
		err  error
		want Completion
	}{
		{"OneOffSuccessRemoves", oneOff(1), Result{}, nil, Completion{Delete: true}},
		{"RecurringSuccessNextRun", recurring(2), Result{State: state}, nil,
			Completion{RunAt: base.Add(time.Minute), Attempts: 0, State: state}},
		{"ResultRunAtWins", oneOff(1), Result{RunAt: base.Add(time.Hour)}, nil,
			Completion{RunAt: base.Add(time.Hour)}},
		{"ResultScheduleReplaces", recurring(1), Result{Schedule: &Schedule{Interval: "1h"}}, nil,
			Completion{RunAt: base.Add(time.Hour), Schedule: &Schedule{Interval: "1h"}}},
		{"ResultDelete", recurring(1), Result{Delete: true}, nil, Completion{Delete: true}},
		{"ResultDisableRecurring", recurring(1), Result{Disable: true}, nil,
			Completion{Disable: true, RunAt: base.Add(time.Minute)}},
		{"ResultDisableOneOffKeeps", oneOff(1), Result{Disable: true}, nil,
			Completion{Disable: true, RunAt: base.Add(-time.Second), Attempts: 1}},
		{"FirstFailureRetriesIn30s", oneOff(1), Result{}, boom,
			Completion{RunAt: now.Add(30 * time.Second), Attempts: 1}},
		{"LastAttemptRemoves", oneOff(3), Result{}, boom, Completion{Delete: true, Attempts: 3}},
		{"RetryAtDate", oneOff(2), Result{}, RetryAt(boom, base.Add(time.Hour)),
			Completion{RunAt: base.Add(time.Hour), Attempts: 2}},
		{"RetryNever", oneOff(1), Result{}, &RetryableError{Err: boom, Never: true},
			Completion{Delete: true, Attempts: 1}},
		{"RecurringFailureNextRun", recurring(5), Result{}, boom,
			Completion{RunAt: base.Add(time.Minute), Attempts: 5}},
		{"UnrecoverableRemovesRecurring", recurring(1), Result{}, Unrecoverable(boom),
			Completion{Delete: true, Attempts: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := m.outcome(tc.task, def, tc.res, tc.err, now)
			tc.want.ID, tc.want.ClaimVersion, tc.want.Now = "a", 9, now
			if got.Delete != tc.want.Delete || !got.RunAt.Equal(tc.want.RunAt) || got.Attempts != tc.want.Attempts ||
				got.Disable != tc.want.Disable || string(got.State) != string(tc.want.State) ||
				!got.Schedule.Equal(tc.want.Schedule) || got.ClaimVersion != 9 || got.ID != "a" {
				t.Fatalf("outcome = %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestManager_outcomeRetryJitter(t *testing.T) {
	t.Parallel()
	m := newTestManager()
	task := &Task{ID: "a", Type: "t", Attempts: 2}
	c := m.outcome(task, &Definition{MaxAttempts: 5}, Result{}, errors.New("x"), base)
	if c.Delete || c.RunAt.Before(base) || c.RunAt.After(base.Add(5*time.Minute)) {
		t.Fatalf("second failure retries at %v; want within 5m of %v", c.RunAt, base)
	}
}
