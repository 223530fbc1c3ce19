package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/builtin"
)

// steady starts the node, then schedules no-op tasks one per Schedule
// call at cfg.Rate for cfg.Duration, and waits for them to complete. Each
// run records the time from its task's RunAt, taken when Schedule was
// called, to its start: the latency includes the insert.
func steady(ctx context.Context, cfg Config, n *node, res *Result) error {
	res.Rate, res.Duration, res.Schedulers = cfg.Rate, cfg.Duration.String(), cfg.Schedulers
	start := time.Now()
	if err := insert(ctx, cfg, n.m, cfg.Waiting, time.Now().Add(waitingDelay)); err != nil {
		return fmt.Errorf("schedule waiting tasks: %w", err)
	}
	res.InsertSeconds = time.Since(start).Seconds()
	if cfg.Waiting > 0 {
		res.InsertTasksPerSec = perSec(int64(cfg.Waiting), res.InsertSeconds)
	}
	n.rec.enable()
	if err := n.start(ctx, res); err != nil {
		return err
	}

	var scheduled atomic.Int64
	stopProgress := progress(cfg, func(elapsed time.Duration) string {
		done, _ := n.counts.count()
		s := scheduled.Load()
		return fmt.Sprintf("steady: %s scheduled %d (%.0f/s), done %d, schedule-to-start %s",
			elapsed.Round(time.Second), s, perSec(s, elapsed.Seconds()), done, n.rec.recent())
	})
	defer stopProgress()

	t0 := time.Now()
	calls := newRecorder()
	calls.enable()
	if err := offer(ctx, cfg, n.m, t0, &scheduled, calls); err != nil {
		return err
	}
	res.Scheduled = scheduled.Load()
	res.ScheduledPerSec = perSec(res.Scheduled, time.Since(t0).Seconds())
	if res.Scheduled == 0 {
		return errors.New("no task was scheduled")
	}

	dctx, cancel := context.WithTimeout(ctx, cfg.DrainTimeout)
	defer cancel()
	last, err := n.counts.waitFor(dctx, res.Scheduled)
	if err != nil {
		return err
	}
	res.ElapsedSeconds = last.Sub(t0).Seconds()
	res.Completed, _ = n.counts.count()
	res.TasksPerSec = perSec(res.Completed, res.ElapsedSeconds)
	res.ScheduleCall = calls.summary()
	res.Latency = n.rec.summary()
	return nil
}

// offer calls Schedule at the offered rate from t0 for cfg.Duration. The
// calls are spread over cfg.Schedulers goroutines; when all are busy, the
// next call waits for one, and the calls that fell behind go out at once.
// Calls stop being offered at the end of cfg.Duration, also those that
// fell behind: the count and rate scheduled tell how far.
func offer(ctx context.Context, cfg Config, m *deputy.Manager, t0 time.Time,
	scheduled *atomic.Int64, calls *recorder,
) error {
	total := cfg.steadyTasks()
	jobs := make(chan struct{}, cfg.Schedulers)
	g, gctx := errgroup.WithContext(ctx)
	for range cfg.Schedulers {
		g.Go(func() error {
			for range jobs {
				begin := time.Now()
				_, err := m.Schedule(gctx, deputy.NewTask{Type: builtin.NoopType}, nil)
				if err != nil {
					return fmt.Errorf("schedule: %w", err)
				}
				calls.add(time.Since(begin))
				scheduled.Add(1)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(jobs)
		return dispatch(gctx, cfg, t0, total, jobs)
	})
	return g.Wait()
}

// dispatch sends the total calls to jobs, each when it is due, until
// t0+cfg.Duration. It returns ctx's error when ctx ends first.
func dispatch(ctx context.Context, cfg Config, t0 time.Time, total int64,
	jobs chan<- struct{},
) error {
	end := time.NewTimer(time.Until(t0.Add(cfg.Duration)))
	defer end.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for k := range total {
		due := t0.Add(time.Duration(float64(k) / cfg.Rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-end.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case jobs <- struct{}{}:
		case <-end.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
