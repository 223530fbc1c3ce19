package deputy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// pool runs claimed tasks within the node's cost budget and hands their
// outcomes to a batching completer.
type pool struct {
	m      *Manager
	budget int
	// combine is the store when it writes outcomes with claims, else nil.
	combine claimCompleter
	// serial is set when the store runs one write at a time.
	serial bool

	mu       sync.Mutex
	used     int                 // cost units of running tasks, guarded by mu
	reserved int                 // cost units reserved by claims in flight, guarded by mu
	byType   map[string]int      // running tasks per type, guarded by mu
	slots    map[string]int      // tasks per type reserved by claims in flight, guarded by mu
	runs     map[string]*running // by task id, guarded by mu
	// superseded counts runs still going whose task this node claimed
	// again (their lease ran out), no longer in runs. Guarded by mu.
	superseded int
	claiming   bool       // guarded by mu
	idle       *sync.Cond // signalled when runs drain, uses mu
	// waiting holds tasks claimed ahead of the slots short runs were about
	// to free, when they arrive before those runs end; they start, in
	// order, as slots free. Guarded by mu, as are waitCost, their cost
	// units, and the averages below.
	waiting  []waitingRun
	waitCost int
	// took is an average of run durations by type; claimTook one of claim
	// cycles. A run much shorter than a claim ends before a claim started
	// now returns.
	took      map[string]time.Duration
	claimTook time.Duration
	// shortClaims is set while the last claim that found tasks brought
	// only runs that end soon.
	shortClaims bool

	ctx       context.Context // parent of run contexts
	cancelAll func(error)
	endWrites context.CancelFunc // cancels the completer's writes
	freed     chan struct{}      // buffered 1: a slot was freed
	outcomes  outcomes           // waiting to be written
	flushReq  chan chan struct{}
	quit      chan struct{} // closed to end the completer
	done      chan struct{} // closed when the completer exits
	runsWG    sync.WaitGroup
}

// waitingRun is a claimed task waiting for a slot since queued.
type waitingRun struct {
	task   *Task
	def    *Definition
	cost   Cost
	queued time.Time
	// leaseUntil is when the task's lease runs out unless renewed: from
	// the claim, then from each renewal that succeeds.
	leaseUntil time.Time
}

// maxWait is how long a task claimed ahead may wait for a slot. Short runs
// free slots within milliseconds; a task that waits longer, because runs
// turned long, is handed back for any node to claim rather than held here
// while it could run elsewhere or be removed.
const maxWait = 100 * time.Millisecond

// running is one run in progress.
type running struct {
	task     *Task
	def      *Definition
	cost     Cost
	cancel   context.CancelCauseFunc
	deadline time.Time
	// leaseUntil, guarded by the pool's mu, is as for waitingRun; lapsed
	// is set once the run was cancelled because it passed.
	leaseUntil time.Time
	lapsed     bool
}

func newPool(m *Manager) *pool {
	p := &pool{
		m:        m,
		budget:   m.cfg.Capacity * int(CostNormal),
		byType:   map[string]int{},
		slots:    map[string]int{},
		runs:     map[string]*running{},
		took:     map[string]time.Duration{},
		freed:    make(chan struct{}, 1),
		outcomes: outcomes{ready: make(chan struct{}, 1)},
		flushReq: make(chan chan struct{}),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	p.idle = sync.NewCond(&p.mu)
	p.combine, _ = m.store.(claimCompleter)
	if s, ok := m.store.(serialWriter); ok {
		p.serial = s.SerialWrites()
	}
	return p
}

func (p *pool) start(ctx context.Context) {
	runCtx, cancel := context.WithCancelCause(ctx)
	p.ctx, p.cancelAll = runCtx, cancel
	p.mu.Lock()
	p.claiming = true
	p.mu.Unlock()
	// The completer outlives the run context so that outcomes recorded
	// during shutdown are still written.
	wctx, endWrites := context.WithCancel(context.WithoutCancel(ctx))
	p.endWrites = endWrites
	go p.completer(wctx)
}

func (p *pool) stopClaiming() {
	p.mu.Lock()
	p.claiming = false
	p.mu.Unlock()
}

// free returns the cost budget neither used, reserved nor waited for, zero
// once claiming has stopped.
func (p *pool) free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.claiming {
		return 0
	}
	return p.budget - p.used - p.reserved - p.waitCost
}

