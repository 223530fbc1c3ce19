package sqlite_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/sqlite"
)

// Batch sizes of the benchmarks: a node with capacity 50 claims up to 50
// normal tasks per cycle and completes runs in batches.
const (
	benchInsertBatch = 1000
	benchClaimBatch  = 50
)

var benchBase = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// benchTasks returns n due no-op tasks.
func benchTasks(n int) []*deputy.Task {
	tasks := make([]*deputy.Task, n)
	for i := range tasks {
		runAt := benchBase.Add(time.Duration(i) * time.Microsecond)
		tasks[i] = &deputy.Task{
			ID:                fmt.Sprintf("task-%08d", i),
			Type:              "noop",
			Params:            []byte(`{}`),
			State:             []byte(`{}`),
			RunAt:             runAt,
			ScheduledAt:       runAt,
			Status:            deputy.StatusIdle,
			Enabled:           true,
			SpaceID:           deputy.DefaultSpace,
			EffectivePriority: deputy.PriorityNormal,
			EffectiveCost:     deputy.CostNormal,
		}
	}
	return tasks
}

// mustInsertAll inserts tasks in batches.
func mustInsertAll(tb testing.TB, db *sqlite.DB, tasks []*deputy.Task) {
	tb.Helper()
	for i := 0; i < len(tasks); i += benchInsertBatch {
		batch := tasks[i:min(i+benchInsertBatch, len(tasks))]
		errs, err := db.Insert(tb.Context(), batch)
		if err != nil {
			tb.Fatalf("Insert: %v", err)
		}
		for _, err := range errs {
			if err != nil {
				tb.Fatalf("Insert: %v", err)
			}
		}
	}
}

// claimBatch claims up to benchClaimBatch normal tasks.
func claimBatch(tb testing.TB, db *sqlite.DB, now time.Time) []*deputy.Task {
	tb.Helper()
	tasks, err := db.Claim(tb.Context(), deputy.ClaimParams{
		Owner: "bench", Now: now, Types: []string{"noop"}, Budget: 2 * benchClaimBatch,
		Lease: time.Minute,
	})
	if err != nil {
		tb.Fatalf("Claim: %v", err)
	}
	return tasks
}

// mustComplete completes runs, deleting the tasks or rescheduling them.
func mustComplete(tb testing.TB, db *sqlite.DB, tasks []*deputy.Task, del bool) {
	tb.Helper()
	cs := make([]deputy.Completion, len(tasks))
	for i, t := range tasks {
		cs[i] = deputy.Completion{ID: t.ID, ClaimVersion: t.ClaimVersion, Now: benchBase,
			Delete: del, RunAt: benchBase.Add(time.Hour)}
	}
	errs, err := db.Complete(tb.Context(), cs)
	if err != nil {
		tb.Fatalf("Complete: %v", err)
	}
	for _, err := range errs {
		if err != nil {
			tb.Fatalf("Complete: %v", err)
		}
	}
}

// meter measures a benchmark's rate in wall time and in the process's CPU
// time, which other processes on a busy machine do not inflate.
type meter struct {
	b   *testing.B
	cpu time.Duration
}

// start resets the benchmark timer and starts measuring.
func start(b *testing.B) *meter {
	b.ResetTimer()
	return &meter{b: b, cpu: cpuTime()}
}

// stop reports the tasks handled per second and the CPU time per task.
func (m *meter) stop() {
	m.b.StopTimer()
	n := float64(m.b.N)
	m.b.ReportMetric(n/m.b.Elapsed().Seconds(), "tasks/s")
	if cpu := cpuTime() - m.cpu; cpu > 0 {
		m.b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/task")
	}
}

// BenchmarkInsert inserts tasks in batches of 1000; an op is one task.
func BenchmarkInsert(b *testing.B) {
	db := MustOpen(b)
	tasks := benchTasks(b.N)
	m := start(b)
	mustInsertAll(b, db, tasks)
	m.stop()
}

// BenchmarkClaim claims due tasks 50 at a time; an op is one task.
func BenchmarkClaim(b *testing.B) {
	db := MustOpen(b)
	mustInsertAll(b, db, benchTasks(b.N))
	now := benchBase.Add(time.Hour)
	m := start(b)
	for n := 0; n < b.N; {
		claimed := claimBatch(b, db, now)
		if len(claimed) == 0 {
			b.Fatalf("claimed %d of %d tasks", n, b.N)
		}
		n += len(claimed)
	}
	m.stop()
}

// BenchmarkComplete completes claimed runs 50 at a time, rescheduling the
// tasks; an op is one task.
func BenchmarkComplete(b *testing.B) {
	db := MustOpen(b)
	mustInsertAll(b, db, benchTasks(b.N))
	now := benchBase.Add(time.Hour)
	var batches [][]*deputy.Task
	for n := 0; n < b.N; {
		claimed := claimBatch(b, db, now)
		batches = append(batches, claimed)
		n += len(claimed)
	}
	m := start(b)
	for _, batch := range batches {
		mustComplete(b, db, batch, false)
	}
	m.stop()
}

// BenchmarkBurnDown claims and completes (deletes) due one-off tasks 50 at
// a time, as a node running no-op tasks does; an op is one task.
func BenchmarkBurnDown(b *testing.B) {
	db := MustOpen(b)
	mustInsertAll(b, db, benchTasks(b.N))
	now := benchBase.Add(time.Hour)
	m := start(b)
	for n := 0; n < b.N; {
		claimed := claimBatch(b, db, now)
		if len(claimed) == 0 {
			b.Fatalf("claimed %d of %d tasks", n, b.N)
		}
		mustComplete(b, db, claimed, true)
		n += len(claimed)
	}
	m.stop()
}
