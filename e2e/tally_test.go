package e2e

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// rules are what a scenario's disruption excuses.
type rules struct {
	// rerunOK are the tasks the disruption caught running: their run may
	// have died with it, so they may run twice.
	rerunOK map[string]bool
	// caught reports whether the disruption caught a run: its claim may be
	// released under it, and its task run again. Nil means none.
	caught func(h hit) bool
	// missOK returns how many occurrences a recurring task may miss because
	// of the disruption. Nil means none.
	missOK func(id string) int
}

// excuses reports whether a task may run again after the run prev, or
// after a claim that never called when prev is nil.
func (r *rules) excuses(id string, prev *hit) bool {
	return r.rerunOK[id] || (prev != nil && r.caught != nil && r.caught(*prev))
}

// baseMissOK is how many occurrences a recurring task may miss without a
// disruption: one whose run is late by a whole interval, on a busy machine,
// skips the next, and its last occurrence may be due just as it is removed.
const baseMissOK = 3

// removalGrace is how long after its removal a recurring task's run may
// still call: one claimed just before the removal.
const removalGrace = 2 * time.Second

// tally is what the counter saw.
type tally struct {
	oneOffRan    int // one-off tasks that ran
	oneOffTwice  int // of them, excused reruns
	oneOffDups   int // of them, runs twice not excused
	runs         int // runs of recurring tasks
	rerunOcc     int // occurrences run twice, excused
	dupOcc       int // occurrences run twice, not excused
	minRuns      int
	maxRuns      int
	expected     int // runs of a recurring task without misses, for the first task
	perNode      map[string]int
	gone         int             // runs of tasks removed while they ran
	late         []time.Duration // how late recurring runs called
	lookupFailed int
	violations   []string
}

// fail records a violation of exactly-once.
func (ty *tally) fail(format string, args ...any) {
	ty.violations = append(ty.violations, fmt.Sprintf(format, args...))
}

// check checks every run the counter saw against exactly-once, excusing
// what r allows, and fails the test for each violation.
func (c *cluster) check(r rules) *tally {
	ty := c.tally(r)
	if n := len(ty.violations); n > 0 {
		c.t.Errorf("%s: %d violations of exactly-once; the first:\n  %s", c.name, n,
			strings.Join(ty.violations[:min(n, 25)], "\n  "))
	}
	return ty
}

// tally counts the runs the counter saw and lists the violations of
// exactly-once among them.
func (c *cluster) tally(r rules) *tally {
	hits := c.counter.byTask()
	ty := &tally{perNode: map[string]int{}, minRuns: -1}
	known := map[string]bool{}
	for _, id := range c.oneOff {
		known[id] = true
		c.checkOneOff(ty, id, byArrival(hits[id]), &r)
	}
	for _, id := range c.recurring {
		known[id] = true
		miss := baseMissOK
		if r.missOK != nil {
			miss += r.missOK(id)
		}
		c.checkRecurring(ty, id, byArrival(hits[id]), &r, miss)
	}
	for id, hs := range hits {
		for _, h := range hs {
			switch h.lookupErr {
			case "":
				ty.perNode[h.owner]++
			case "gone":
				ty.gone++
			default:
				ty.lookupFailed++
			}
		}
		if !known[id] {
			ty.fail("%s: the counter was called for a task nobody scheduled", id)
		}
	}
	return ty
}

// checkOneOff checks that a one-off task ran once, or twice when excused.
func (c *cluster) checkOneOff(ty *tally, id string, hs []hit, r *rules) {
	switch {
	case len(hs) == 0:
		ty.fail("%s: never ran", id)
		return
	case len(hs) == 2 && r.excuses(id, &hs[0]):
		ty.oneOffTwice++
	case len(hs) > 1:
		ty.oneOffDups++
		ty.fail("%s: ran %d times: %s", id, len(hs), history(hs))
	}
	ty.oneOffRan++
	if first := hs[0]; first.attempt != 1 && first.lookupErr == "" && !r.excuses(id, nil) {
		ty.fail("%s: first ran at attempt %d, so an earlier claim was lost: %s", id,
			first.attempt, history(hs))
	}
	for _, h := range hs {
		switch {
		case h.lookupErr == "gone":
			ty.fail("%s: its row was gone while it ran: %s", id, history(hs))
		case h.lookupErr == "" && h.owner == "" && !r.excuses(id, &h):
			ty.fail("%s: ran while no node held it, its claim released: %s", id, history(hs))
		}
	}
}