// aheadBudgets bounds what a node holds ahead of short runs: the tasks it
// has claimed and not started stay within this many budgets, and one claim
// ahead takes at most half of them. With the default capacity that is 160
// and 80 tiny tasks; runs of under a quarter of a claim cycle (a few
// hundred microseconds) drain them in a few milliseconds.
const aheadBudgets = 8

// freeAhead returns free, plus the cost units of runs that usually end
// well before a claim returns: a claim started now finds their slots free.
// Runs of types with a concurrency limit do not count.
//
// While the last claim brought only such short runs and no longer one
// runs, the budget is no bound on a claim ahead: the tasks it brings start
// within moments of each other as slots free. What is claimed and not
// started then stays within aheadBudgets budgets.
func (p *pool) freeAhead() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.freeAheadLocked()
}

func (p *pool) freeAheadLocked() int {
	if !p.claiming {
		return 0
	}
	free := p.budget - p.used - p.reserved - p.waitCost
	long := false
	for _, r := range p.runs {
		if r.def.MaxConcurrency == 0 && p.endsSoonLocked(r.task.Type) {
			free += int(r.cost)
		} else {
			long = true
		}
	}
	if p.shortClaims && !long {
		free = min(aheadBudgets/2*p.budget, aheadBudgets*p.budget-p.reserved-p.waitCost)
	}
	return free
}

// endsSoonLocked reports whether runs of typ usually take under a quarter
// of a claim cycle.
func (p *pool) endsSoonLocked(typ string) bool {
	d, ok := p.took[typ]
	return ok && p.claimTook > 0 && 4*d < p.claimTook
}

// claimed notes how long a claim cycle took and, when it claimed tasks,
// whether they all usually end soon.
func (p *pool) claimed(d time.Duration, tasks []*Task) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claimTook = ewma(p.claimTook, d)
	if len(tasks) == 0 {
		return
	}
	p.shortClaims = true
	for _, t := range tasks {
		if !p.endsSoonLocked(t.Type) {
			p.shortClaims = false
			return
		}
	}
}

// ewma moves the average avg an eighth of the way to d; a first d sets it.
func ewma(avg, d time.Duration) time.Duration {
	if avg == 0 {
		return d
	}
	return avg + (d-avg)/8
}

func (p *pool) running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

// runningLocked counts the runs going on, superseded ones among them. p.mu
// must be held.
func (p *pool) runningLocked() int { return len(p.runs) + p.superseded }

func (p *pool) load() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return float64(p.used) / float64(p.budget)
}

// reservation is the share of the pool one claim cycle may fill: cost
// units, and for each type with a concurrency limit, a number of tasks. A
// claim ahead counts the slots of runs about to end as free and claims no
// task of a limited type.
type reservation struct {
	units int
	slots map[string]int
	ahead bool
}

// reserve reserves the free budget, and the free slots of the limited
// types, for one claim cycle; ahead, it reserves freeAhead instead. It
// returns nil when no budget is free or claiming has stopped.
func (p *pool) reserve(limited []*Definition, ahead bool) *reservation {
	p.mu.Lock()
	defer p.mu.Unlock()
	free := p.budget - p.used - p.reserved - p.waitCost
	if ahead {
		free = p.freeAheadLocked()
	}
	if !p.claiming || free <= 0 {
		return nil
	}
	r := &reservation{units: free, slots: make(map[string]int, len(limited)), ahead: ahead}
	p.reserved += free
	if ahead {
		return r
	}
	for _, d := range limited {
		if n := d.MaxConcurrency - p.byType[d.Type] - p.slots[d.Type]; n > 0 {
			r.slots[d.Type] = n
			p.slots[d.Type] += n
		}
	}
	return r
}

// unreserve returns a reservation once its claim cycle has started what it
// claimed.
func (p *pool) unreserve(r *reservation) {
	p.mu.Lock()
	p.reserved -= r.units
	for t, n := range r.slots {
		p.slots[t] -= n
	}
	p.mu.Unlock()
}

// wait blocks until no task runs or ctx is done, and reports which.
func (p *pool) wait(ctx context.Context) bool {
	done := make(chan struct{})
	go func() {
		p.mu.Lock()
		for (p.runningLocked() > 0 || len(p.waiting) > 0) && ctx.Err() == nil {
			p.idle.Wait()
		}
		p.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		// Wake the waiter so that it exits.
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
		<-done
		return p.running() == 0
	}
}

// flush blocks until every outcome handed to the completer is written.
func (p *pool) flush(ctx context.Context) {
	ack := make(chan struct{})
	select {
	case p.flushReq <- ack:
	case <-ctx.Done():
		return
	case <-p.done:
		return
	}
	select {
	case <-ack:
	case <-ctx.Done():
	}
}

