package deputy

import (
	"cmp"
	"context"
	"log/slog"
	"time"
)

// maxClaimsInFlight bounds the claims a node has in flight at once. A claim
// waits for its commit, and slots that runs free meanwhile would sit idle
// until it returns: a second claim fills them, once at least half the
// budget is free, so that claims stay large enough to pay for their round
// trip and commit. Each claim reserves the budget it may fill, so that
// together they never exceed it, except ahead of short runs (see
// nextClaim and pool.freeAhead).
const maxClaimsInFlight = 2

// claimResult is the outcome of one claim cycle: how many tasks it
// claimed, whether due tasks may be left (it filled its budget or task
// limit), and how many run outcomes it wrote.
type claimResult struct {
	n, wrote int
	more     bool
	err      error
}

// claimCompleter is implemented by stores that can write run outcomes in
// the transaction of a claim, as the sqlite and postgres stores do. A claim
// cycle then also writes the outcomes waiting to be written: one round trip
// and one commit where [Store.Complete] and [Store.Claim] take two.
type claimCompleter interface {
	// CompleteAndClaim writes cs as [Store.Complete] does, then claims as
	// [Store.Claim] does, in one transaction. When it fails, it returned no
	// task to run, and outcomes may have been written: written again, they
	// fail as conflicts. An outcome that fails on its own fails only
	// itself; unless its error is a conflict, missing task or invalid
	// input, it is written again.
	CompleteAndClaim(ctx context.Context, cs []Completion, p ClaimParams,
	) ([]error, []*Task, error)
}

// serialWriter is implemented by stores that run one write at a time, as
// the sqlite store does. A claim started while another is in flight then
// only waits for it: none starts ahead of one in flight.
type serialWriter interface {
	// SerialWrites reports whether the store runs one write at a time.
	SerialWrites() bool
}

// pollLoop claims due tasks whenever the poll interval passes, a wakeup
// arrives, or, while due tasks remain, a slot frees up. Up to
// maxClaimsInFlight claims run at once, each on the budget free when it
// starts.
func (m *Manager) pollLoop(ctx context.Context) {
	m.log.Debug("poll loop started")
	defer m.log.Debug("poll loop stopped")

	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		backlog  bool // the last claim found work and may have left some
		want     bool // a claim is asked for and not started yet
		inflight int
		failures int
		// settle is when a claim stops waiting for the runs the last one
		// started to end; settling is set while one waits.
		settle   time.Time
		settling <-chan time.Time
	)
	results := make(chan claimResult, maxClaimsInFlight)
	// An in-flight claim finishes even when Stop begins, so that what it
	// claimed is run rather than stranded. The completer then writes the
	// outcomes the claims leave.
	defer func() {
		for ; inflight > 0; inflight-- {
			<-results
		}
		m.pool.outcomes.deferTo(false)
	}()
	for {
		var freed <-chan struct{}
		if backlog || settling != nil {
			freed = m.pool.freed
		}
		select {
		case <-ctx.Done():
			return
		case <-m.stopPoll:
			return
		case <-timer.C:
			// Runs that turned long leave tasks claimed ahead waiting, and
			// no run may end to hand them back.
			m.pool.handBackStale(m.cfg.Now())
			want = true
		case <-m.wakeup:
			want = true
		case <-freed:
			want = true
		case <-settling:
			settling = nil
			want = true
		case r := <-results:
			inflight--
			if r.n > 0 && r.more {
				// A backlog: let the runs just started end, so that the
				// next claim fills the budget.
				settle = time.Now().Add(settleWindow)
			}
			wait := m.claimed(r, &failures)
			if r.err != nil && ctx.Err() != nil {
				return
			}
			backlog = r.n > 0 && r.more
			// More may be due: claim again at once while slots are free,
			// and after outcomes that may make tasks due again.
			want = want || backlog || r.wrote > 0
			resetTimer(timer, wait)
		}
		if want {
			switch wait, ahead, ok := m.nextClaim(inflight, settle, backlog); {
			case !ok:
			case wait > 0:
				if settling == nil {
					settling = time.After(wait)
				}
			default:
				settling = nil
				want = !m.startClaim(ctx, results, ahead)
				if !want {
					inflight++
				}
			}
		}
		// On a backlog, the next claim follows as soon as a claim in flight
		// returns or a slot frees: it writes the outcomes runs hand over.
		m.pool.outcomes.deferTo(backlog && (inflight > 0 || want) && m.pool.combine != nil)
	}
}

