package builtin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/deputyhq/deputy"
)

// Task types of the definitions in this file.
const (
	NoopType  = "noop"
	FailType  = "fail"
	SleepType = "sleep"
)

// MaxSleep bounds the duration param of a [Sleep] task.
const MaxSleep = 24 * time.Hour

// Noop returns the definition of the "noop" task type: a run does nothing
// and keeps the task's state. Its cost is tiny.
func Noop() deputy.Definition {
	return deputy.Definition{
		Type:        NoopType,
		Title:       "No operation",
		Description: "Does nothing; useful to exercise scheduling.",
		Cost:        deputy.CostTiny,
		ValidateParams: func(raw json.RawMessage) error {
			return decodeParams(raw, &struct{}{})
		},
		Run: func(context.Context, *deputy.Run) (deputy.Result, error) {
			return deputy.Result{}, nil
		},
	}
}

// FailParams are the params of a [Fail] task.
type FailParams struct {
	// Message is the error a failing run returns. Defaults to "task failed
	// on purpose".
	Message string `json:"message,omitempty"`
	// SucceedOnAttempt makes the run of that attempt (1 is the first)
	// succeed, so that a task shows retries that end well. Zero means every
	// attempt fails.
	SucceedOnAttempt int `json:"succeed_on_attempt,omitempty"`
	// Unrecoverable fails with an error that is never retried: the task is
	// removed after its first run.
	Unrecoverable bool `json:"unrecoverable,omitempty"`
}

// Fail returns the definition of the "fail" task type: a run fails, and so
// retries by the usual rules, until the attempt named by
// [FailParams.SucceedOnAttempt]. Its cost is tiny.
func Fail() deputy.Definition {
	return deputy.Definition{
		Type:        FailType,
		Title:       "Fail on purpose",
		Description: "Fails until a given attempt; useful to watch retries.",
		Cost:        deputy.CostTiny,
		ValidateParams: func(raw json.RawMessage) error {
			_, err := parseFailParams(raw)
			return err
		},
		Run: func(_ context.Context, r *deputy.Run) (deputy.Result, error) {
			p, err := parseFailParams(r.Task.Params)
			if err != nil {
				return deputy.Result{}, deputy.Unrecoverable(fmt.Errorf("fail task: %w", err))
			}
			if p.SucceedOnAttempt > 0 && r.Task.Attempts >= p.SucceedOnAttempt {
				return deputy.Result{}, nil
			}
			err = errors.New(cmp.Or(p.Message, "task failed on purpose"))
			if p.Unrecoverable {
				return deputy.Result{}, deputy.Unrecoverable(err)
			}
			return deputy.Result{}, err
		},
	}
}

func parseFailParams(raw json.RawMessage) (*FailParams, error) {
	var p FailParams
	if err := decodeParams(raw, &p); err != nil {
		return nil, err
	}
	if p.SucceedOnAttempt < 0 {
		return nil, errors.New("succeed_on_attempt must not be negative")
	}
	return &p, nil
}

// SleepParams are the params of a [Sleep] task.
type SleepParams struct {
	// Duration is how long a run waits, such as "10s". Required; at most
	// 24h.
	Duration string `json:"duration"`
}

// Sleep returns the definition of the "sleep" task type: a run waits for
// its duration param, or until its context is cancelled, when it returns
// the cancellation as its error. With a duration longer than its timeout
// (the definition's 5m default, or a one-off task's timeout_override) it
// shows a run that times out.
func Sleep() deputy.Definition {
	return deputy.Definition{
		Type:        SleepType,
		Title:       "Sleep",
		Description: "Waits for a duration; useful to watch long runs and timeouts.",
		Cost:        deputy.CostTiny,
		ValidateParams: func(raw json.RawMessage) error {
			_, err := parseSleepParams(raw)
			return err
		},
		Run: func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
			d, err := parseSleepParams(r.Task.Params)
			if err != nil {
				return deputy.Result{}, deputy.Unrecoverable(fmt.Errorf("sleep task: %w", err))
			}
			logger(r).Debug("sleeping", slog.Duration("duration", d))
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return deputy.Result{}, nil
			case <-ctx.Done():
				return deputy.Result{}, fmt.Errorf("sleep task: interrupted: %w", context.Cause(ctx))
			}
		},
	}
}

func parseSleepParams(raw json.RawMessage) (time.Duration, error) {
	var p SleepParams
	if err := decodeParams(raw, &p); err != nil {
		return 0, err
	}
	if p.Duration == "" {
		return 0, errors.New("duration is required")
	}
	d, err := deputy.ParseDuration(p.Duration)
	if err != nil {
		return 0, fmt.Errorf("duration: %w", err)
	}
	if d > MaxSleep {
		return 0, fmt.Errorf("duration %s exceeds %s", p.Duration, deputy.FormatDuration(MaxSleep))
	}
	return d, nil
}

// logger returns the run's logger, or one that discards.
func logger(r *deputy.Run) *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}
