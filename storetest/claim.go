package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// withPriority sets a task's effective priority.
func withPriority(task *deputy.Task, p deputy.Priority) *deputy.Task {
	task.EffectivePriority = p
	return task
}

// withCost sets a task's effective cost.
func withCost(task *deputy.Task, c deputy.Cost) *deputy.Task {
	task.EffectiveCost = c
	return task
}

// expired returns a task whose run by owner started before its RunAt and
// whose lease expired at retryAt.
func expired(id, typ, owner string, runAt, retryAt time.Time) *deputy.Task {
	task := newTask(id, typ, runAt)
	task.Status = deputy.StatusRunning
	task.OwnerID = owner
	task.StartedAt = ptr(runAt)
	task.RetryAt = ptr(retryAt)
	task.Attempts = 1
	return task
}

// claimSequence claims one task at a time at now and returns the ids in
// claim order.
func claimSequence(t *testing.T, s deputy.Store, now time.Time, types ...string) []string {
	t.Helper()
	var ids []string
	for range 100 {
		p := claimParams("node-1", now, time.Hour, 100, types...)
		p.MaxTasks = 1
		tasks := mustClaim(t, s, p)
		if len(tasks) == 0 {
			return ids
		}
		if len(tasks) > 1 {
			t.Fatalf("Claim with MaxTasks 1 claimed %v", taskIDs(tasks))
		}
		ids = append(ids, tasks[0].ID)
	}
	t.Fatalf("Claim never ran out of tasks: %v", ids)
	return nil
}

