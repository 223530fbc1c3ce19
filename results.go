package deputy

import (
	"errors"
	"math/rand/v2"
	"time"
)

// RetryDelay is the default backoff before retrying a one-off task whose
// attempt number attempts failed: 30s after the first attempt, then a
// uniformly random delay up to min(1h, 5m × 2^(attempts-2)).
func RetryDelay(attempts int, r *rand.Rand) time.Duration {
	if attempts <= 1 {
		return 30 * time.Second
	}
	ceiling := time.Hour
	if attempts-2 < 4 { // 5m × 2^4 already exceeds an hour
		ceiling = min(ceiling, 5*time.Minute<<(attempts-2))
	}
	return time.Duration(r.Int64N(int64(ceiling/time.Millisecond)+1)) * time.Millisecond
}

// outcome applies the result rules to a finished run of t at now.
//
// A success removes a one-off task and sends a recurring one back to idle
// at its next occurrence with attempts reset. A failure retries a one-off
// task after the backoff until it runs out of attempts, when it is removed;
// a recurring task that fails runs again at its next occurrence, attempts
// kept. An unrecoverable error removes any task.
func (m *Manager) outcome(t *Task, d *Definition, res Result, runErr error, now time.Time) Completion {
	c := Completion{ID: t.ID, ClaimVersion: t.ClaimVersion, Now: now}
	if runErr == nil {
		return m.successOutcome(c, t, res, now)
	}

	var (
		unrecoverable *UnrecoverableError
		retryable     *RetryableError
	)
	c.Attempts = t.Attempts
	switch {
	case errors.As(runErr, &unrecoverable):
		c.Delete = true
	case t.Recurring():
		c.RunAt = m.nextRun(t, t.Schedule, now)
		if errors.As(runErr, &retryable) && !retryable.At.IsZero() {
			c.RunAt = retryable.At
		}
	case errors.As(runErr, &retryable) && retryable.Never:
		c.Delete = true
	case t.Attempts >= d.MaxAttempts:
		c.Delete = true
	case errors.As(runErr, &retryable) && !retryable.At.IsZero():
		c.RunAt = retryable.At
	default:
		c.RunAt = now.Add(RetryDelay(t.Attempts, m.cfg.Rand))
	}
	return c
}

func (m *Manager) successOutcome(c Completion, t *Task, res Result, now time.Time) Completion {
	if res.Delete {
		c.Delete = true
		return c
	}
	c.State = res.State
	c.Schedule = res.Schedule
	c.Disable = res.Disable
	schedule := t.Schedule
	if res.Schedule != nil {
		schedule = res.Schedule
	}
	switch {
	case !res.RunAt.IsZero():
		c.RunAt = res.RunAt
	case schedule != nil:
		c.RunAt = m.nextRun(t, schedule, now)
	case res.Disable:
		// A disabled one-off task stays, idle, until enabled again.
		c.RunAt = t.RunAt
		c.Attempts = t.Attempts
	default:
		c.Delete = true
	}
	return c
}

// nextRun computes the next occurrence of s from the occurrence that ran.
func (m *Manager) nextRun(t *Task, s *Schedule, now time.Time) time.Time {
	next, err := s.Next(t.RunAt, now)
	if err != nil {
		// The schedule was validated when stored; this is a corrupt row.
		m.log.Error("compute next run; retrying in an hour", "task_id", t.ID, "error", err)
		return now.Add(time.Hour)
	}
	return next
}
