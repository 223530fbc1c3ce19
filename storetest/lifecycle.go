package storetest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// wantIdle checks that a task went back to idle without owner, start time
// or lease.
func wantIdle(t *testing.T, task *deputy.Task) {
	t.Helper()
	if task.Status != deputy.StatusIdle || task.OwnerID != "" || task.StartedAt != nil ||
		task.RetryAt != nil {
		t.Fatalf("task %s: status %s, owner %q, started %s, retry %s; want idle and released",
			task.ID, task.Status, task.OwnerID, fmtTimePtr(task.StartedAt),
			fmtTimePtr(task.RetryAt))
	}
}

func testComplete(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		task := newTask("a", typeA, at(-time.Minute))
		task.Schedule = &deputy.Schedule{Interval: "1m"}
		mustInsert(t, s, task)
		claimed := claimOne(t, s, "a", typeA, "node-1", base)

		schedule := &deputy.Schedule{Interval: "10m"}
		mustComplete(t, s, deputy.Completion{
			ID: "a", ClaimVersion: claimed.ClaimVersion, Now: at(time.Second),
			State: json.RawMessage(`{"runs": 1}`), RunAt: at(10 * time.Minute), Attempts: 0,
			Schedule: schedule,
		})

		got := mustGet(t, s, "a")
		wantIdle(t, got)
		wantTime(t, "RunAt", got.RunAt, at(10*time.Minute))
		wantTime(t, "UpdatedAt", got.UpdatedAt, at(time.Second))
		if got.Attempts != 0 || !jsonEqual(got.State, json.RawMessage(`{"runs":1}`)) ||
			!got.Schedule.Equal(schedule) || !got.Enabled {
			t.Fatalf("completed task: attempts %d, state %s, schedule %s, enabled %t",
				got.Attempts, got.State, jsonString(got.Schedule), got.Enabled)
		}
		if got.Version != claimed.Version+1 {
			t.Fatalf("Version = %d, want %d", got.Version, claimed.Version+1)
		}
	})

	t.Run("NilKeeps", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		task := newTask("a", typeA, at(-time.Minute))
		task.State = json.RawMessage(`{"kept": true}`)
		task.Schedule = &deputy.Schedule{Interval: "1h"}
		mustInsert(t, s, task)
		claimed := claimOne(t, s, "a", typeA, "node-1", base)

		mustComplete(t, s, deputy.Completion{ID: "a", ClaimVersion: claimed.ClaimVersion,
			Now: at(time.Second), RunAt: at(time.Hour), Attempts: 1})

		got := mustGet(t, s, "a")
		wantIdle(t, got)
		if got.Attempts != 1 || !jsonEqual(got.State, task.State) ||
			!got.Schedule.Equal(task.Schedule) {
			t.Fatalf("completed task: attempts %d, state %s, schedule %s",
				got.Attempts, got.State, jsonString(got.Schedule))
		}
	})

	t.Run("Disable", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		claimed := claimOne(t, s, "a", typeA, "node-1", base)
		mustComplete(t, s, deputy.Completion{ID: "a", ClaimVersion: claimed.ClaimVersion,
			Now: at(time.Second), RunAt: at(time.Hour), Disable: true})
		if got := mustGet(t, s, "a"); got.Enabled {
			t.Fatalf("task still enabled after a disabling completion")
		}
	})

	t.Run("ConcurrentDisableSurvives", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		claimed := claimOne(t, s, "a", typeA, "node-1", base)

		task := mustGet(t, s, "a")
		task.Enabled = false
		mustUpdate(t, s, deputy.UpdateOptions{Now: at(time.Second)}, task)

		mustComplete(t, s, deputy.Completion{ID: "a", ClaimVersion: claimed.ClaimVersion,
			Now: at(2 * time.Second), RunAt: at(time.Hour)})
		got := mustGet(t, s, "a")
		wantIdle(t, got)
		if got.Enabled {
			t.Fatalf("completion re-enabled a task disabled during its run")
		}
	})

	t.Run("ErrConflictReclaimed", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		first := claimOne(t, s, "a", typeA, "node-1", base)
		second := claimOne(t, s, "a", typeA, "node-2", at(2*time.Minute))

		errs, err := s.Complete(t.Context(), []deputy.Completion{{ID: "a",
			ClaimVersion: first.ClaimVersion, Now: at(3 * time.Minute), RunAt: at(time.Hour),
			State: json.RawMessage(`{"stale": true}`), Delete: false}})
		wantItemCodes(t, "Complete", errs, err, deputy.ECONFLICT)

		got := mustGet(t, s, "a")
		if got.Status != deputy.StatusRunning || got.OwnerID != "node-2" ||
			got.Version != second.Version {
			t.Fatalf("stale completion was written: status %s, owner %s, version %d",
				got.Status, got.OwnerID, got.Version)
		}
		mustComplete(t, s, deputy.Completion{ID: "a", ClaimVersion: second.ClaimVersion,
			Now: at(3 * time.Minute), RunAt: at(time.Hour)})
	})

	t.Run("ErrConflictStaleDelete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		first := claimOne(t, s, "a", typeA, "node-1", base)
		claimOne(t, s, "a", typeA, "node-2", at(2*time.Minute))

		errs, err := s.Complete(t.Context(), []deputy.Completion{{ID: "a",
			ClaimVersion: first.ClaimVersion, Now: at(3 * time.Minute), Delete: true}})
		wantItemCodes(t, "Complete", errs, err, deputy.ECONFLICT)
		mustGet(t, s, "a")
	})

	t.Run("ErrConflictNotRunning", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		claimed := claimOne(t, s, "a", typeA, "node-1", base)
		c := deputy.Completion{ID: "a", ClaimVersion: claimed.ClaimVersion, Now: at(time.Second),
			RunAt: at(time.Hour)}
		mustComplete(t, s, c)

		c.RunAt = at(2 * time.Hour)
		errs, err := s.Complete(t.Context(), []deputy.Completion{c})
		wantItemCodes(t, "Complete", errs, err, deputy.ECONFLICT)
		wantTime(t, "RunAt", mustGet(t, s, "a").RunAt, at(time.Hour))
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		errs, err := s.Complete(t.Context(), []deputy.Completion{{ID: "missing", ClaimVersion: 2,
			Now: base, RunAt: base}})
		wantItemCodes(t, "Complete", errs, err, deputy.ENOTFOUND)
	})

	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "k", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "k"),
			userKey("uiam", "u")))
		claimed := claimOne(t, s, "a", typeA, "node-1", base)

		mustComplete(t, s, deputy.Completion{ID: "a", ClaimVersion: claimed.ClaimVersion,
			Now: at(time.Second), Delete: true})

		mustNotExist(t, s, "a")
		wantRefs(t, s, "es", "k", 0, false)
		wantRefs(t, s, "uiam", "u", 0, false)
		queued := allPending(t, s)
		wantQueued(t, queued, "k")
		// The run is over, so nothing holds the key.
		wantTimePtr(t, "HoldUntil", queued[0].HoldUntil, nil)
		wantTime(t, "QueuedAt", queued[0].QueuedAt, at(time.Second))
	})

	t.Run("SameTaskTwiceInBatch", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base), newTask("b", typeA, base))
		tasks := mustClaim(t, s, claimParams("node-1", base, time.Minute, 10, typeA))
		if len(tasks) != 2 {
			t.Fatalf("Claim = %v, want 2 tasks", taskIDs(tasks))
		}
		cv := map[string]int64{}
		for _, task := range tasks {
			cv[task.ID] = task.ClaimVersion
		}

		errs, err := s.Complete(t.Context(), []deputy.Completion{
			{ID: "a", ClaimVersion: cv["a"], Now: at(time.Second), RunAt: at(time.Hour)},
			{ID: "b", ClaimVersion: cv["b"], Now: at(time.Second), Delete: true},
			{ID: "a", ClaimVersion: cv["a"], Now: at(time.Second), RunAt: at(2 * time.Hour)},
			{ID: "b", ClaimVersion: cv["b"], Now: at(time.Second), Delete: true},
		})
		wantItemCodes(t, "Complete", errs, err, "", "", deputy.ECONFLICT, deputy.ENOTFOUND)
		wantTime(t, "RunAt", mustGet(t, s, "a").RunAt, at(time.Hour))
		mustNotExist(t, s, "b")
	})

	t.Run("RunOfRemovedTaskSparesNewTask", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		old := claimOne(t, s, "a", typeA, "node-1", base)
		mustRemove(t, s, at(time.Second), "a")
		// A new task with the same id starts again at version 1, and is
		// claimed at the same point of its life as the old one was.
		mustInsert(t, s, newTask("a", typeA, at(time.Second)))
		fresh := claimOne(t, s, "a", typeA, "node-2", at(2*time.Second))
		if fresh.ClaimVersion == old.ClaimVersion {
			t.Fatalf("the new task's claim reused the removed task's token %d", old.ClaimVersion)
		}

		// The removed task's run finishes: it must not touch the new task.
		errs, err := s.Complete(t.Context(), []deputy.Completion{{ID: "a",
			ClaimVersion: old.ClaimVersion, Now: at(3 * time.Second), Delete: true}})
		wantItemCodes(t, "Complete of the removed task's run", errs, err, deputy.ECONFLICT)
		errs, err = s.RenewLeases(t.Context(), []deputy.Lease{{ID: "a",
			ClaimVersion: old.ClaimVersion, Until: at(time.Hour)}})
		wantItemCodes(t, "RenewLeases of the removed task's run", errs, err, deputy.ECONFLICT)
		if got := mustGet(t, s, "a"); got.Status != deputy.StatusRunning || got.OwnerID != "node-2" {
			t.Fatalf("new task: status %s, owner %s; want running on node-2", got.Status, got.OwnerID)
		}
	})

	t.Run("StaleThenFreshInBatch", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		stale := claimOne(t, s, "a", typeA, "node-1", base)
		if n, err := s.ReleaseOwned(t.Context(), "node-1", at(time.Second)); err != nil || n != 1 {
			t.Fatalf("ReleaseOwned = %d, %v; want 1", n, err)
		}
		fresh := claimOne(t, s, "a", typeA, "node-1", at(2*time.Second))

		// A batch can hold the outcome of a run whose claim was lost and
		// that of the run of the new claim: each is judged on its own.
		errs, err := s.Complete(t.Context(), []deputy.Completion{
			{ID: "a", ClaimVersion: stale.ClaimVersion, Now: at(3 * time.Second), RunAt: at(time.Hour)},
			{ID: "a", ClaimVersion: fresh.ClaimVersion, Now: at(3 * time.Second), RunAt: at(2 * time.Hour)},
		})
		wantItemCodes(t, "Complete", errs, err, deputy.ECONFLICT, "")
		got := mustGet(t, s, "a")
		wantIdle(t, got)
		wantTime(t, "RunAt", got.RunAt, at(2*time.Hour))
	})

	t.Run("Batch", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base), newTask("b", typeA, base),
			newTask("c", typeA, base))
		tasks := mustClaim(t, s, claimParams("node-1", base, time.Minute, 10, typeA))
		if len(tasks) != 3 {
			t.Fatalf("Claim = %v, want 3 tasks", taskIDs(tasks))
		}
		slices.SortFunc(tasks, func(x, y *deputy.Task) int { return strings.Compare(x.ID, y.ID) })

		errs, err := s.Complete(t.Context(), []deputy.Completion{
			{ID: "a", ClaimVersion: tasks[0].ClaimVersion, Now: base, RunAt: at(time.Hour)},
			{ID: "b", ClaimVersion: tasks[1].ClaimVersion + 1, Now: base, RunAt: at(time.Hour)},
			{ID: "missing", ClaimVersion: 1, Now: base, RunAt: at(time.Hour)},
			{ID: "c", ClaimVersion: tasks[2].ClaimVersion, Now: base, Delete: true},
		})
		wantItemCodes(t, "Complete", errs, err, "", deputy.ECONFLICT, deputy.ENOTFOUND, "")
		wantIdle(t, mustGet(t, s, "a"))
		if got := mustGet(t, s, "b"); got.Status != deputy.StatusRunning {
			t.Fatalf("b: status %s after a failed completion, want running", got.Status)
		}
		mustNotExist(t, s, "c")
	})
}

