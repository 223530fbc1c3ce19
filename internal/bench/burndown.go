package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/builtin"
)

// waitingDelay is how far in the future the waiting tasks are due.
const waitingDelay = 24 * time.Hour

// burndown schedules cfg.N no-op tasks due now, plus the waiting ones, then
// starts the node and times it until the last completion is written.
func burndown(ctx context.Context, cfg Config, n *node, res *Result) error {
	res.N = cfg.N
	start := time.Now()
	if err := insert(ctx, cfg, n.m, cfg.Waiting, time.Now().Add(waitingDelay)); err != nil {
		return fmt.Errorf("schedule waiting tasks: %w", err)
	}
	if err := insert(ctx, cfg, n.m, cfg.N, time.Time{}); err != nil {
		return fmt.Errorf("schedule tasks: %w", err)
	}
	res.InsertSeconds = time.Since(start).Seconds()
	res.InsertTasksPerSec = perSec(int64(cfg.N+cfg.Waiting), res.InsertSeconds)
	fmt.Fprintf(cfg.Progress, "burndown: scheduled %d tasks in %.1fs; starting the node\n",
		cfg.N+cfg.Waiting, res.InsertSeconds)

	stopProgress := progress(cfg, func(elapsed time.Duration) string {
		done, _ := n.counts.count()
		return fmt.Sprintf("burndown: %s %d/%d done, %.0f tasks/s", elapsed.Round(time.Second),
			done, cfg.N, perSec(done, elapsed.Seconds()))
	})
	defer stopProgress()

	t0 := time.Now()
	if err := n.start(ctx, res); err != nil {
		return err
	}
	last, err := n.counts.waitFor(ctx, int64(cfg.N))
	if err != nil {
		return err
	}
	res.ElapsedSeconds = last.Sub(t0).Seconds()
	res.Completed, _ = n.counts.count()
	res.TasksPerSec = perSec(int64(cfg.N), res.ElapsedSeconds)
	return nil
}

// insert schedules count no-op tasks in chunks through the library API, due
// at runAt, or now when runAt is zero.
func insert(ctx context.Context, cfg Config, m *deputy.Manager, count int, runAt time.Time,
) error {
	chunk := make([]deputy.NewTask, 0, cfg.Chunk)
	for done := 0; done < count; done += len(chunk) {
		chunk = chunk[:0]
		for range min(cfg.Chunk, count-done) {
			nt := deputy.NewTask{Type: builtin.NoopType}
			if !runAt.IsZero() {
				nt.RunAt = &runAt
			}
			chunk = append(chunk, nt)
		}
		res, err := m.BulkSchedule(ctx, chunk, nil)
		if err != nil {
			return err
		}
		if len(res.Errors) > 0 {
			return fmt.Errorf("task %s: %w", res.Errors[0].ID, res.Errors[0].Err)
		}
	}
	return nil
}