// stop ends the completer, abandoning a write in progress.
func (p *pool) stop() {
	close(p.quit)
	p.endWrites()
	<-p.done
}

// run starts running a claimed task, or queues it while the budget is
// taken: a claim made ahead of the slots of short runs may return before
// they end.
func (p *pool) run(t *Task, d *Definition) {
	cost := t.EffectiveCost
	if cost == 0 {
		cost = d.Cost
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiting) > 0 || p.used+int(cost) > p.budget {
		p.waiting = append(p.waiting, waitingRun{task: t, def: d, cost: cost, queued: p.m.cfg.Now(),
			leaseUntil: leaseOf(t)})
		p.waitCost += int(cost)
		return
	}
	p.startLocked(t, d, cost, leaseOf(t))
}

// leaseOf returns when the lease of a task just claimed runs out, or the
// zero time when the store did not say.
func leaseOf(t *Task) time.Time {
	if t.RetryAt == nil {
		return time.Time{}
	}
	return *t.RetryAt
}

// startLocked starts running t, whose lease runs out at leaseUntil unless
// renewed. p.mu must be held.
func (p *pool) startLocked(t *Task, d *Definition, cost Cost, leaseUntil time.Time) {
	timeout := d.Timeout
	if !t.Recurring() && t.TimeoutOverride != "" {
		if v, err := ParseDuration(t.TimeoutOverride); err == nil {
			timeout = v
		}
	}
	now := p.m.cfg.Now()
	ctx, cancel := context.WithCancelCause(p.ctx)
	r := &running{task: t, def: d, cost: cost, cancel: cancel, deadline: now.Add(timeout),
		leaseUntil: leaseUntil}

	p.used += int(cost)
	p.byType[t.Type]++
	if old, ok := p.runs[t.ID]; ok {
		// This node claimed again a task it still runs: the old run's
		// lease ran out unrenewed, or its node was taken for dead, and its
		// claim is gone. It ends on its own, no longer renewed, its
		// outcome refused by the store.
		old.cancel(errLeaseLapsed)
		p.superseded++
	}
	p.runs[t.ID] = r

	p.runsWG.Add(1)
	go func() {
		defer p.runsWG.Done()
		start := time.Now()
		c, outcome, took := p.execute(ctx, r, timeout)
		cancel(nil)
		p.release(r, time.Since(start))
		// Counted once no longer running, so that metrics never show a
		// finished run as running too.
		p.m.stats.finished(t, outcome, took)
		// NB: once the manager has stopped nothing writes the outcome; Stop
		// released the task.
		p.outcomes.add(c)
	}()
}

