package deputy

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPool_WaitingRuns runs a pool with a budget of two tiny tasks and
// hands it five, as a claim ahead may: two run, three wait and start in
// order as slots free, never more than two at once; one whose lease is
// lost is dropped, and those still waiting at shutdown go back unrun with
// their attempt not counted. The pool's store is never used here.
func TestPool_WaitingRuns(t *testing.T) {
	var (
		cur, peak atomic.Int32
		started   = make(chan string, 5)
		finish    = make(chan struct{})
	)
	def := &Definition{Type: "job", Cost: CostTiny, Timeout: time.Minute, MaxAttempts: 3,
		Run: func(ctx context.Context, r *Run) (Result, error) {
			n := cur.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			started <- r.Task.ID
			<-finish
			cur.Add(-1)
			return Result{}, nil
		}}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	_, p := newTestPool(t, Config{Capacity: 1, Now: func() time.Time { return now }})

	ids := []string{"a", "b", "c", "d", "e"}
	for i, id := range ids {
		p.run(&Task{ID: id, Type: "job", Attempts: 1, ClaimVersion: int64(100 + i)}, def)
	}
	for _, want := range []string{"a", "b"} {
		if got := next(t, started); got != want && got != otherOf(want) {
			t.Fatalf("started %s, want a or b", got)
		}
	}
	p.mu.Lock()
	waiting, waitCost := len(p.waiting), p.waitCost
	p.mu.Unlock()
	if waiting != 3 || waitCost != 3 || p.free() != -3 {
		t.Fatalf("waiting %d tasks of %d units, free %d; want 3, 3, -3", waiting, waitCost, p.free())
	}

	// A run ends: the first waiting task takes its slot.
	finish <- struct{}{}
	if got := next(t, started); got != "c" {
		t.Fatalf("started %s after a slot freed, want c", got)
	}

	// d's lease was lost (renewals cover waiting tasks): only its claim
	// drops it.
	p.dropWaiting("d", 999)
	p.dropWaiting("d", 103)
	p.mu.Lock()
	waiting, waitCost = len(p.waiting), p.waitCost
	p.mu.Unlock()
	if waiting != 1 || waitCost != 1 {
		t.Fatalf("waiting %d tasks of %d units after d's lease was lost, want 1, 1", waiting, waitCost)
	}

	// Shutdown: e goes back, due at once, its attempt not counted.
	p.handBack()
	if p.free() != 0 {
		t.Fatalf("free %d after hand-back, want 0 (two runs hold the budget)", p.free())
	}
	back := map[string]Completion{}
	for _, c := range p.outcomes.take(100) {
		back[c.ID] = c
	}
	if c, ok := back["e"]; !ok || c.Delete || !c.RunAt.Equal(now) || c.Attempts != 0 ||
		c.ClaimVersion != 104 {
		t.Fatalf("outcome of e: %+v, %v; want due now, attempts 0, its claim", c, ok)
	}
	if c, ok := back["d"]; ok {
		t.Fatalf("outcome of d, whose lease was lost: %+v", c)
	}
	close(finish)
	p.runsWG.Wait()
	if got := peak.Load(); got != 2 {
		t.Fatalf("%d runs at once, want 2", got)
	}
	select {
	case id := <-started:
		t.Fatalf("%s started after it was handed back", id)
	default:
	}
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a run to start")
		return ""
	}
}

