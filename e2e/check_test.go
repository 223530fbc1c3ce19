package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestCluster_Tally checks the checker: on made-up runs it flags what
// breaks exactly-once, and only that.
func TestCluster_Tally(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.Local) // as stamp prints
	sec := func(n float64) time.Time { return start.Add(time.Duration(n * float64(time.Second))) }
	c := &cluster{
		name:    "made-up",
		counter: &counter{},
		start:   start,
		removed: sec(5.1),
		oneOff: []string{"once-ok", "once-twice", "once-never", "once-excused", "once-retried",
			"once-orphan"},
		recurring: []string{"rec-ok", "rec-dup", "rec-close", "rec-stalled", "rec-late"},
	}
	claim := int64(0)
	run := func(task, owner string, due time.Time, attempt int) {
		claim++
		c.counter.hits = append(c.counter.hits, hit{task: task, at: due.Add(50 * time.Millisecond),
			owner: owner, due: due, claim: claim, attempt: attempt})
	}
	run("once-ok", "node-1", sec(0), 1)
	run("once-twice", "node-1", sec(0), 1)
	run("once-twice", "node-2", sec(0), 1)
	run("once-excused", "node-2", sec(0), 1)
	run("once-excused", "node-3", sec(4), 2)
	run("once-retried", "node-3", sec(0), 2)
	run("once-orphan", "", sec(0), 1)
	for i := range 6 {
		run("rec-ok", "node-1", sec(float64(i)), 1)
		run("rec-dup", "node-2", sec(float64(i)), 1)
		run("rec-close", "node-3", sec(float64(i)), 1)
	}
	run("rec-dup", "node-3", sec(2), 1)
	run("rec-close", "node-1", sec(2.5), 1)
	run("rec-stalled", "node-1", sec(0), 1)
	run("rec-late", "node-1", sec(7.5), 1)
	run("stray", "node-1", sec(1), 1)

	ty := c.tally(rules{rerunOK: map[string]bool{"once-excused": true}})
	got := strings.Join(ty.violations, "\n")
	for _, want := range []string{
		"once-twice: ran 2 times",
		"once-never: never ran",
		"once-retried: first ran at attempt 2",
		"once-orphan: ran while no node held it",
		"rec-dup: occurrence 00:00:02.000 ran twice",
		"rec-close: occurrences 00:00:02.000 and 00:00:02.500 are only 500ms apart",
		"rec-stalled: ran 1 times",
		"rec-late: ran 2.45s after it was removed",
		"stray: the counter was called for a task nobody scheduled",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("violations lack %q; got:\n%s", want, got)
		}
	}
	for _, id := range []string{"once-ok:", "once-excused:", "rec-ok:"} {
		if strings.Contains(got, id) {
			t.Errorf("violations flag %s, which ran exactly once or was excused:\n%s", id, got)
		}
	}
	if ty.oneOffTwice != 1 || ty.oneOffDups != 1 || ty.dupOcc != 1 {
		t.Errorf("excused reruns %d, duplicates %d, duplicate occurrences %d; want 1, 1, 1",
			ty.oneOffTwice, ty.oneOffDups, ty.dupOcc)
	}
}