// release frees the slot of a run that took d, and starts the tasks
// waiting for slots that now fit; those that waited too long go back.
func (p *pool) release(r *running, d time.Duration) {
	p.mu.Lock()
	p.used -= int(r.cost)
	p.byType[r.task.Type]--
	if p.runs[r.task.ID] == r {
		delete(p.runs, r.task.ID)
	} else {
		p.superseded--
	}
	p.took[r.task.Type] = ewma(p.took[r.task.Type], d)
	stale := p.staleLocked(p.m.cfg.Now())
	for len(p.waiting) > 0 && p.used+int(p.waiting[0].cost) <= p.budget {
		w := p.waiting[0]
		p.waiting = p.waiting[1:]
		p.waitCost -= int(w.cost)
		p.startLocked(w.task, w.def, w.cost, w.leaseUntil)
	}
	if p.runningLocked() == 0 && len(p.waiting) == 0 {
		p.idle.Broadcast()
	}
	p.mu.Unlock()
	p.giveBack(stale)
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// handBackStale gives back the tasks that have waited for a slot longer
// than maxWait at now.
func (p *pool) handBackStale(now time.Time) {
	p.mu.Lock()
	stale := p.staleLocked(now)
	if p.runningLocked() == 0 && len(p.waiting) == 0 {
		p.idle.Broadcast()
	}
	p.mu.Unlock()
	p.giveBack(stale)
}

// staleLocked removes from the queue and returns the tasks that have waited
// longer than maxWait at now. p.mu must be held.
func (p *pool) staleLocked(now time.Time) []waitingRun {
	// The queue is in claim order, so the oldest come first.
	n := 0
	for n < len(p.waiting) && now.Sub(p.waiting[n].queued) > maxWait {
		n++
	}
	if n == 0 {
		return nil
	}
	stale := slices.Clone(p.waiting[:n])
	p.waiting = p.waiting[n:]
	for _, w := range stale {
		p.waitCost -= int(w.cost)
	}
	return stale
}

// handBack gives back the tasks waiting for slots, as runs interrupted by
// shutdown are: due again at once, the attempt not counted.
func (p *pool) handBack() {
	p.mu.Lock()
	waiting := p.waiting
	p.waiting, p.waitCost = nil, 0
	if p.runningLocked() == 0 {
		p.idle.Broadcast()
	}
	p.mu.Unlock()
	p.giveBack(waiting)
}

// giveBack writes tasks that did not run back as due at once, their
// attempt not counted. The writes are conditional on the claim: a task
// removed or taken meanwhile stays as it is.
func (p *pool) giveBack(ws []waitingRun) {
	if len(ws) == 0 {
		return
	}
	now := p.m.cfg.Now()
	cs := make([]Completion, len(ws))
	for i, w := range ws {
		cs[i] = Completion{ID: w.task.ID, ClaimVersion: w.task.ClaimVersion, Now: now,
			RunAt: now, Attempts: max(w.task.Attempts-1, 0)}
	}
	p.outcomes.add(cs...)
}

// renewedWaitingLocked records the renewal l of a waiting task's lease.
// p.mu must be held.
func (p *pool) renewedWaitingLocked(l Lease) {
	for i := range p.waiting {
		if w := &p.waiting[i]; w.task.ID == l.ID && w.task.ClaimVersion == l.ClaimVersion {
			w.leaseUntil = l.Until
			return
		}
	}
}

// dropWaiting removes a waiting task whose claim was lost.
func (p *pool) dropWaiting(id string, claim int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, w := range p.waiting {
		if w.task.ID == id && w.task.ClaimVersion == claim {
			p.waiting = slices.Delete(p.waiting, i, i+1)
			p.waitCost -= int(w.cost)
			break
		}
	}
	if p.runningLocked() == 0 && len(p.waiting) == 0 {
		p.idle.Broadcast()
	}
}

var errPanic = errors.New("task panicked")

// execute runs r under its timeout and returns its outcome, the outcome's
// name for metrics and how long the run took.
func (p *pool) execute(parent context.Context, r *running, timeout time.Duration,
) (c Completion, outcome string, took time.Duration) {
	m, t := p.m, r.task
	log := runLogger(m.log, slog.String("task_id", t.ID), slog.String("task_type", t.Type),
		slog.Int("attempt", t.Attempts))
	start := m.cfg.Now()
	m.stats.started(t, start)

	ctx, cancel := context.WithTimeoutCause(parent, timeout, ErrTimeout)
	defer cancel()

	var (
		res Result
		err error
	)
	func() {
		defer func() {
			if v := recover(); v != nil {
				log.Error("task panicked", slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
				err = fmt.Errorf("%w: %v", errPanic, v)
			}
		}()
		req, rerr := m.requestFor(t, log)
		if rerr != nil {
			err = rerr
			return
		}
		res, err = r.def.Run(ctx, &Run{Task: t.WithoutSecrets(), Request: req, Logger: log})
	}()

	now := m.cfg.Now()
	cause := context.Cause(ctx)
	switch {
	case err != nil && (errors.Is(cause, ErrShutdown) || errors.Is(cause, errLeaseLapsed)):
		// Interrupted by shutdown, or by the store out of reach for a
		// whole lease: due again at once, attempt not counted. After a
		// lapse the write succeeds only if no node has claimed the task
		// since.
		if errors.Is(cause, errLeaseLapsed) {
			log.Warn("run cancelled: the node let go of the task before others may take it",
				slog.Any("error", err))
		}
		return Completion{ID: t.ID, ClaimVersion: t.ClaimVersion, Now: now, RunAt: now,
			Attempts: max(t.Attempts-1, 0)}, "interrupted", now.Sub(start)
	case err != nil && errors.Is(cause, ErrTimeout):
		err = fmt.Errorf("%w after %s", ErrTimeout, timeout)
	case errors.Is(cause, errLeaseLost) && err != nil:
		log.Warn("run cancelled: the task was taken or removed elsewhere", slog.Any("error", err))
	}
	c = m.outcome(t, r.def, res, err, now)
	outcome = outcomeName(c, err)
	if err != nil {
		log.Warn("task run failed", slog.Any("error", err), slog.String("outcome", outcome))
	} else {
		log.Debug("task run succeeded", slog.Duration("duration", now.Sub(start)))
	}
	return c, outcome, now.Sub(start)
}

func outcomeName(c Completion, err error) string {
	switch {
	case err == nil:
		return "success"
	case c.Delete:
		return "failed"
	default:
		return "retry_scheduled"
	}
}

var (
	errLeaseLost   = errors.New("deputy: lease lost")
	errLeaseLapsed = errors.New(
		"deputy: let go of the task: its lease or the node's heartbeat not renewed in time")
)

// maxBatch bounds the outcomes written in one call.
const maxBatch = 5000

// outcomes is the queue of run outcomes waiting to be written. The
// completer writes them, unless a claim cycle in flight is going to: a
// store that writes outcomes in the transaction of a claim then spares a
// commit per cycle.
type outcomes struct {
	mu      sync.Mutex
	pending []Completion // guarded by mu
	// ready is signalled (buffered 1) when outcomes are added or the
	// completer must write what the claim loop leaves.
	ready chan struct{}
	// deferred is set while the claim loop will take the pending outcomes
	// with its next claim.
	deferred atomic.Bool
}

func (q *outcomes) add(cs ...Completion) {
	q.mu.Lock()
	q.pending = append(q.pending, cs...)
	q.mu.Unlock()
	q.signal()
}

func (q *outcomes) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take removes and returns up to n pending outcomes, oldest first.
func (q *outcomes) take(n int) []Completion {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.pending))
	if n == 0 {
		return nil
	}
	cs := slices.Clone(q.pending[:n])
	q.pending = slices.Delete(q.pending, 0, n)
	return cs
}