// settleWindow bounds how long a claim waits for the runs the last claim
// started to end, when they hold most of the budget.
const settleWindow = 500 * time.Microsecond

// nextClaim reports whether a claim may start while inflight others are in
// flight, how long it should wait first, and whether it claims ahead.
//
// Runs that usually end long before a claim returns need not be waited
// for: a claim ahead counts their slots as free. In a backlog of such
// runs, a second claim starts ahead while the first is in flight, and
// claims ahead may take several budgets' worth of tasks, so that the next
// batches are on their way while one is run. A backlog's burn-down is
// otherwise bound by the budget per claim cycle: with the default
// capacity (20 tiny tasks) and a 1.2-1.6 ms cycle on PostgreSQL, 13,000-
// 16,000 tasks a second. See BENCHMARKS.md, batch H.
func (m *Manager) nextClaim(inflight int, settle time.Time, backlog bool,
) (wait time.Duration, ahead, ok bool) {
	switch {
	case inflight >= maxClaimsInFlight:
		return 0, false, false
	case inflight > 0:
		if 2*m.pool.free() >= m.pool.budget {
			return 0, false, true
		}
		return 0, true, backlog && !m.pool.serial && 2*m.pool.freeAhead() >= m.pool.budget
	}
	if wait = m.settleWait(settle); wait > 0 && 2*m.pool.freeAhead() >= m.pool.budget {
		return 0, true, true
	}
	return wait, false, true
}

// settleWait returns how long a claim that may start while no other is in
// flight should wait first.
//
// The runs a claim starts hold their slots, and short runs free them a few
// microseconds later. A claim started at once would fill only the slots
// free then; one that waits for those runs to end fills the budget, in a
// single round trip and commit where two or more small claims would be
// needed. So while the last claim left due tasks and runs hold part of the
// budget, the next claim waits for slots to free, until settle (shortly
// after the last claim returned) at most. Longer runs delay it by no more
// than settleWindow; a node that keeps up with its due tasks never waits.
func (m *Manager) settleWait(settle time.Time) time.Duration {
	if m.pool.free() >= m.pool.budget {
		return 0
	}
	return max(time.Until(settle), 0)
}

// startClaim starts a claim cycle on the free budget, which it reserves,
// and reports whether it did. A pool at capacity starts none: a freed slot
// asks again.
func (m *Manager) startClaim(ctx context.Context, results chan<- claimResult, ahead bool) bool {
	r := m.pool.reserve(m.limitedTypes(), ahead)
	if r == nil {
		m.stats.polled(0, m.pool.load(), 0, "running_at_capacity")
		return false
	}
	go func() {
		res := m.claim(context.WithoutCancel(ctx), r)
		// What it claimed now counts as used: the next claim may start on
		// the rest as soon as it has the result.
		m.pool.unreserve(r)
		results <- res
	}()
	return true
}