// checkRecurring checks that a recurring task ran each occurrence once,
// about once a second until it was removed, and not after.
func (c *cluster) checkRecurring(ty *tally, id string, hs []hit, r *rules, missOK int) {
	ty.runs += len(hs)
	if len(hs) == 0 {
		ty.fail("%s: never ran", id)
		return
	}
	claims := map[int64]bool{}
	dues := map[time.Time]bool{}
	var (
		valid  []hit // runs whose claim was read
		reruns int   // excused
	)
	for i, h := range hs {
		if h.at.After(c.removed.Add(removalGrace)) {
			ty.fail("%s: ran %s after it was removed: %s", id, h.at.Sub(c.removed),
				history(hs[max(i-2, 0):]))
		}
		if h.lookupErr != "" {
			continue // gone: removed while it ran; else counted in lookupFailed
		}
		var prev *hit
		if i > 0 {
			prev = &hs[i-1]
		}
		excused := r.excuses(id, prev)
		near := hs[max(i-2, 0):min(i+3, len(hs))]
		// NB: a late lookup may have read a later claim than its run's.
		if claims[h.claim] && !h.late {
			ty.fail("%s: claim %d ran twice: %s", id, h.claim, history(near))
		}
		claims[h.claim] = claims[h.claim] || !h.late
		switch {
		case dues[h.due] && (excused || h.late):
			ty.rerunOcc++
		case dues[h.due]:
			ty.dupOcc++
			ty.fail("%s: occurrence %s ran twice: %s", id, stamp(h.due), history(near))
		}
		switch {
		case h.attempt != 1 && excused:
			reruns++
		case h.attempt != 1:
			ty.fail("%s: ran at attempt %d, so an earlier claim was lost: %s", id, h.attempt,
				history(near))
		}
		if h.owner == "" && !r.excuses(id, &h) {
			ty.fail("%s: ran while no node held it, its claim released: %s", id, history(near))
		}
		dues[h.due] = true
		valid = append(valid, h)
		ty.late = append(ty.late, h.at.Sub(h.due))
	}

	// Occurrences are whole intervals apart: a closer pair is a rerun.
	slices.SortFunc(valid, func(a, b hit) int { return a.due.Compare(b.due) })
	for i := 1; i < len(valid); i++ {
		a, b := valid[i-1], valid[i]
		if gap := b.due.Sub(a.due); gap > 0 && gap < interval && !r.excuses(id, &a) {
			ty.fail("%s: occurrences %s and %s are only %s apart: %s", id, stamp(a.due),
				stamp(b.due), gap, history(valid[max(i-2, 0):min(i+2, len(valid))]))
		}
	}

	// Without misses the task runs every occurrence due before its removal:
	// about one a second, one more or less depending on where the removal
	// falls between two occurrences.
	first := c.start
	if len(valid) > 0 {
		first = valid[0].due
	}
	expected := int(c.removed.Sub(first).Round(interval) / interval)
	if ty.expected == 0 {
		ty.expected = expected
	}
	if n := len(hs); n < expected-missOK || n > expected+1+reruns {
		ty.fail("%s: ran %d times in %s, want %d (at most %d missed); %s", id, n,
			c.removed.Sub(first).Round(time.Millisecond), expected, missOK, misses(hs))
	}
	if ty.minRuns < 0 || len(hs) < ty.minRuns {
		ty.minRuns = len(hs)
	}
	ty.maxRuns = max(ty.maxRuns, len(hs))
}

// byArrival returns hits sorted by arrival.
func byArrival(hs []hit) []hit {
	return slices.SortedFunc(slices.Values(hs), func(a, b hit) int { return a.at.Compare(b.at) })
}

// history describes runs of a task.
func history(hs []hit) string {
	hs = byArrival(hs)
	parts := make([]string, 0, len(hs))
	for _, h := range hs {
		if h.lookupErr != "" {
			parts = append(parts, fmt.Sprintf("[%s, claim unknown: %s]", stamp(h.at),
				h.lookupErr))
			continue
		}
		parts = append(parts, fmt.Sprintf("[%s on %s, due %s, claim %d, attempt %d]",
			stamp(h.at), cmp.Or(h.owner, "no node"), stamp(h.due), h.claim, h.attempt))
	}
	return strings.Join(parts, " ")
}

// misses describes the occurrences a recurring task skipped, and how late
// the run before each gap called.
func misses(hs []hit) string {
	hs = slices.SortedFunc(slices.Values(hs), func(a, b hit) int { return a.due.Compare(b.due) })
	var parts []string
	for i := 1; i < len(hs); i++ {
		prev, h := hs[i-1], hs[i]
		if prev.lookupErr != "" || h.lookupErr != "" {
			continue
		}
		if n := int(h.due.Sub(prev.due)/interval) - 1; n > 0 {
			parts = append(parts, fmt.Sprintf("%d after %s (that run called %s late)", n,
				stamp(prev.due), prev.at.Sub(prev.due).Round(time.Millisecond)))
		}
	}
	if len(parts) == 0 {
		return "no occurrence skipped in between"
	}
	return "skipped: " + strings.Join(parts, ", ")
}

// stamp formats a time to the millisecond.
func stamp(t time.Time) string { return t.Local().Format("15:04:05.000") }

// summary is the one-line account of a scenario's runs.
func (ty *tally) summary(name string) string {
	var nodes []string
	for _, id := range slices.Sorted(maps.Keys(ty.perNode)) {
		nodes = append(nodes, fmt.Sprintf("%s=%d", cmp.Or(id, "no-node"), ty.perNode[id]))
	}
	s := fmt.Sprintf("e2e %s: one-off: %d scheduled, %d ran, %d duplicates (%d excused "+
		"reruns); recurring: %d tasks, %d runs (%d-%d per task, %d expected), %d duplicate "+
		"occurrences (%d excused reruns), late by p50 %s p99 %s max %s; runs per node: %s",
		name, oneOffCount, ty.oneOffRan, ty.oneOffDups, ty.oneOffTwice, recurringCount, ty.runs,
		ty.minRuns, ty.maxRuns, ty.expected, ty.dupOcc, ty.rerunOcc, ty.lateAt(0.5),
		ty.lateAt(0.99), ty.lateAt(1), strings.Join(nodes, " "))
	if ty.gone > 0 {
		s += fmt.Sprintf(", %d of tasks removed while running", ty.gone)
	}
	if ty.lookupFailed > 0 {
		s += fmt.Sprintf(", %d whose claim could not be read", ty.lookupFailed)
	}
	return s
}

// lateAt returns the q-quantile of how late recurring runs called.
func (ty *tally) lateAt(q float64) time.Duration {
	if len(ty.late) == 0 {
		return 0
	}
	late := slices.Sorted(slices.Values(ty.late))
	return late[int(q*float64(len(late)-1))].Round(time.Millisecond)
}