func testClaim(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "es-full", base))
		want := fullTask("full")
		want.RunAt = at(-time.Minute)
		mustInsert(t, s, want.Clone())
		stored := mustGet(t, s, "full")

		tasks := mustClaim(t, s, claimParams("node-1", base, 90*time.Second, 10, typeA))
		if got := taskIDs(tasks); !slices.Equal(got, []string{"full"}) {
			t.Fatalf("Claim = %v, want [full]", got)
		}
		claimed := tasks[0]

		want.Status = deputy.StatusRunning
		want.OwnerID = "node-1"
		want.StartedAt = ptr(base)
		want.Attempts = stored.Attempts + 1
		want.RetryAt = ptr(at(90 * time.Second))
		want.ScheduledAt = want.RunAt
		want.Version = stored.Version + 1
		want.CreatedAt = stored.CreatedAt
		wantTask(t, want, claimed)
		if claimed.ClaimVersion <= 0 {
			t.Fatalf("ClaimVersion = %d, want a positive claim token", claimed.ClaimVersion)
		}
		wantTask(t, want, mustGet(t, s, "full"))
	})

	t.Run("Eligibility", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		disabled := newTask("disabled", typeA, at(-time.Hour))
		disabled.Enabled = false
		unrecognized := newTask("unrecognized", typeA, at(-time.Hour))
		unrecognized.Status = deputy.StatusUnrecognized
		failed := newTask("failed", typeA, at(-time.Hour))
		failed.Status = deputy.StatusFailed
		claiming := expired("claiming", typeA, "node-0", at(-time.Hour), base)
		claiming.Status = deputy.StatusClaiming
		disabledExpired := expired("disabled-expired", typeA, "node-0", at(-time.Hour),
			at(-time.Minute))
		disabledExpired.Enabled = false
		mustInsert(t, s,
			newTask("due", typeA, at(-time.Second)),
			newTask("due-now", typeA, base),
			newTask("future", typeA, at(time.Microsecond)),
			newTask("other-type", typeC, at(-time.Hour)),
			newTask("type-b", typeB, at(-time.Hour)),
			disabled, unrecognized, failed, claiming, disabledExpired,
			expired("expired", typeA, "node-0", at(-time.Hour), at(-time.Minute)),
			expired("expires-now", typeA, "node-0", at(-time.Hour), base),
			expired("live", typeA, "node-0", at(-time.Hour), at(time.Microsecond)),
		)

		tasks := mustClaim(t, s, claimParams("node-1", base, time.Minute, 100, typeA, typeB))
		got := taskIDs(tasks)
		slices.Sort(got)
		want := []string{"claiming", "due", "due-now", "expired", "expires-now", "type-b"}
		if !slices.Equal(got, want) {
			t.Fatalf("Claim = %v, want %v", got, want)
		}
		if live := mustGet(t, s, "live"); live.OwnerID != "node-0" {
			t.Fatalf("task with a live lease was taken over by %s", live.OwnerID)
		}
	})

	t.Run("NoTypes", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		if tasks := mustClaim(t, s, claimParams("node-1", base, time.Minute, 10)); len(tasks) != 0 {
			t.Fatalf("Claim without types = %v, want nothing", taskIDs(tasks))
		}
	})

	t.Run("Order", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s,
			withPriority(newTask("low-early", typeA, at(-time.Hour)), deputy.PriorityLow),
			newTask("normal-3m", typeA, at(-3*time.Minute)),
			newTask("normal-1m", typeA, at(-time.Minute)),
			// Due at its expired lease (-2m), not at its RunAt (-10m).
			expired("expired-2m", typeA, "node-0", at(-10*time.Minute), at(-2*time.Minute)),
			newTask("tie-b", typeB, at(-90*time.Second)),
			newTask("tie-a", typeA, at(-90*time.Second)),
			withPriority(newTask("high-late", typeB, base), 100),
		)

		got := claimSequence(t, s, base, typeA, typeB)
		want := []string{"high-late", "normal-3m", "expired-2m", "tie-a", "tie-b", "normal-1m",
			"low-early"}
		if !slices.Equal(got, want) {
			t.Fatalf("claim order = %v, want %v", got, want)
		}
	})

	t.Run("OrderInOneClaim", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s,
			newTask("b", typeA, at(-time.Minute)),
			newTask("a", typeA, at(-time.Minute)),
			withPriority(newTask("high", typeA, base), 100),
			newTask("early", typeA, at(-time.Hour)),
		)
		tasks := mustClaim(t, s, claimParams("node-1", base, time.Minute, 100, typeA))
		got := taskIDs(tasks)
		slices.Sort(got)
		if want := []string{"a", "b", "early", "high"}; !slices.Equal(got, want) {
			t.Fatalf("Claim = %v, want %v", got, want)
		}
	})

	t.Run("BudgetStopsAtFirstMisfit", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s,
			withCost(newTask("c1", typeA, at(-4*time.Minute)), deputy.CostNormal),
			withCost(newTask("c2", typeA, at(-3*time.Minute)), deputy.CostNormal),
			withCost(newTask("c3", typeA, at(-2*time.Minute)), deputy.CostExtraLarge),
			withCost(newTask("c4", typeA, at(-time.Minute)), deputy.CostTiny),
		)

		steps := []struct {
			budget int
			want   []string
		}{
			{5, []string{"c1", "c2"}}, // c3 does not fit, and c4 must not skip ahead of it
			{9, []string{}},           // c3 still does not fit
			{10, []string{"c3"}},      // c4 does not fit after c3
			{1, []string{"c4"}},
			{10, []string{}},
		}
		for i, step := range steps {
			tasks := mustClaim(t, s, claimParams("node-1", base, time.Minute, step.budget, typeA))
			got := taskIDs(tasks)
			slices.Sort(got)
			if !slices.Equal(got, step.want) {
				t.Fatalf("step %d: Claim with budget %d = %v, want %v",
					i, step.budget, got, step.want)
			}
		}
	})

	t.Run("MaxTasks", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for i := range 5 {
			mustInsert(t, s, withCost(newTask(fmt.Sprintf("t%d", i), typeA,
				at(time.Duration(i-10)*time.Second)), deputy.CostTiny))
		}

		p := claimParams("node-1", base, time.Minute, 100, typeA)
		p.MaxTasks = 2
		if got := taskIDs(mustClaim(t, s, p)); len(got) != 2 {
			t.Fatalf("Claim with MaxTasks 2 = %v", got)
		}
		p.MaxTasks = 0
		p.Budget = 2
		if got := taskIDs(mustClaim(t, s, p)); len(got) != 2 {
			t.Fatalf("Claim with budget 2 = %v", got)
		}
		p.Budget = 0
		if got := taskIDs(mustClaim(t, s, p)); len(got) != 0 {
			t.Fatalf("Claim with budget 0 = %v", got)
		}
	})

	t.Run("ExpiredLease", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, at(-time.Minute)))
		first := claimOne(t, s, "a", typeA, "node-1", base)

		if tasks := mustClaim(t, s, claimParams("node-2", at(59*time.Second), time.Minute, 10,
			typeA)); len(tasks) != 0 {
			t.Fatalf("Claim during the lease = %v, want nothing", taskIDs(tasks))
		}
		second := claimOne(t, s, "a", typeA, "node-2", at(time.Minute))

		if second.OwnerID != "node-2" || second.Attempts != 2 {
			t.Fatalf("reclaimed task: owner %s, attempts %d; want node-2, 2",
				second.OwnerID, second.Attempts)
		}
		wantTime(t, "ScheduledAt", second.ScheduledAt, *first.RetryAt)
		wantTime(t, "RunAt", second.RunAt, at(-time.Minute))
		wantTimePtr(t, "StartedAt", second.StartedAt, ptr(at(time.Minute)))
		wantTimePtr(t, "RetryAt", second.RetryAt, ptr(at(2*time.Minute)))
		if second.ClaimVersion == first.ClaimVersion || second.ClaimVersion <= 0 {
			t.Fatalf("ClaimVersion %d after %d; want a new claim token",
				second.ClaimVersion, first.ClaimVersion)
		}
	})

	t.Run("ReturnsKeysWithSecrets", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "k", base))
		task := withKeys(newTask("a", typeA, base), taskKey("es", "k"), userKey("uiam", "u"))
		mustInsert(t, s, task, newTask("b", typeA, base))

		tasks := mustClaim(t, s, claimParams("node-1", base, time.Minute, 10, typeA))
		if len(tasks) != 2 {
			t.Fatalf("Claim = %v, want a and b", taskIDs(tasks))
		}
		for _, got := range tasks {
			want := ""
			if got.ID == "a" {
				want = keysString(task.Keys)
			}
			if g := keysString(got.Keys); g != want {
				t.Fatalf("keys of %s = %s, want %s", got.ID, g, want)
			}
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		const n, workers = 300, 8
		var tasks []*deputy.Task
		for i := range n {
			tasks = append(tasks, withCost(newTask(fmt.Sprintf("t%03d", i), typeA,
				at(-time.Duration(i)*time.Millisecond)), deputy.CostTiny))
		}
		mustInsert(t, s, tasks...)

		var (
			mu      sync.Mutex
			claims  = map[string]int{}
			failure error
			wg      sync.WaitGroup
		)
		for w := range workers {
			wg.Go(func() {
				owner := fmt.Sprintf("node-%d", w)
				err := claimUntilEmpty(t, s, owner, func(claimed []*deputy.Task) {
					mu.Lock()
					defer mu.Unlock()
					for _, task := range claimed {
						claims[task.ID]++
					}
				})
				mu.Lock()
				defer mu.Unlock()
				failure = cmpOrErr(failure, err)
			})
		}
		wg.Wait()

		if failure != nil {
			t.Fatalf("worker: %v", failure)
		}
		if len(claims) != n {
			t.Fatalf("claimed %d distinct tasks, want %d", len(claims), n)
		}
		for id, c := range claims {
			if c != 1 {
				t.Fatalf("task %s claimed %d times", id, c)
			}
		}
		running := deputy.Query{Statuses: []deputy.Status{deputy.StatusRunning}}
		page, err := s.Fetch(t.Context(), running)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(page.Tasks) != 0 {
			t.Fatalf("tasks still running after their completion: %v", taskIDs(page.Tasks))
		}
		page, err = s.Fetch(t.Context(), deputy.Query{Size: 1000})
		if err != nil || len(page.Tasks) != n/2 {
			t.Fatalf("Fetch after completing = %d tasks, %v; want the %d rescheduled ones",
				len(page.Tasks), err, n/2)
		}
	})
}