func testRenewLeases(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		claimed := claimOne(t, s, "a", typeA, "node-1", base)

		errs, err := s.RenewLeases(t.Context(), []deputy.Lease{{ID: "a",
			ClaimVersion: claimed.ClaimVersion, Until: at(5 * time.Minute)}})
		mustAllOK(t, "RenewLeases", errs, err, 1)

		got := mustGet(t, s, "a")
		wantTimePtr(t, "RetryAt", got.RetryAt, ptr(at(5*time.Minute)))
		if got.Version <= claimed.Version {
			t.Fatalf("Version = %d after renewing, want more than %d", got.Version, claimed.Version)
		}
		if tasks := mustClaim(t, s, claimParams("node-2", at(4*time.Minute), time.Minute, 10,
			typeA)); len(tasks) != 0 {
			t.Fatalf("Claim within the renewed lease = %v", taskIDs(tasks))
		}
		mustComplete(t, s, deputy.Completion{ID: "a", ClaimVersion: claimed.ClaimVersion,
			Now: at(4 * time.Minute), RunAt: at(time.Hour)})
	})

	t.Run("ErrConflict", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base), newTask("b", typeB, base))
		first := claimOne(t, s, "a", typeA, "node-1", base)
		second := claimOne(t, s, "a", typeA, "node-2", at(2*time.Minute))
		b := claimOne(t, s, "b", typeB, "node-1", base)
		mustComplete(t, s, deputy.Completion{ID: "b", ClaimVersion: b.ClaimVersion, Now: base,
			RunAt: at(time.Hour)})

		errs, err := s.RenewLeases(t.Context(), []deputy.Lease{
			{ID: "a", ClaimVersion: first.ClaimVersion, Until: at(10 * time.Minute)},
			{ID: "b", ClaimVersion: b.ClaimVersion, Until: at(10 * time.Minute)},
			{ID: "missing", ClaimVersion: 1, Until: at(10 * time.Minute)},
		})
		wantItemCodes(t, "RenewLeases", errs, err,
			deputy.ECONFLICT, deputy.ECONFLICT, deputy.ENOTFOUND)

		wantTimePtr(t, "RetryAt of a", mustGet(t, s, "a").RetryAt, second.RetryAt)
		wantTimePtr(t, "RetryAt of b", mustGet(t, s, "b").RetryAt, nil)
	})
}

