package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// benchBatch is the number of tasks one operation inserts, claims or
// completes.
const benchBatch = 500

func benchDB(b *testing.B) *DB {
	b.Helper()
	return mustOpen(b, newSchema(b), func(c *Config) { c.NoListen = true })
}

func reportTasks(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tasks/s")
}

// insertDue inserts n no-op tasks due now, in batches.
func insertDue(b *testing.B, db *DB, prefix string, n int, now time.Time) {
	b.Helper()
	for i := 0; i < n; i += 5000 {
		tasks := make([]*deputy.Task, 0, 5000)
		for j := i; j < min(n, i+5000); j++ {
			tasks = append(tasks, dueTask(fmt.Sprintf("%s%07d", prefix, j), now))
		}
		mustInsert(b, db, tasks...)
	}
}

func BenchmarkInsert(b *testing.B) {
	db := benchDB(b)
	now := time.Now()
	n := 0
	for b.Loop() {
		tasks := make([]*deputy.Task, benchBatch)
		for i := range tasks {
			tasks[i] = dueTask(fmt.Sprintf("t%08d", n), now.Add(time.Hour))
			n++
		}
		mustInsert(b, db, tasks...)
	}
	reportTasks(b, n)
}

func BenchmarkClaim(b *testing.B) {
	db := benchDB(b)
	now := time.Now()
	insertDue(b, db, "t", b.N*benchBatch, now)

	b.ResetTimer()
	n := 0
	for range b.N {
		tasks, err := db.Claim(context.Background(), deputy.ClaimParams{Owner: "n", Now: now,
			Types: []string{"test:a"}, Budget: 2 * benchBatch, Lease: time.Hour})
		if err != nil || len(tasks) != benchBatch {
			b.Fatalf("Claim = %d tasks, %v; want %d", len(tasks), err, benchBatch)
		}
		n += len(tasks)
	}
	reportTasks(b, n)
}

func BenchmarkComplete(b *testing.B) {
	for _, del := range []bool{true, false} {
		name := map[bool]string{true: "Delete", false: "Reschedule"}[del]
		b.Run(name, func(b *testing.B) {
			db := benchDB(b)
			now := time.Now()
			insertDue(b, db, "t", b.N*benchBatch, now)
			batches := make([][]deputy.Completion, b.N)
			for i := range batches {
				tasks, err := db.Claim(context.Background(), deputy.ClaimParams{Owner: "n",
					Now: now, Types: []string{"test:a"}, Budget: 2 * benchBatch, Lease: time.Hour})
				if err != nil {
					b.Fatalf("Claim: %v", err)
				}
				for _, task := range tasks {
					batches[i] = append(batches[i], deputy.Completion{ID: task.ID,
						ClaimVersion: task.ClaimVersion, Now: now, Delete: del,
						RunAt: now.Add(time.Hour), State: []byte(`{"runs":1}`)})
				}
			}

			b.ResetTimer()
			for _, cs := range batches {
				errs, err := db.Complete(context.Background(), cs)
				if err == nil {
					err = errors.Join(errs...)
				}
				if err != nil {
					b.Fatalf("Complete: %v", err)
				}
			}
			reportTasks(b, b.N*benchBatch)
		})
	}
}

// BenchmarkBurnDown claims and deletes 100,000 due no-op tasks from several
// nodes at once, as a backlog is worked off: one operation is the whole
// backlog.
func BenchmarkBurnDown(b *testing.B) {
	const backlog = 100_000
	for _, nodes := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			schema := newSchema(b)
			dbs := make([]*DB, nodes)
			for i := range dbs {
				dbs[i] = mustOpen(b, schema, func(c *Config) { c.NoListen = true })
			}
			for range b.N {
				b.StopTimer()
				now := time.Now()
				insertDue(b, dbs[0], "t", backlog, now)
				b.StartTimer()

				var wg sync.WaitGroup
				errs := make([]error, nodes)
				for i, db := range dbs {
					wg.Go(func() {
						errs[i] = burnDown(context.Background(), db, fmt.Sprintf("n%d", i), now,
							2*benchBatch, nil)
					})
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					b.Fatalf("burn down: %v", err)
				}
			}
			reportTasks(b, b.N*backlog)
		})
	}
}