// claimUntilEmpty claims small batches as owner and completes them, deleting
// the tasks whose id ends in an even digit and rescheduling the others, until
// nothing is claimable. It
// reports claimed batches to seen. It runs in its own goroutine, so it
// returns errors instead of failing t.
func claimUntilEmpty(t *testing.T, s deputy.Store, owner string, seen func([]*deputy.Task)) error {
	for range 1000 {
		p := claimParams(owner, base, time.Hour, 3, typeA)
		claimed, err := s.Claim(t.Context(), p)
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		if len(claimed) == 0 {
			return nil
		}
		seen(claimed)

		var cs []deputy.Completion
		for _, task := range claimed {
			if task.OwnerID != owner || task.Status != deputy.StatusRunning {
				return fmt.Errorf("claimed %s: owner %s, status %s",
					task.ID, task.OwnerID, task.Status)
			}
			cs = append(cs, deputy.Completion{
				ID: task.ID, ClaimVersion: task.ClaimVersion, Now: base,
				Delete: (task.ID[len(task.ID)-1]-'0')%2 == 0,
				RunAt:  at(time.Hour), State: json.RawMessage(`{"done":true}`),
			})
		}
		errs, err := s.Complete(t.Context(), cs)
		if err != nil {
			return fmt.Errorf("complete: %w", err)
		}
		for i, err := range errs {
			if err != nil {
				return fmt.Errorf("complete %s: %w", cs[i].ID, err)
			}
		}
	}
	return fmt.Errorf("claim never ran out of tasks")
}

// cmpOrErr returns the first non-nil error.
func cmpOrErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
