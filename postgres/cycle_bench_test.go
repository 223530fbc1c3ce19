package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// BenchmarkCycle claims and completes (deletes) due tasks in cycles of a
// default node's size, a budget of 20 tiny tasks, as a node burning down a
// backlog does: Separate completes each batch on its own and then claims,
// Combined completes the previous batch in the claim's transaction. An op
// is one task. On a local server it also reports the server's CPU time per
// task, which other load on the machine inflates less than the wall time.
func BenchmarkCycle(b *testing.B) {
	for _, combined := range []bool{false, true} {
		name := map[bool]string{false: "Separate", true: "Combined"}[combined]
		b.Run(name, func(b *testing.B) {
			benchCycle(b, 20, combined)
		})
	}
}

func benchCycle(b *testing.B, budget int, combined bool) {
	db := benchDB(b)
	now := time.Now()
	insertDue(b, db, "t", b.N, now)
	cpu := newServerCPU(b, db)
	p := deputy.ClaimParams{Owner: "n", Now: now, Types: []string{"test:a"},
		Budget: 2 * budget, Lease: time.Hour}

	b.ResetTimer()
	var cs []deputy.Completion
	for n := 0; n < b.N; {
		var (
			tasks []*deputy.Task
			errs  []error
			err   error
		)
		if combined {
			errs, tasks, err = db.CompleteAndClaim(b.Context(), cs, p)
		} else {
			if len(cs) > 0 {
				errs, err = db.Complete(b.Context(), cs)
			}
			if err == nil {
				tasks, err = db.Claim(b.Context(), p)
			}
		}
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil || len(tasks) == 0 {
			b.Fatalf("cycle = %d tasks, %v after %d of %d", len(tasks), err, n, b.N)
		}
		cs = cs[:0]
		for _, t := range tasks {
			cs = append(cs, deputy.Completion{ID: t.ID, ClaimVersion: t.ClaimVersion, Now: now,
				Delete: true})
		}
		n += len(tasks)
	}
	if _, err := db.Complete(b.Context(), cs); err != nil {
		b.Fatalf("Complete: %v", err)
	}
	b.StopTimer()
	reportTasks(b, b.N)
	cpu.report(b, b.N)
}

// serverCPU measures the CPU time of a store's server backends, when the
// server runs on this machine and its processes can be read.
type serverCPU struct {
	pids  []int
	start time.Duration
}

// newServerCPU opens every connection of db's pool and notes their
// backends' CPU time.
func newServerCPU(tb testing.TB, db *DB) *serverCPU {
	tb.Helper()
	ctx := context.Background()
	var pids []int
	conns := db.pool.Config().MaxConns
	for range conns {
		c, err := db.pool.Acquire(ctx)
		if err != nil {
			tb.Fatalf("acquire: %v", err)
		}
		defer c.Release()
		var pid int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			tb.Fatalf("backend pid: %v", err)
		}
		pids = append(pids, pid)
	}
	s := &serverCPU{pids: pids}
	s.start, _ = s.total()
	return s
}

// total returns the CPU time of the backends so far.
func (s *serverCPU) total() (time.Duration, bool) {
	var ticks int64
	for _, pid := range s.pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, false
		}
		// Fields after the command, which is in parentheses: utime is the
		// 12th and stime the 13th.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	// NB: Linux reports these in clock ticks of 1/100s.
	return time.Duration(ticks) * 10 * time.Millisecond, true
}

// report reports the server's CPU time per task.
func (s *serverCPU) report(b *testing.B, tasks int) {
	end, ok := s.total()
	if !ok || tasks == 0 {
		return
	}
	b.ReportMetric(float64((end-s.start).Microseconds())/float64(tasks), "server-cpu-µs/task")
}

// BenchmarkInsertOne inserts tasks one per call, as Schedule does; an op is
// one task.
func BenchmarkInsertOne(b *testing.B) {
	db := benchDB(b)
	now := time.Now()
	n := 0
	for b.Loop() {
		mustInsert(b, db, dueTask(fmt.Sprintf("t%08d", n), now.Add(time.Hour)))
		n++
	}
	reportTasks(b, n)
}