// newTestPool returns a manager of cfg over no store and its pool, claiming
// and ready to run tasks handed to it; the store is never used.
func newTestPool(t *testing.T, cfg Config) (*Manager, *pool) {
	t.Helper()
	m, err := New(struct{ Store }{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := m.pool
	p.ctx, p.cancelAll = context.WithCancelCause(context.Background())
	p.claiming = true
	return m, p
}

// newTestClock returns a clock that stands still but when advanced.
func newTestClock() (now func() time.Time, advance func(time.Duration)) {
	var (
		mu sync.Mutex
		t  = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	)
	now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return t
	}
	advance = func(d time.Duration) {
		mu.Lock()
		t = t.Add(d)
		mu.Unlock()
	}
	return now, advance
}

func otherOf(id string) string {
	if id == "a" {
		return "b"
	}
	return "a"
}

// TestPool_ClaimAhead follows the budget accounting of a node burning down
// a backlog: once its claims bring only runs much shorter than a claim, a
// second claim starts ahead while the first is in flight and may take
// several budgets, and what is claimed and not started never exceeds
// aheadBudgets budgets; a long run, or a claim that brought one, ends
// claims ahead, and on a store that runs one write at a time none starts
// beside another. Nothing runs here: the runs are represented by the
// averages and counts the pool keeps.
func TestPool_ClaimAhead(t *testing.T) {
	m, err := New(struct{ Store }{}, Config{Capacity: 10})
	if err != nil {
		t.Fatal(err)
	}
	p := m.pool
	p.claiming = true
	p.took["short"] = 20 * time.Microsecond
	p.took["long"] = time.Second
	var settle time.Time // in the past: no claim waits for runs to end
	const budget = 20

	first := p.reserve(nil, false)
	if first == nil || first.units != budget {
		t.Fatalf("first claim reserved %+v, want %d units", first, budget)
	}
	// No claim has returned yet: how long its runs take is unknown.
	if _, _, ok := m.nextClaim(1, settle, true); ok {
		t.Fatal("a second claim may start before any claim brought short runs")
	}

	p.claimed(time.Millisecond, []*Task{{Type: "short"}, {Type: "short"}})
	if got, want := p.freeAhead(), aheadBudgets/2*budget; got != want {
		t.Fatalf("free ahead %d after a claim of short runs, want %d", got, want)
	}
	if _, _, ok := m.nextClaim(1, settle, false); ok {
		t.Fatal("a second claim may start ahead without a backlog")
	}
	p.serial = true
	if _, _, ok := m.nextClaim(1, settle, true); ok {
		t.Fatal("a second claim may start ahead on a store that runs one write at a time")
	}
	p.serial = false
	wait, ahead, ok := m.nextClaim(1, settle, true)
	if !ok || !ahead || wait != 0 {
		t.Fatalf("second claim in a backlog: wait %v, ahead %v, may start %v; want 0, true, true",
			wait, ahead, ok)
	}
	second := p.reserve(nil, true)
	if second == nil || second.units != aheadBudgets/2*budget {
		t.Fatalf("second claim reserved %+v, want %d units", second, aheadBudgets/2*budget)
	}
	if _, _, ok := m.nextClaim(maxClaimsInFlight, settle, true); ok {
		t.Fatal("more than maxClaimsInFlight claims may start")
	}

	// The first claim returns; its tasks and more wait for slots. What is
	// claimed and not started stays within aheadBudgets budgets.
	p.unreserve(first)
	p.waitCost = 3 * budget
	third := p.reserve(nil, true)
	if third == nil || p.reserved+p.waitCost != aheadBudgets*budget {
		t.Fatalf("third claim reserved %+v with %d units reserved and %d waiting; want %d in all",
			third, p.reserved, p.waitCost, aheadBudgets*budget)
	}
	if got := p.freeAhead(); got != 0 {
		t.Fatalf("free ahead %d with %d budgets claimed and not started, want 0", got, aheadBudgets)
	}
	p.unreserve(second)
	p.unreserve(third)
	p.waitCost = 0

	// A long run holds a slot: claims ahead stop taking more than the budget.
	p.runs["slow"] = &running{task: &Task{ID: "slow", Type: "long"}, def: &Definition{}, cost: CostTiny}
	p.used++
	if got := p.freeAhead(); got != budget-1 {
		t.Fatalf("free ahead %d with a long run, want %d", got, budget-1)
	}
	delete(p.runs, "slow")
	p.used--

	// A claim brings a long run: claims in flight may too.
	p.claimed(time.Millisecond, []*Task{{Type: "short"}, {Type: "long"}})
	inFlight := p.reserve(nil, false)
	if got := p.freeAhead(); got > 0 {
		t.Fatalf("free ahead %d with the budget reserved after a claim brought a long run, want none",
			got)
	}
	if _, _, ok := m.nextClaim(1, settle, true); ok {
		t.Fatal("a claim may start ahead of one that may bring long runs")
	}
	p.unreserve(inFlight)
	if wait, ahead, ok := m.nextClaim(0, settle, true); !ok || ahead || wait != 0 {
		t.Fatalf("claim on a free budget: wait %v, ahead %v, may start %v; want 0, false, true",
			wait, ahead, ok)
	}
}

// TestPool_StaleWaitingGoBack hands a pool with a budget of two tiny
// tasks more than it can run while its runs last: the tasks that wait for
// a slot longer than maxWait go back as due at once, their attempt not
// counted, when the claim loop's timer or the end of a run finds them, and
// never run here.
func TestPool_StaleWaitingGoBack(t *testing.T) {
	var (
		started = make(chan string, 5)
		finish  = make(chan struct{})
	)
	clock, advance := newTestClock()
	def := &Definition{Type: "job", Cost: CostTiny, Timeout: time.Minute, MaxAttempts: 3,
		Run: func(ctx context.Context, r *Run) (Result, error) {
			started <- r.Task.ID
			<-finish
			return Result{}, nil
		}}
	_, p := newTestPool(t, Config{Capacity: 1, Now: clock})

	for i, id := range []string{"a", "b", "c", "d"} {
		p.run(&Task{ID: id, Type: "job", Attempts: 2, ClaimVersion: int64(100 + i)}, def)
	}
	next(t, started)
	next(t, started)

	advance(maxWait)
	p.handBackStale(clock())
	if got := len(p.outcomes.take(100)); got != 0 {
		t.Fatalf("%d tasks handed back after waiting maxWait, want none", got)
	}
	advance(time.Millisecond)
	p.handBackStale(clock())
	back := p.outcomes.take(100)
	if len(back) != 2 || back[0].ID != "c" || back[1].ID != "d" {
		t.Fatalf("handed back %+v, want c and d", back)
	}
	for _, c := range back {
		if c.Delete || !c.RunAt.Equal(clock()) || c.Attempts != 1 || c.ClaimVersion < 102 {
			t.Fatalf("outcome of %s: %+v; want due now, attempts 1, its claim", c.ID, c)
		}
	}
	if p.free() != 0 {
		t.Fatalf("free %d with two runs and nothing waiting, want 0", p.free())
	}

	// e waits too long, then a run ends: e goes back instead of starting.
	p.run(&Task{ID: "e", Type: "job", Attempts: 1, ClaimVersion: 104}, def)
	advance(maxWait + time.Millisecond)
	// Drain the signals of earlier outcomes, then wait for the two this
	// run's end brings: its own and e's.
	select {
	case <-p.outcomes.ready:
	default:
	}
	finish <- struct{}{}
	got := map[string]Completion{}
	for len(got) < 2 {
		select {
		case <-p.outcomes.ready:
		case id := <-started:
			t.Fatalf("%s started after waiting longer than maxWait", id)
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for outcomes, have %+v", got)
		}
		for _, c := range p.outcomes.take(100) {
			got[c.ID] = c
		}
	}
	if c, ok := got["e"]; !ok || c.Delete || c.Attempts != 0 || len(got) != 2 {
		t.Fatalf("outcomes %+v; want a finished run's and e handed back with attempts 0", got)
	}
	p.mu.Lock()
	waiting := len(p.waiting)
	p.mu.Unlock()
	if waiting != 0 {
		t.Fatalf("%d tasks still waiting, want 0", waiting)
	}
	close(finish)
	p.runsWG.Wait()
	select {
	case id := <-started:
		t.Fatalf("%s started after it was handed back", id)
	default:
	}
}

// TestPool_ReclaimedWhileRunning hands a pool a task it still runs under an
// older claim, as when its lease ran out unrenewed and this node claimed it
// again: the old run is cancelled and counted as running until it ends,
// and its end frees its own slot without forgetting the new run, whose
// lease is still renewed.
func TestPool_ReclaimedWhileRunning(t *testing.T) {
	causes := make(chan error, 2)
	started := make(chan string, 2)
	letGo := make(chan struct{}) // ends the old run once cancelled
	def := &Definition{Type: "job", Cost: CostNormal, Timeout: time.Hour, MaxAttempts: 3,
		Run: func(ctx context.Context, r *Run) (Result, error) {
			started <- r.Task.ID
			<-ctx.Done()
			causes <- context.Cause(ctx)
			if r.Task.Attempts == 1 {
				<-letGo
			}
			return Result{}, ctx.Err()
		}}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	_, p := newTestPool(t, Config{Capacity: 2, Now: func() time.Time { return now }})

	p.run(&Task{ID: "a", Type: "job", Attempts: 1, ClaimVersion: 1}, def)
	next(t, started)
	p.run(&Task{ID: "a", Type: "job", Attempts: 2, ClaimVersion: 2}, def)
	next(t, started)
	select {
	case cause := <-causes:
		if cause != errLeaseLapsed {
			t.Fatalf("old run cancelled by %v, want errLeaseLapsed", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old run was not cancelled")
	}
	// Until the old run ends it counts as running: Stop waits for it too.
	if got := p.running(); got != 2 {
		t.Fatalf("%d runs while the old one ends, want 2", got)
	}
	close(letGo)
	select {
	case <-p.freed: // the old run released its slot
	case <-time.After(10 * time.Second):
		t.Fatal("the old run did not release its slot")
	}
	if got, running := p.free(), p.running(); got != int(CostNormal) || running != 1 {
		t.Fatalf("free %d, running %d after the old run ended; want %d, 1", got, running, CostNormal)
	}
	p.mu.Lock()
	r, ok := p.runs["a"]
	p.mu.Unlock()
	if !ok || r.task.ClaimVersion != 2 {
		t.Fatalf("run of a after the old one ended: %v, %v; want the claim 2", r, ok)
	}
	p.cancelAll(ErrShutdown)
	p.runsWG.Wait()
}

// TestPool_HoldsEnd follows keepLeases, without renewals, over a node
// holding a run and two tasks waiting for a slot whose leases run out at
// different times: each is let go a margin before its lease runs out, a
// waiting task handed back with its attempt not counted, and all of them
// once the node has gone NodeTTL without a heartbeat.
func TestPool_HoldsEnd(t *testing.T) {
	var (
		causes  = make(chan error, 1)
		started = make(chan string, 1)
	)
	clock, advance := newTestClock()
	def := &Definition{Type: "job", Cost: CostNormal, Timeout: time.Hour, MaxAttempts: 3,
		Run: func(ctx context.Context, r *Run) (Result, error) {
			started <- r.Task.ID
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return Result{}, ctx.Err()
		}}
	m, p := newTestPool(t, Config{Capacity: 1, Lease: 10 * time.Second, NodeTTL: 30 * time.Second,
		Now: clock})
	m.beat(clock())
	at := func(d time.Duration) *time.Time { t := clock().Add(d); return &t }

	// The lease margin is a second (a tenth of 10 s).
	p.run(&Task{ID: "run", Type: "job", Attempts: 1, ClaimVersion: 1, RetryAt: at(20 * time.Second)}, def)
	next(t, started)
	p.run(&Task{ID: "w1", Type: "job", Attempts: 2, ClaimVersion: 2, RetryAt: at(5 * time.Second)}, def)
	p.run(&Task{ID: "w2", Type: "job", Attempts: 1, ClaimVersion: 3, RetryAt: at(40 * time.Second)}, def)

	if d, _ := m.keepLeases(context.Background(), false); d != 4*time.Second {
		t.Fatalf("next check in %s, want 4s (w1's lease less its margin)", d)
	}
	advance(4 * time.Second)
	if d, _ := m.keepLeases(context.Background(), false); d != 15*time.Second {
		t.Fatalf("next check in %s, want 15s (the run's lease less its margin)", d)
	}
	cs := p.outcomes.take(10)
	if len(cs) != 1 || cs[0].ID != "w1" || cs[0].ClaimVersion != 2 || cs[0].Attempts != 1 || !cs[0].RunAt.Equal(clock()) {
		t.Fatalf("outcomes after w1's hold ended: %+v; want w1 handed back, attempts 1", cs)
	}
	select {
	case c := <-causes:
		t.Fatalf("the run was cancelled (%v) while its lease held", c)
	default:
	}

	// No heartbeat for 29 s (NodeTTL less its margin of a second): the
	// run, whose lease still holds, and w2 are let go.
	advance(25 * time.Second)
	if d, _ := m.keepLeases(context.Background(), false); d != 30*time.Second/4 {
		t.Fatalf("next check in %s with nothing held, want NodeTTL/4", d)
	}
	if c := <-causes; c != errLeaseLapsed {
		t.Fatalf("run cancelled by %v, want errLeaseLapsed", c)
	}
	p.runsWG.Wait()
	back := map[string]Completion{}
	for _, c := range p.outcomes.take(10) {
		back[c.ID] = c
	}
	if len(back) != 2 || back["w2"].Attempts != 0 || back["run"].Attempts != 0 || !back["run"].RunAt.Equal(clock()) {
		t.Fatalf("outcomes after the node went too long without a heartbeat: %+v; want w2 and the run handed back", back)
	}
}