// claimed records the outcome of a claim cycle and returns how long the
// loop may wait before it claims again unasked.
func (m *Manager) claimed(r claimResult, failures *int) time.Duration {
	wait := m.cfg.PollInterval
	switch {
	case r.err != nil:
		*failures++
		wait = max(wait, backoff(*failures))
		m.stats.pollFailed()
		if *failures == 1 || *failures%20 == 0 {
			m.log.Warn("claim tasks", slog.Any("error", r.err), slog.Int("failures", *failures))
		}
	case *failures > 0:
		m.log.Info("claiming recovered", slog.Int("failures", *failures))
		*failures = 0
	}
	return wait
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// limitedTypes returns the definitions with a concurrency limit.
func (m *Manager) limitedTypes() []*Definition {
	m.mu.Lock()
	defer m.mu.Unlock()
	var limited []*Definition
	for _, d := range m.defs {
		if d.MaxConcurrency > 0 {
			limited = append(limited, d)
		}
	}
	return limited
}

// claim runs one claim cycle on the budget reserved by r: it starts the
// tasks it claims and, with a claimCompleter, writes the outcomes waiting.
func (m *Manager) claim(ctx context.Context, r *reservation) (res claimResult) {
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

	// Outcomes waiting to be written go with the first claim.
	var cs []Completion
	if m.pool.combine != nil {
		cs = m.pool.outcomes.take(maxBatch)
	}
	taken := len(cs)
	defer func() {
		res.wrote = taken - len(cs)
		if len(cs) > 0 {
			m.pool.outcomes.putBack(cs) // no claim took them
		}
	}()

	units := r.units
	if r.ahead {
		limited = nil
	}
	var claimed []*Task
	for _, d := range limited {
		slots := r.slots[d.Type]
		tasks, cost, more, err := m.claimTypes(ctx, &cs, []string{d.Type},
			min(units, slots*int(d.Cost)), slots)
		claimed, units, res.more = append(claimed, tasks...), units-cost, res.more || more
		if err != nil {
			res.err = err
			return res
		}
	}
	if len(unlimited) > 0 {
		tasks, _, more, err := m.claimTypes(ctx, &cs, unlimited, units, 0)
		claimed, res.more = append(claimed, tasks...), res.more || more
		if err != nil {
			res.err = err
			return res
		}
	}
	res.n = len(claimed)
	m.pool.claimed(time.Since(start), claimed)
	total := res.n
	result := "no_tasks_claimed"
	if total > 0 {
		result = "pool_filled"
		if m.pool.free() <= 0 {
			result = "ran_out_of_capacity"
		}
	}
	m.stats.polled(total, m.pool.load(), time.Since(start), result)
	return res
}

// claimTypes claims due tasks of types within budget cost units and, when
// maxTasks is positive, that many tasks, and starts them. With outcomes in
// *cs, it writes them in the same call and clears *cs. It returns the
// tasks it claimed, the cost units they take, and whether due tasks may be
// left: the claim reached its task limit, or a task may not have fit in the
// budget left. Otherwise the store had no more due tasks of those types.
func (m *Manager) claimTypes(ctx context.Context, cs *[]Completion, types []string,
	budget, maxTasks int,
) (tasks []*Task, units int, more bool, err error) {
	if budget <= 0 {
		return nil, 0, true, nil
	}
	p := ClaimParams{
		Owner: m.cfg.NodeID, Now: m.cfg.Now(), Types: types, Budget: budget, MaxTasks: maxTasks,
		Lease: m.cfg.Lease,
	}
	p.Heartbeat = m.beatDue(p.Now)
	if len(*cs) > 0 {
		var errs []error
		errs, tasks, err = m.pool.combine.CompleteAndClaim(ctx, *cs, p)
		if err == nil {
			m.pool.written(*cs, errs, true)
			*cs = nil
		}
	} else {
		tasks, err = m.store.Claim(ctx, p)
	}
	if err != nil {
		return nil, 0, false, err
	}
	if p.Heartbeat {
		m.beat(p.Now)
	}
	for _, t := range tasks {
		d := m.def(t.Type)
		if d == nil {
			// Claims are limited to registered types, so this is a store bug.
			m.log.Error("claimed a task of an unregistered type", slog.String("task_id", t.ID),
				slog.String("task_type", t.Type))
			continue
		}
		cost := t.EffectiveCost
		if cost == 0 {
			cost = d.Cost
		}
		units += int(cost)
		if !t.Recurring() && t.Attempts > d.MaxAttempts {
			// A one-off task that ran out of attempts (its last run was lost
			// with its node) is removed rather than run again.
			m.pool.outcomes.add(Completion{ID: t.ID, ClaimVersion: t.ClaimVersion,
				Now: m.cfg.Now(), Delete: true})
			m.stats.finished(t, "failed", 0)
			continue
		}
		m.pool.run(t, d)
	}
	limit := cmp.Or(maxTasks, budget)
	more = len(tasks) >= limit || budget-units < int(CostExtraLarge)
	return tasks, units, more, nil
}

// claimBeatEvery is how old a node's last heartbeat may be before its next
// claim records one. A claim proves its node alive even while the heartbeat
// loop's writes fail; once a second is as good for that as every claim.
const claimBeatEvery = time.Second

// beatDue reports whether a claim at now should record a heartbeat.
func (m *Manager) beatDue(now time.Time) bool {
	every := min(claimBeatEvery, m.cfg.HeartbeatInterval/2)
	return now.Sub(time.Unix(0, m.lastBeat.Load())) >= every
}

// beat notes that the store recorded a heartbeat of this node at t.
func (m *Manager) beat(t time.Time) {
	for {
		old := m.lastBeat.Load()
		if t.UnixNano() <= old || m.lastBeat.CompareAndSwap(old, t.UnixNano()) {
			return
		}
	}
}

// heartbeatLoop records that this node is alive and releases the tasks of
// nodes that stopped heartbeating.
//
// A failed heartbeat is tried again after a quarter of HeartbeatInterval
// (at most a second), not a whole interval later, and once more shortly
// before the node would let go of its tasks (see holdEnd): a database
// that comes back in time costs no run.
func (m *Manager) heartbeatLoop(ctx context.Context) {
	retry := min(m.cfg.HeartbeatInterval/4, time.Second)
	timer := time.NewTimer(m.cfg.HeartbeatInterval)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(m.cfg.HeartbeatInterval)
		now := m.cfg.Now()
		if err := m.store.Heartbeat(ctx, m.cfg.NodeID, now); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			if failures == 1 || failures%10 == 0 {
				m.log.Warn("heartbeat", slog.Any("error", err), slog.Int("failures", failures))
			}
			next := retry
			if left := m.holdEnd(time.Time{}).Sub(m.cfg.Now()) - retry/4; left > 0 && left < next {
				next = left // lands a quarter of retry before the holds end
			}
			timer.Reset(next)
			continue
		}
		failures = 0
		m.beat(now)
		n, err := m.store.ReleaseDeadNodes(ctx, now.Add(-m.cfg.NodeTTL), now)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			// Tried again with the next heartbeat.
			m.log.Warn("release the tasks of nodes that stopped heartbeating", slog.Any("error", err))
		case n > 0:
			m.log.Warn("released tasks of nodes that stopped heartbeating", slog.Int("count", n))
			m.wake()
		}
	}
}