func testReleaseOwned(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a1", typeA, at(-time.Hour)), newTask("a2", typeA, at(-time.Hour)),
			newTask("b1", typeB, at(-time.Hour)), newTask("idle", typeC, at(time.Hour)))
		owned := mustClaim(t, s, claimParams("node-a", base, time.Hour, 10, typeA))
		if len(owned) != 2 {
			t.Fatalf("Claim = %v, want a1 and a2", taskIDs(owned))
		}
		other := claimOne(t, s, "b1", typeB, "node-b", base)

		n, err := s.ReleaseOwned(t.Context(), "node-a", at(time.Minute))
		if err != nil || n != 2 {
			t.Fatalf("ReleaseOwned = %d, %v; want 2", n, err)
		}

		for _, task := range owned {
			got := mustGet(t, s, task.ID)
			wantIdle(t, got)
			wantTime(t, "RunAt", got.RunAt, at(time.Minute))
			if got.Attempts != 1 {
				t.Fatalf("%s: Attempts = %d, want 1 (kept)", got.ID, got.Attempts)
			}
			errs, err := s.Complete(t.Context(), []deputy.Completion{{ID: task.ID,
				ClaimVersion: task.ClaimVersion, Now: at(2 * time.Minute), RunAt: at(time.Hour)}})
			wantItemCodes(t, "Complete", errs, err, deputy.ECONFLICT)
		}
		if got := mustGet(t, s, "b1"); got.OwnerID != "node-b" || got.Version != other.Version {
			t.Fatalf("another owner's task was touched: owner %s, version %d",
				got.OwnerID, got.Version)
		}
		if got := mustGet(t, s, "idle"); got.Version != 1 {
			t.Fatalf("an idle task was touched: version %d", got.Version)
		}

		reclaimed := mustClaim(t, s, claimParams("node-c", at(time.Minute), time.Hour, 10, typeA))
		if len(reclaimed) != 2 {
			t.Fatalf("Claim after release = %v, want a1 and a2", taskIDs(reclaimed))
		}
	})

	t.Run("NoneOwned", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		claimOne(t, s, "a", typeA, "node-a", base)
		n, err := s.ReleaseOwned(t.Context(), "node-z", base)
		if err != nil || n != 0 {
			t.Fatalf("ReleaseOwned = %d, %v; want 0", n, err)
		}
	})
}

