package deputy

import (
	"context"
	"log/slog"
	"time"
)

// pollLoop claims due tasks whenever the poll interval passes, a wakeup
// arrives, or, while due tasks remain, a slot frees up.
func (m *Manager) pollLoop(ctx context.Context) {
	m.log.Debug("poll loop started")
	defer m.log.Debug("poll loop stopped")

	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		backlog  bool // the last claim found work, so more may be due
		failures int
	)
	for {
		var freed <-chan struct{}
		if backlog {
			freed = m.pool.freed
		}
		select {
		case <-ctx.Done():
			return
		case <-m.stopPoll:
			return
		case <-timer.C:
		case <-m.wakeup:
		case <-freed:
		}

		// An in-flight claim finishes even when Stop begins, so that
		// what it claimed is run rather than stranded.
		n, err := m.claim(context.WithoutCancel(ctx))
		wait := m.cfg.PollInterval
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			failures++
			wait = max(wait, backoff(failures))
			m.stats.pollFailed()
			if failures == 1 || failures%20 == 0 {
				m.log.Warn("claim tasks", slog.Any("error", err), slog.Int("failures", failures))
			}
		default:
			if failures > 0 {
				m.log.Info("claiming recovered", slog.Int("failures", failures))
			}
			failures = 0
		}
		backlog = n > 0
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// claim runs one claim cycle and returns how many tasks it started.
func (m *Manager) claim(ctx context.Context) (int, error) {
	if m.pool.free() <= 0 {
		m.stats.polled(0, m.pool.load(), 0, "running_at_capacity")
		return 0, nil
	}
	start := time.Now()
	var (
		unlimited []string
		limited   []*Definition
	)
	m.mu.Lock()
	for _, d := range m.defs {
		if d.MaxConcurrency > 0 {
			limited = append(limited, d)
		} else {
			unlimited = append(unlimited, d.Type)
		}
	}
	m.mu.Unlock()

	total := 0
	for _, d := range limited {
		n, err := m.claimTypes(ctx, []string{d.Type}, m.pool.freeFor(d))
		total += n
		if err != nil {
			return total, err
		}
	}
	if len(unlimited) > 0 {
		n, err := m.claimTypes(ctx, unlimited, m.pool.free())
		total += n
		if err != nil {
			return total, err
		}
	}
	result := "no_tasks_claimed"
	if total > 0 {
		result = "pool_filled"
		if m.pool.free() <= 0 {
			result = "ran_out_of_capacity"
		}
	}
	m.stats.polled(total, m.pool.load(), time.Since(start), result)
	return total, nil
}

func (m *Manager) claimTypes(ctx context.Context, types []string, budget int) (int, error) {
	if budget <= 0 {
		return 0, nil
	}
	tasks, err := m.store.Claim(ctx, ClaimParams{
		Owner: m.cfg.NodeID, Now: m.cfg.Now(), Types: types, Budget: budget, Lease: m.cfg.Lease,
	})
	if err != nil {
		return 0, err
	}
	for _, t := range tasks {
		d := m.def(t.Type)
		if d == nil {
			// Claims are limited to registered types, so this is a store bug.
			m.log.Error("claimed a task of an unregistered type", slog.String("task_id", t.ID),
				slog.String("task_type", t.Type))
			continue
		}
		if !t.Recurring() && t.Attempts > d.MaxAttempts {
			// A one-off task that ran out of attempts (its last run was lost
			// with its node) is removed rather than run again.
			m.pool.completes <- Completion{ID: t.ID, ClaimVersion: t.ClaimVersion, Now: m.cfg.Now(), Delete: true}
			m.stats.finished(t, "failed", 0)
			continue
		}
		m.pool.run(t, d)
	}
	return len(tasks), nil
}

// heartbeatLoop records that this node is alive and releases the tasks of
// nodes that stopped heartbeating.
func (m *Manager) heartbeatLoop(ctx context.Context) {
	ticker := time.NewTicker(m.cfg.HeartbeatInterval)
	defer ticker.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		now := m.cfg.Now()
		err := m.store.Heartbeat(ctx, m.cfg.NodeID, now)
		var n int
		if err == nil {
			n, err = m.store.ReleaseDeadNodes(ctx, now.Add(-m.cfg.NodeTTL), now)
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			failures++
			if failures == 1 || failures%10 == 0 {
				m.log.Warn("heartbeat", slog.Any("error", err), slog.Int("failures", failures))
			}
		default:
			failures = 0
			if n > 0 {
				m.log.Warn("released tasks of nodes that stopped heartbeating", slog.Int("count", n))
				m.wake()
			}
		}
	}
}

// leaseLoop renews the leases of runs in progress, and cancels runs whose
// task was taken or removed elsewhere.
func (m *Manager) leaseLoop(ctx context.Context) {
	ticker := time.NewTicker(max(m.cfg.Lease/3, 100*time.Millisecond))
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		m.renewLeases(ctx)
	}
}

func (m *Manager) renewLeases(ctx context.Context) {
	now := m.cfg.Now()
	var (
		leases []Lease
		runs   []*running
	)
	m.pool.mu.Lock()
	for _, r := range m.pool.runs {
		// A run past its deadline is not renewed: if it ignores its
		// cancellation, its lease runs out and another node retries it.
		if now.Before(r.deadline) {
			leases = append(leases, Lease{ID: r.task.ID, ClaimVersion: r.task.ClaimVersion, Until: now.Add(m.cfg.Lease)})
			runs = append(runs, r)
		}
	}
	m.pool.mu.Unlock()
	if len(leases) == 0 {
		return
	}
	errs, err := m.store.RenewLeases(ctx, leases)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("renew leases", slog.Int("count", len(leases)), slog.Any("error", err))
		}
		return
	}
	for i, e := range errs {
		if e == nil {
			continue
		}
		code := ErrorCode(e)
		if code == ECONFLICT || code == ENOTFOUND {
			m.log.Warn("lease lost: cancelling run", slog.String("task_id", runs[i].task.ID), slog.String("reason", code))
			runs[i].cancel(errLeaseLost)
		}
	}
}

// notifyLoop turns store notifications into claim wakeups.
func (m *Manager) notifyLoop(ctx context.Context, ch <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			m.wake()
		}
	}
}