// leaseLoop renews the leases of runs in progress and of tasks waiting for
// slots. It cancels runs whose task was taken or removed elsewhere, and
// ends the node's hold on tasks that other nodes may take from it: see
// holdEnd.
//
// Leases are renewed every third of Lease; after a renewal that failed,
// every twelfth (at least 100 ms), so that an outage shorter than most of
// a lease costs no run.
func (m *Manager) leaseLoop(ctx context.Context) {
	every := max(m.cfg.Lease/3, 100*time.Millisecond)
	retry := max(every/4, 100*time.Millisecond)
	renewAt := time.Now().Add(every)
	timer := time.NewTimer(min(every, m.cfg.NodeTTL/4))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		renew := !start.Before(renewAt)
		next, failed := m.keepLeases(ctx, renew)
		switch {
		case renew && failed:
			renewAt = start.Add(retry)
		case renew:
			renewAt = start.Add(every)
		}
		timer.Reset(max(min(next, time.Until(renewAt)), time.Millisecond))
	}
}

// holdMargin is how long before another node may take a task this node
// lets go of it: a tenth of the time that hold lasts, at most a second,
// for the skew between the nodes' clocks and the lateness of timers.
//
// TODO(deputy): clocks further apart than the margin, or a process paused
// longer (a VM frozen, a stop-the-world pause), still let two nodes run a
// task at once for that long; only a fencing token checked by what the
// task writes to would close it, and tasks here write outside deputy.
func holdMargin(d time.Duration) time.Duration { return min(d/10, time.Second) }

// holdEnd returns when this node must stop holding a task whose lease runs
// out at leaseUntil (zero when unknown). Other nodes may claim the task
// once its lease runs out, and release it once this node has gone NodeTTL
// without a heartbeat recorded, whichever comes first; the node lets go a
// margin before either.
func (m *Manager) holdEnd(leaseUntil time.Time) time.Time {
	end := time.Unix(0, m.lastBeat.Load()).Add(m.cfg.NodeTTL - holdMargin(m.cfg.NodeTTL))
	if !leaseUntil.IsZero() {
		if l := leaseUntil.Add(-holdMargin(m.cfg.Lease)); l.Before(end) {
			end = l
		}
	}
	return end
}