func testNodes(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("Heartbeat", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, hb := range []struct {
			node string
			at   time.Time
		}{{"n1", base}, {"n2", at(10 * time.Second)}, {"n3", at(5 * time.Second)},
			{"n1", at(20 * time.Second)}} {
			if err := s.Heartbeat(t.Context(), hb.node, hb.at); err != nil {
				t.Fatalf("Heartbeat %s: %v", hb.node, err)
			}
		}

		nodes, err := s.Nodes(t.Context())
		if err != nil {
			t.Fatalf("Nodes: %v", err)
		}
		want := []deputy.Node{{ID: "n1", LastSeen: at(20 * time.Second)},
			{ID: "n2", LastSeen: at(10 * time.Second)}, {ID: "n3", LastSeen: at(5 * time.Second)}}
		if len(nodes) != len(want) {
			t.Fatalf("Nodes = %v, want %v", nodes, want)
		}
		for i := range want {
			if nodes[i].ID != want[i].ID || !nodes[i].LastSeen.Equal(want[i].LastSeen) {
				t.Fatalf("Nodes = %v, want %v", nodes, want)
			}
		}
	})

	t.Run("ClaimIsAHeartbeat", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, at(time.Minute)))
		if err := s.Heartbeat(t.Context(), "node-1", base); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
		// node-1 was silent (its heartbeats failed, say) but claims again,
		// with a heartbeat: the claim proves it alive, so its fresh run is
		// not released.
		p := claimParams("node-1", at(time.Minute), time.Minute, 10, typeA)
		p.Heartbeat = true
		if got := taskIDs(mustClaim(t, s, p)); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("Claim = %v, want [a]", got)
		}
		n, err := s.ReleaseDeadNodes(t.Context(), at(30*time.Second), at(time.Minute))
		if err != nil || n != 0 {
			t.Fatalf("ReleaseDeadNodes = %d, %v; want 0", n, err)
		}
		if got := mustGet(t, s, "a"); got.Status != deputy.StatusRunning || got.OwnerID != "node-1" {
			t.Fatalf("task after ReleaseDeadNodes: status %s, owner %s", got.Status, got.OwnerID)
		}
		nodes, err := s.Nodes(t.Context())
		if err != nil || len(nodes) != 1 {
			t.Fatalf("Nodes = %v, %v", nodes, err)
		}
		wantTime(t, "LastSeen", nodes[0].LastSeen, at(time.Minute))
	})

	t.Run("ClaimWithoutHeartbeat", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		if err := s.Heartbeat(t.Context(), "node-1", base); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
		claimOne(t, s, "a", typeA, "node-1", at(time.Minute))
		nodes, err := s.Nodes(t.Context())
		if err != nil || len(nodes) != 1 {
			t.Fatalf("Nodes = %v, %v", nodes, err)
		}
		// The claim left the heartbeat alone.
		wantTime(t, "LastSeen", nodes[0].LastSeen, base)
	})

	t.Run("ReleaseDeadNodesKeepsLaterClaims", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("d1", typeA, base), newTask("d2", typeB, base))
		if err := s.Heartbeat(t.Context(), "dead", base); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
		// The node claims twice without recording a heartbeat, then dies.
		claimOne(t, s, "d1", typeA, "dead", base)
		claimOne(t, s, "d2", typeB, "dead", at(45*time.Second))

		// d2 was claimed after the cutoff: it stays, and so does its node,
		// or no later call would find d2 to release.
		n, err := s.ReleaseDeadNodes(t.Context(), at(30*time.Second), at(time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("first ReleaseDeadNodes = %d, %v; want 1", n, err)
		}
		wantIdle(t, mustGet(t, s, "d1"))
		if got := mustGet(t, s, "d2"); got.Status != deputy.StatusRunning {
			t.Fatalf("d2 after the first release: status %s", got.Status)
		}
		nodes, err := s.Nodes(t.Context())
		if err != nil || len(nodes) != 1 || nodes[0].ID != "dead" {
			t.Fatalf("Nodes = %v, %v; want the dead node kept", nodes, err)
		}

		n, err = s.ReleaseDeadNodes(t.Context(), at(90*time.Second), at(2*time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("second ReleaseDeadNodes = %d, %v; want 1", n, err)
		}
		wantIdle(t, mustGet(t, s, "d2"))
		if nodes, err := s.Nodes(t.Context()); err != nil || len(nodes) != 0 {
			t.Fatalf("Nodes = %v, %v; want none", nodes, err)
		}
	})

	t.Run("ReleaseDeadNodes", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("d1", typeA, base), newTask("d2", typeA, base),
			newTask("l1", typeB, base))
		dead := mustClaim(t, s, claimParams("dead", base, time.Hour, 10, typeA))
		live := claimOne(t, s, "l1", typeB, "live", base)
		for node, seen := range map[string]time.Time{"dead": base, "live": at(time.Minute)} {
			if err := s.Heartbeat(t.Context(), node, seen); err != nil {
				t.Fatalf("Heartbeat: %v", err)
			}
		}

		n, err := s.ReleaseDeadNodes(t.Context(), at(30*time.Second), at(time.Minute))
		if err != nil || n != 2 {
			t.Fatalf("ReleaseDeadNodes = %d, %v; want 2", n, err)
		}

		nodes, err := s.Nodes(t.Context())
		if err != nil || len(nodes) != 1 || nodes[0].ID != "live" {
			t.Fatalf("Nodes = %v, %v; want only live", nodes, err)
		}
		for _, task := range dead {
			wantIdle(t, mustGet(t, s, task.ID))
			errs, err := s.Complete(t.Context(), []deputy.Completion{{ID: task.ID,
				ClaimVersion: task.ClaimVersion, Now: at(time.Minute), RunAt: at(time.Hour)}})
			wantItemCodes(t, "Complete of a dead node", errs, err, deputy.ECONFLICT)
		}
		if got := mustGet(t, s, "l1"); got.Status != deputy.StatusRunning || got.OwnerID != "live" {
			t.Fatalf("live node's task: status %s, owner %s", got.Status, got.OwnerID)
		}
		mustComplete(t, s, deputy.Completion{ID: "l1", ClaimVersion: live.ClaimVersion,
			Now: at(time.Minute), RunAt: at(time.Hour)})

		n, err = s.ReleaseDeadNodes(t.Context(), at(30*time.Second), at(time.Minute))
		if err != nil || n != 0 {
			t.Fatalf("second ReleaseDeadNodes = %d, %v; want 0", n, err)
		}
	})
}