// putBack returns outcomes a failed write took, ahead of the others.
func (q *outcomes) putBack(cs []Completion) {
	q.mu.Lock()
	q.pending = append(slices.Clip(cs), q.pending...)
	q.mu.Unlock()
	q.signal()
}

// deferTo sets whether the claim loop writes the pending outcomes; when it
// stops, the completer writes them.
func (q *outcomes) deferTo(claims bool) {
	if q.deferred.Swap(claims) && !claims {
		q.signal()
	}
}

// completer writes outcomes in batches: whatever accumulated while the
// previous batch was being written goes out in one call. It leaves them to
// the claim loop while that defers them.
func (p *pool) completer(ctx context.Context) {
	defer close(p.done)
	for {
		select {
		case <-p.quit:
			return
		case <-p.outcomes.ready:
			if p.outcomes.deferred.Load() {
				continue
			}
		case ack := <-p.flushReq:
			// Everything handed over before the flush request is pending.
			p.writePending(ctx, true)
			close(ack)
			continue
		}
		p.writePending(ctx, false)
	}
}

// writePending writes the pending outcomes in batches. Unless all is set,
// it stops when the claim loop takes them over.
func (p *pool) writePending(ctx context.Context, all bool) {
	for all || !p.outcomes.deferred.Load() {
		batch := p.outcomes.take(maxBatch)
		if len(batch) == 0 {
			return
		}
		p.write(ctx, batch)
	}
}

// write stores a batch of outcomes, retrying whole-call failures with
// backoff: an outcome is only dropped when its task moved on without it.
func (p *pool) write(ctx context.Context, batch []Completion) {
	m := p.m
	for attempt := 0; ; attempt++ {
		errs, err := m.store.Complete(ctx, batch)
		if err == nil {
			p.written(batch, errs, false)
			m.wake() // recurring tasks may be due again at once
			return
		}
		m.log.Warn("write run outcomes", slog.Int("count", len(batch)), slog.Any("error", err),
			slog.Int("attempt", attempt+1))
		select {
		case <-time.After(backoff(attempt)):
		case <-ctx.Done():
			return
		case <-p.quit:
			return
		}
	}
}

// written logs the outcomes of a batch that were not written because
// their tasks moved on without them. With again set, it queues again those
// that failed for another reason, as a write with a claim may leave them.
func (p *pool) written(batch []Completion, errs []error, again bool) {
	var retry []Completion
	for i, err := range errs {
		switch code := ErrorCode(err); {
		case code == "":
		case again && code != ECONFLICT && code != ENOTFOUND && code != EINVALID:
			retry = append(retry, batch[i])
		default:
			p.m.log.Debug("run outcome not written: the task moved on",
				slog.String("task_id", batch[i].ID), slog.Any("error", err))
		}
	}
	if len(retry) > 0 {
		p.outcomes.putBack(retry)
	}
}

// backoff is the delay after the given number of consecutive failures of a
// background loop: 100ms doubling up to 10s.
func backoff(failures int) time.Duration {
	return min(100*time.Millisecond<<min(failures, 10), 10*time.Second)
}