// keepLeases ends the node's hold on the tasks whose holdEnd has come and,
// when renew is set, renews the leases of the others. It returns how soon
// it should run again to end the next hold in time, and whether a
// renewal failed.
func (m *Manager) keepLeases(ctx context.Context, renew bool) (next time.Duration, failed bool) {
	now := m.cfg.Now()
	var (
		leases []Lease
		runs   []*running // nil for a task waiting for a slot
		lapsed []*running
		back   []waitingRun
		first  time.Time // the earliest holdEnd still ahead
		until  time.Time // the earliest holdEnd of the leases renewed
	)
	ahead := func(end time.Time) bool {
		if !now.Before(end) {
			return false
		}
		first = earliest(first, end)
		return true
	}
	extend := func(t *Task, r *running, end time.Time) {
		leases = append(leases, Lease{ID: t.ID, ClaimVersion: t.ClaimVersion, Until: now.Add(m.cfg.Lease)})
		runs = append(runs, r)
		until = earliest(until, end)
	}
	p := m.pool
	p.mu.Lock()
	for _, r := range p.runs {
		switch end := m.holdEnd(r.leaseUntil); {
		case r.lapsed:
		case !ahead(end):
			r.lapsed = true
			lapsed = append(lapsed, r)
		case renew && now.Before(r.deadline):
			// A run past its deadline is not renewed: if it ignores its
			// cancellation, its lease runs out and another node retries it.
			extend(r.task, r, end)
		}
	}
	kept := p.waiting[:0]
	for _, w := range p.waiting {
		switch end := m.holdEnd(w.leaseUntil); {
		case !ahead(end):
			back = append(back, w)
			p.waitCost -= int(w.cost)
			continue
		case renew:
			extend(w.task, nil, end)
		}
		kept = append(kept, w)
	}
	clear(p.waiting[len(kept):])
	p.waiting = kept
	if p.runningLocked() == 0 && len(p.waiting) == 0 {
		p.idle.Broadcast()
	}
	p.mu.Unlock()

	for _, r := range lapsed {
		if now.Before(r.deadline) { // else already cancelled by its timeout
			m.log.Warn("cancelling a run: its lease ran out unrenewed "+
				"or the node went too long without a heartbeat", slog.String("task_id", r.task.ID))
		}
		r.cancel(errLeaseLapsed)
	}
	if len(back) > 0 {
		m.log.Warn("handing back tasks waiting for a slot: their lease ran out unrenewed "+
			"or the node went too long without a heartbeat", slog.Int("count", len(back)))
		p.giveBack(back)
	}
	if len(leases) == 0 {
		return m.nextCheck(first, now), false
	}

	// A renewal still in progress when the first hold it would extend
	// ends is as good as failed: give up on it then.
	rctx, cancel := context.WithTimeout(ctx, m.nextCheck(until, now))
	defer cancel()
	errs, err := m.store.RenewLeases(rctx, leases)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("renew leases", slog.Int("count", len(leases)), slog.Any("error", err))
		}
		// The renewal may have taken a while: count from now.
		return m.nextCheck(first, m.cfg.Now()), true
	}

	first = time.Time{}
	p.mu.Lock()
	for i, e := range errs {
		switch {
		case e != nil:
		case runs[i] != nil:
			runs[i].leaseUntil = leases[i].Until
		default:
			p.renewedWaitingLocked(leases[i])
		}
	}
	// A hold that ended during the renewal sets first in the past: the
	// next check comes at once.
	for _, r := range p.runs {
		if !r.lapsed {
			first = earliest(first, m.holdEnd(r.leaseUntil))
		}
	}
	for _, w := range p.waiting {
		first = earliest(first, m.holdEnd(w.leaseUntil))
	}
	p.mu.Unlock()

	for i, e := range errs {
		code := ErrorCode(e)
		switch {
		case e == nil:
		case code != ECONFLICT && code != ENOTFOUND:
			failed = true // it may be renewed next time, before its hold ends
		case runs[i] == nil:
			m.log.Warn("lease lost: dropping a task waiting for a slot",
				slog.String("task_id", leases[i].ID), slog.String("reason", code))
			p.dropWaiting(leases[i].ID, leases[i].ClaimVersion)
		default:
			m.log.Warn("lease lost: cancelling run", slog.String("task_id", runs[i].task.ID), slog.String("reason", code))
			runs[i].cancel(errLeaseLost)
		}
	}
	return m.nextCheck(first, m.cfg.Now()), failed
}

// earliest returns the earlier of a and b, the zero time standing for none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// nextCheck returns how long keepLeases may wait from now when the first
// hold to end ends at first (zero when the node holds nothing).
func (m *Manager) nextCheck(first, now time.Time) time.Duration {
	if first.IsZero() {
		// A task claimed meanwhile is held for at least NodeTTL/2 less a
		// margin: its claim recorded a heartbeat unless one was recorded
		// less than HeartbeatInterval/2 before.
		return m.cfg.NodeTTL / 4
	}
	return max(first.Sub(now), time.Millisecond)
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
