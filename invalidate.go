package deputy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// The invalidation task: a recurring deputy task with a fixed id.
const (
	InvalidateTaskType = "task_manager:invalidate_api_keys"
	InvalidateTaskID   = "invalidate_api_keys"
)

// invalidateBatch is how many keys one invalidation call carries, and
// invalidateMaxBatches bounds the work of one run.
const (
	invalidateBatch      = 100
	invalidateMaxBatches = 100
)

func (m *Manager) invalidateDefinition() Definition {
	return Definition{
		Type:        InvalidateTaskType,
		Title:       "Invalidate API keys",
		Description: "Invalidates the API keys of removed and updated tasks after the removal delay.",
		Timeout:     5 * time.Minute,
		Cost:        CostTiny,
		Run:         m.runInvalidate,
	}
}

func (m *Manager) ensureInvalidateTask(ctx context.Context) error {
	_, err := m.EnsureScheduled(ctx, NewTask{
		ID:       InvalidateTaskID,
		Type:     InvalidateTaskType,
		Schedule: &Schedule{Interval: FormatDuration(m.cfg.InvalidateInterval)},
	}, nil)
	if err != nil {
		return fmt.Errorf("schedule api key invalidation: %w", err)
	}
	return nil
}

// invalidateStats is the state an invalidation run leaves.
type invalidateStats struct {
	Invalidated int `json:"invalidated"`
	Failed      int `json:"failed"`
	Unused      int `json:"queued_unused"`
}

// runInvalidate invalidates the queued keys that are due, kind by kind and
// in batches. A key that fails stays queued with its error and a later next
// attempt, and does not hold up the others.
func (m *Manager) runInvalidate(ctx context.Context, r *Run) (Result, error) {
	now := m.cfg.Now()
	var st invalidateStats
	n, err := m.store.QueueUnusedKeys(ctx, now.Add(-m.cfg.UnusedKeyGrace), now)
	if err != nil {
		return Result{}, fmt.Errorf("queue unused api keys: %w", err)
	}
	st.Unused = n
	if n > 0 {
		r.Logger.Warn("queued api keys that no task adopted", slog.Int("count", n))
	}
	for _, svc := range m.cfg.KeyServices {
		if err := m.invalidateKind(ctx, svc, now, &st, r.Logger); err != nil {
			return Result{}, err
		}
	}
	if st.Invalidated > 0 || st.Failed > 0 {
		r.Logger.Info("invalidated api keys", slog.Int("invalidated", st.Invalidated),
			slog.Int("failed", st.Failed))
	}
	state, _ := json.Marshal(st)
	return Result{State: state}, nil
}

func (m *Manager) invalidateKind(ctx context.Context, svc KeyService, now time.Time,
	st *invalidateStats, log *slog.Logger,
) error {
	kind := svc.Kind()
	for range invalidateMaxBatches {
		pending, err := m.store.PendingKeys(ctx, PendingQuery{
			Due: true, Now: now, QueuedBefore: now.Add(-m.cfg.RemovalDelay),
			Kinds: []string{kind}, Limit: invalidateBatch,
		})
		if err != nil {
			return fmt.Errorf("list queued api keys: %w", err)
		}
		if len(pending) == 0 {
			return nil
		}
		pending = m.notHeldLocally(pending)
		if len(pending) == 0 {
			return nil
		}
		keys := make([]InvalidateKey, len(pending))
		for i, p := range pending {
			keys[i] = InvalidateKey{ID: p.ID}
			if len(p.Secret) > 0 && m.cfg.Cipher != nil {
				// Services that revoke a key with itself need the secret;
				// the others invalidate by id, so a failure here only
				// matters to the former, which then report it.
				if plain, err := m.cfg.Cipher.Open(p.Secret, keyAAD(p.Kind, p.ID)); err == nil {
					keys[i].Secret = Secret(plain)
				} else {
					log.Warn("decrypt queued api key", slog.String("key_kind", kind),
						slog.String("api_key_id", p.ID), slog.Any("error", err))
				}
			}
		}
		errs := svc.Invalidate(ctx, keys)
		var done []int64
		for i, p := range pending {
			if errs[i] == nil {
				done = append(done, p.Seq)
				continue
			}
			st.Failed++
			next := now.Add(keyRetryDelay(p.Attempts + 1))
			log.Warn("invalidate api key", slog.String("key_kind", kind), slog.String("api_key_id", p.ID),
				slog.Int("invalidation_attempt", p.Attempts+1), slog.Time("next_attempt_at", next),
				slog.Any("error", errs[i]))
			if err := m.store.KeyInvalidationFailed(ctx, p.Seq, errs[i].Error(), next); err != nil {
				return fmt.Errorf("record failed invalidation: %w", err)
			}
		}
		if len(done) > 0 {
			if err := m.store.KeysInvalidated(ctx, done); err != nil {
				return fmt.Errorf("remove invalidated api keys from the queue: %w", err)
			}
			st.Invalidated += len(done)
		}
		if len(pending) < invalidateBatch {
			return nil
		}
	}
	return nil
}

// keyRetryDelay is the wait before the next attempt to invalidate a key
// that failed attempts times: 30s doubling up to 6h.
func keyRetryDelay(attempts int) time.Duration {
	return min(30*time.Second<<min(max(attempts-1, 0), 10), 6*time.Hour)
}

// notHeldLocally drops keys that a run on this node still holds: the
// store's guard sees only tasks that exist, not runs of removed ones.
func (m *Manager) notHeldLocally(pending []PendingKey) []PendingKey {
	held := map[KeyRef]bool{}
	m.pool.mu.Lock()
	for _, r := range m.pool.runs {
		for _, k := range r.task.Keys {
			held[KeyRef{Kind: k.Kind, ID: k.ID}] = true
		}
	}
	m.pool.mu.Unlock()
	if len(held) == 0 {
		return pending
	}
	out := pending[:0]
	for _, p := range pending {
		if !held[KeyRef{Kind: p.Kind, ID: p.ID}] {
			out = append(out, p)
		}
	}
	return out
}
