package deputy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// gauge tracks how many runs are in progress, in total cost and per type,
// and the most there ever were.
type gauge struct {
	mu        sync.Mutex
	units     int
	byType    map[string]int
	maxUnits  int
	maxByType map[string]int
	finished  int
}

func newGauge() *gauge { return &gauge{byType: map[string]int{}, maxByType: map[string]int{}} }

// definition returns a definition of cost c whose runs the gauge tracks.
func (g *gauge) definition(typ string, c deputy.Cost, maxConcurrency int) deputy.Definition {
	return deputy.Definition{Type: typ, Cost: c, MaxConcurrency: maxConcurrency,
		Run: func(context.Context, *deputy.Run) (deputy.Result, error) {
			g.mu.Lock()
			g.units += int(c)
			g.byType[typ]++
			g.maxUnits = max(g.maxUnits, g.units)
			g.maxByType[typ] = max(g.maxByType[typ], g.byType[typ])
			g.mu.Unlock()
			time.Sleep(time.Millisecond) // the work
			g.mu.Lock()
			g.units -= int(c)
			g.byType[typ]--
			g.finished++
			g.mu.Unlock()
			return deputy.Result{}, nil
		}}
}

func (g *gauge) done() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.finished
}

func scheduleMany(t *testing.T, m *deputy.Manager, typ string, n int) {
	t.Helper()
	nts := make([]deputy.NewTask, n)
	for i := range nts {
		nts[i] = deputy.NewTask{ID: fmt.Sprintf("%s-%d", typ, i), Type: typ}
	}
	if _, err := m.BulkSchedule(t.Context(), nts, nil); err != nil {
		t.Fatalf("schedule: %v", err)
	}
}

// TestManager_CapacityBounds burns down a backlog with claims in flight
// two at a time: together they never run more than the cost budget, nor
// more tasks of a limited type than its MaxConcurrency.
func TestManager_CapacityBounds(t *testing.T) {
	t.Parallel()
	g := newGauge()
	h := newHarness(t, deputy.Config{Capacity: 3},
		g.definition("tiny", deputy.CostTiny, 0), g.definition("limited", deputy.CostTiny, 2),
		g.definition("normal", deputy.CostNormal, 0))
	scheduleMany(t, h.m, "tiny", 300)
	scheduleMany(t, h.m, "limited", 60)
	scheduleMany(t, h.m, "normal", 60)
	h.start(t, h.m)

	waitFor(t, "every run", func() bool { return g.done() == 420 })
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.maxUnits > 6 {
		t.Errorf("at most %d cost units ran at once, want at most 6 (capacity 3)", g.maxUnits)
	}
	if g.maxByType["limited"] > 2 {
		t.Errorf("at most %d limited tasks ran at once, want at most 2", g.maxByType["limited"])
	}
}

// TestManager_StopWritesOutcomes stops a node while it burns down a
// backlog: the outcomes of the runs that finished, which claims in flight
// may have been about to write, are all written.
func TestManager_StopWritesOutcomes(t *testing.T) {
	t.Parallel()
	g := newGauge()
	h := newHarness(t, deputy.Config{}, g.definition("tiny", deputy.CostTiny, 0))
	scheduleMany(t, h.m, "tiny", 500)
	if err := h.m.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	waitFor(t, "some runs", func() bool { return g.done() >= 100 })
	if err := h.m.Stop(t.Context()); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// Every task that ran is gone; the others wait, idle.
	ran := g.done()
	page, err := h.store.Fetch(t.Context(), deputy.Query{Size: 1000})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if len(page.Tasks) != 500-ran {
		t.Errorf("%d tasks left after %d of 500 ran, want %d", len(page.Tasks), ran, 500-ran)
	}
	for _, task := range page.Tasks {
		if task.Status != deputy.StatusIdle {
			t.Fatalf("task %s is %s after stop, want idle", task.ID, task.Status)
		}
	}
}
