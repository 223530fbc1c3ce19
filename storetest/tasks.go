package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// fullTask returns an idle task with every field set, including a key the
// store must find recorded (es) and one the user brought (uiam).
func fullTask(id string) *deputy.Task {
	task := newTask(id, typeA, at(time.Minute+1500))
	task.Params = json.RawMessage(`{"b": [1, 2], "a": {"nested": true}, "s": "x\"y"}`)
	task.State = json.RawMessage(`{"count": 3}`)
	task.Schedule = &deputy.Schedule{Interval: "5m"}
	task.ScheduledAt = at(-time.Hour + 999)
	task.Attempts = 1
	task.Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	task.Scope = []string{"alerting", "rules"}
	task.TimeoutOverride = "90s"
	task.Priority = ptr(deputy.Priority(80))
	task.Cost = ptr(deputy.CostTiny)
	task.SpaceID = "marketing"
	task.EffectivePriority = 80
	task.EffectiveCost = deputy.CostTiny
	withKeys(task, taskKey("es", "es-"+id), userKey("uiam", "uiam-"+id))
	task.UserScope.SpaceID = "marketing"
	task.UserScope.UserName = "alice"
	return task
}

// runningTask returns a task as a claim leaves it, with an rrule schedule.
func runningTask(id string) *deputy.Task {
	task := newTask(id, typeB, at(-time.Minute))
	task.Schedule = &deputy.Schedule{RRule: &deputy.RRule{
		Freq:      deputy.Weekly,
		Interval:  2,
		TZID:      "Europe/Paris",
		ByHour:    []int{9, 17},
		ByMinute:  []int{30},
		ByWeekday: []string{"MO", "FR"},
		DTStart:   ptr(time.Date(2029, time.March, 1, 9, 30, 0, 0, time.UTC)),
	}}
	task.Status = deputy.StatusRunning
	task.OwnerID = "node-1"
	task.StartedAt = ptr(at(-30 * time.Second))
	task.RetryAt = ptr(at(5*time.Minute + 1))
	task.Attempts = 2
	task.Cost = ptr(deputy.CostLarge)
	task.EffectiveCost = deputy.CostLarge
	task.EffectivePriority = deputy.PriorityNormalLongRunning
	return task
}

func testInsert(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		task := newTask("t1", typeA, base)

		mustInsert(t, s, task)

		// NB: Insert takes no time; the store stamps the task with its own
		// clock, which the suite does not control.
		if task.Version != 1 {
			t.Fatalf("Version = %d, want 1", task.Version)
		}
		if task.CreatedAt.IsZero() {
			t.Fatalf("CreatedAt not set")
		}
		if !task.UpdatedAt.Equal(task.CreatedAt) {
			t.Fatalf("UpdatedAt = %s, want CreatedAt %s",
				fmtTime(task.UpdatedAt), fmtTime(task.CreatedAt))
		}
		wantTask(t, task, mustGet(t, s, "t1"))
	})

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "es-full", base))
		want := fullTask("full")
		task := want.Clone()
		mustInsert(t, s, task)

		want.Version = 1
		want.CreatedAt, want.UpdatedAt = task.CreatedAt, task.UpdatedAt
		wantTask(t, want, mustGet(t, s, "full"))
	})

	t.Run("RoundTripRunning", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		want := runningTask("running")
		mustInsert(t, s, want.Clone())
		wantTask(t, want, mustGet(t, s, "running"))
	})

	t.Run("RoundTripEmpty", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		want := newTask("bare", typeA, base)
		want.Enabled = false
		want.SpaceID = ""
		want.Scope = nil
		mustInsert(t, s, want.Clone())
		got := mustGet(t, s, "bare")
		wantTask(t, want, got)
		if len(got.Keys) != 0 || got.UserScope != nil || got.Schedule != nil {
			t.Fatalf("got keys %v, user scope %v, schedule %v; want none",
				got.Keys, got.UserScope, got.Schedule)
		}
	})

	t.Run("ErrConflictExistingID", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))

		dup := newTask("a", typeB, at(time.Hour))
		errs, err := s.Insert(t.Context(), []*deputy.Task{dup, newTask("b", typeA, base)})
		wantItemCodes(t, "Insert", errs, err, deputy.ECONFLICT, "")

		if got := mustGet(t, s, "a"); got.Type != typeA || got.Version != 1 {
			t.Fatalf("existing task overwritten: type %s, version %d", got.Type, got.Version)
		}
		mustGet(t, s, "b")
	})

	t.Run("ErrConflictDuplicateInBatch", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		errs, err := s.Insert(t.Context(), []*deputy.Task{
			newTask("a", typeA, base), newTask("a", typeB, base),
		})
		wantItemCodes(t, "Insert", errs, err, "", deputy.ECONFLICT)
		if got := mustGet(t, s, "a"); got.Type != typeA {
			t.Fatalf("Type = %s, want the first task's %s", got.Type, typeA)
		}
	})

	t.Run("ErrConflictUnrecordedKey", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		bad := withKeys(newTask("bad", typeA, base), taskKey("es", "unrecorded"),
			userKey("uiam", "user-key"))
		errs, err := s.Insert(t.Context(), []*deputy.Task{bad, newTask("good", typeA, base)})
		wantItemCodes(t, "Insert", errs, err, deputy.ECONFLICT, "")

		mustNotExist(t, s, "bad")
		mustGet(t, s, "good")
		wantRefs(t, s, "es", "unrecorded", 0, false)
		wantRefs(t, s, "uiam", "user-key", 0, false)
		wantQueued(t, allPending(t, s))
	})

	t.Run("Many", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var tasks []*deputy.Task
		for i := range 2000 {
			tasks = append(tasks, newTask(fmt.Sprintf("t%05d", i), typeA, at(time.Duration(i))))
		}
		mustInsert(t, s, tasks...)
		page, err := s.Fetch(t.Context(), deputy.Query{Size: 10000})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(page.Tasks) != 2000 {
			t.Fatalf("Fetch returned %d tasks, want 2000", len(page.Tasks))
		}
	})
}

func testGet(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		mustNotExist(t, s, "missing")
	})
}

func testGetMany(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "es-c", base))
		mustInsert(t, s, newTask("a", typeA, base), newTask("b", typeA, base),
			withKeys(newTask("c", typeA, base), taskKey("es", "es-c")))

		tasks, err := s.GetMany(t.Context(), []string{"c", "missing", "a", "b"})
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		if got := taskIDs(tasks); !slices.Equal(got, []string{"c", "a", "b"}) {
			t.Fatalf("GetMany = %v, want [c a b]", got)
		}
		want := keysString([]deputy.TaskKey{taskKey("es", "es-c")})
		if got := keysString(tasks[0].Keys); got != want {
			t.Fatalf("keys of c = %s, want %s", got, want)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		tasks, err := s.GetMany(t.Context(), nil)
		if err != nil || len(tasks) != 0 {
			t.Fatalf("GetMany(nil) = %v, %v; want nothing", taskIDs(tasks), err)
		}
	})
}

// fetchFixture inserts tasks that the Fetch and Aggregate filters tell
// apart.
func fetchFixture(t *testing.T, s deputy.Store) {
	t.Helper()
	a := newTask("a", typeA, at(time.Minute))
	a.Scope = []string{"alerting", "x"}
	a.UserScope = &deputy.UserScope{SpaceID: "default", UserName: "alice"}

	b := runningTask("b")
	b.Type = typeB
	b.RunAt = at(2 * time.Minute)
	b.Scope = []string{"reporting"}
	b.SpaceID = "s2"
	b.UserScope = &deputy.UserScope{SpaceID: "s2", UserName: "bob"}

	c := newTask("c", typeA, at(3*time.Minute))
	c.Enabled = false
	c.SpaceID = "s2"

	d := newTask("d", typeB, at(-time.Minute))
	d.Status = deputy.StatusUnrecognized

	e := newTask("e", typeC, base)
	e.Scope = []string{"alerting"}
	e.UserScope = &deputy.UserScope{SpaceID: "default", UserName: "alice"}

	f := newTask("f", typeA, at(-time.Minute))
	f.Scope = []string{"alerting-extra"}

	mustInsert(t, s, a, b, c, d, e, f)
}

func testFetch(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		fetchFixture(t, s)

		tests := []struct {
			name string
			q    deputy.Query
			want []string
		}{
			{"All", deputy.Query{}, []string{"d", "f", "e", "a", "b", "c"}},
			{"Types", deputy.Query{Types: []string{typeA, typeC}}, []string{"f", "e", "a", "c"}},
			{"Statuses", deputy.Query{Statuses: []deputy.Status{deputy.StatusRunning,
				deputy.StatusUnrecognized}}, []string{"d", "b"}},
			{"Scope", deputy.Query{Scope: "alerting"}, []string{"e", "a"}},
			{"SpaceID", deputy.Query{SpaceID: "s2"}, []string{"b", "c"}},
			{"UserName", deputy.Query{UserName: "alice"}, []string{"e", "a"}},
			{"Enabled", deputy.Query{Enabled: ptr(true)}, []string{"d", "f", "e", "a", "b"}},
			{"Disabled", deputy.Query{Enabled: ptr(false)}, []string{"c"}},
			{"DueBefore", deputy.Query{DueBefore: ptr(at(time.Minute))},
				[]string{"d", "f", "e", "a"}},
			{"Combined", deputy.Query{Types: []string{typeA}, Enabled: ptr(true),
				DueBefore: ptr(base)}, []string{"f"}},
			{"NoMatch", deputy.Query{Types: []string{"unknown"}}, []string{}},
		}
		for _, tt := range tests {
			page, err := s.Fetch(t.Context(), tt.q)
			if err != nil {
				t.Fatalf("%s: Fetch: %v", tt.name, err)
			}
			if got := taskIDs(page.Tasks); !slices.Equal(got, tt.want) {
				t.Fatalf("%s: Fetch = %v, want %v", tt.name, got, tt.want)
			}
			if page.Next != "" {
				t.Fatalf("%s: Next = %q on the only page", tt.name, page.Next)
			}
		}
	})

	t.Run("OrderByRunAtThenID", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("z", typeA, base), newTask("b", typeA, at(time.Second)),
			newTask("a", typeA, at(time.Second)), newTask("y", typeA, at(-time.Microsecond)))
		page, err := s.Fetch(t.Context(), deputy.Query{})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		want := []string{"y", "z", "a", "b"}
		if got := taskIDs(page.Tasks); !slices.Equal(got, want) {
			t.Fatalf("Fetch = %v, want %v", got, want)
		}
	})

	t.Run("ReturnsFields", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		want := runningTask("r")
		mustInsert(t, s, want.Clone())
		page, err := s.Fetch(t.Context(), deputy.Query{})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(page.Tasks) != 1 {
			t.Fatalf("Fetch = %v, want [r]", taskIDs(page.Tasks))
		}
		wantTask(t, want, page.Tasks[0])
	})

	t.Run("Paging", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var want []string
		for i := range 10 {
			// Pairs share a RunAt so that the cursor must break ties by id.
			id := fmt.Sprintf("t%02d", 9-i)
			mustInsert(t, s, newTask(id, typeA, at(time.Duration(i/2)*time.Second)))
		}
		for i := range 5 {
			want = append(want, fmt.Sprintf("t%02d", 8-2*i), fmt.Sprintf("t%02d", 9-2*i))
		}

		got, pages := fetchAll(t, s, deputy.Query{Size: 3})
		if !slices.Equal(got, want) {
			t.Fatalf("pages = %v, want %v", got, want)
		}
		if pages != 4 {
			t.Fatalf("fetched %d pages, want 4", pages)
		}
	})

	t.Run("PagingExactMultiple", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for i := range 9 {
			mustInsert(t, s, newTask(fmt.Sprintf("t%d", i), typeA, base))
		}
		got, pages := fetchAll(t, s, deputy.Query{Size: 3})
		if len(got) != 9 || pages != 3 {
			t.Fatalf("fetched %v in %d pages, want 9 tasks in 3 pages", got, pages)
		}
	})

	t.Run("PagingFiltered", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var want []string
		for i := range 12 {
			typ := typeA
			if i%3 == 0 {
				typ = typeB
				want = append(want, fmt.Sprintf("t%02d", i))
			}
			runAt := at(time.Duration(i) * time.Second)
			mustInsert(t, s, newTask(fmt.Sprintf("t%02d", i), typ, runAt))
		}
		got, _ := fetchAll(t, s, deputy.Query{Types: []string{typeB}, Size: 1})
		if !slices.Equal(got, want) {
			t.Fatalf("pages = %v, want %v", got, want)
		}
	})

	t.Run("ErrInvalidCursor", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		_, err := s.Fetch(t.Context(), deputy.Query{After: "not a cursor"})
		wantCode(t, "Fetch", err, deputy.EINVALID)
	})

	t.Run("DefaultSize", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var tasks []*deputy.Task
		for i := range 105 {
			tasks = append(tasks, newTask(fmt.Sprintf("t%03d", i), typeA, base))
		}
		mustInsert(t, s, tasks...)
		page, err := s.Fetch(t.Context(), deputy.Query{})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(page.Tasks) != 100 || page.Next == "" {
			t.Fatalf("Fetch returned %d tasks and Next %q, want 100 and a cursor",
				len(page.Tasks), page.Next)
		}
	})
}

// fetchAll pages through q and returns the ids and the number of pages.
func fetchAll(t *testing.T, s deputy.Store, q deputy.Query) ([]string, int) {
	t.Helper()
	var ids []string
	for pages := 1; pages < 1000; pages++ {
		page, err := s.Fetch(t.Context(), q)
		if err != nil {
			t.Fatalf("Fetch page %d: %v", pages, err)
		}
		if len(page.Tasks) == 0 {
			t.Fatalf("Fetch page %d is empty", pages)
		}
		if len(page.Tasks) > q.Size {
			t.Fatalf("Fetch page %d has %d tasks, want at most %d", pages, len(page.Tasks), q.Size)
		}
		ids = append(ids, taskIDs(page.Tasks)...)
		if page.Next == "" {
			return ids, pages
		}
		q.After = page.Next
	}
	t.Fatalf("Fetch never reached the last page")
	return nil, 0
}

func testAggregate(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		fetchFixture(t, s)
		extra := runningTask("g")
		extra.Type = typeA
		mustInsert(t, s, extra, newTask("h", typeA, base))

		tests := []struct {
			name string
			q    deputy.Query
			want map[string]int
		}{
			{"All", deputy.Query{}, map[string]int{
				typeA + "/idle": 3, typeA + "/running": 1,
				typeB + "/running": 1, typeC + "/idle": 1,
			}},
			{"Types", deputy.Query{Types: []string{typeB}}, map[string]int{typeB + "/running": 1}},
			{"Scope", deputy.Query{Scope: "alerting"}, map[string]int{
				typeA + "/idle": 1, typeC + "/idle": 1,
			}},
		}
		for _, tt := range tests {
			counts, err := s.Aggregate(t.Context(), tt.q)
			if err != nil {
				t.Fatalf("%s: Aggregate: %v", tt.name, err)
			}
			got := map[string]int{}
			for _, c := range counts {
				key := c.Type + "/" + string(c.Status)
				if _, dup := got[key]; dup {
					t.Fatalf("%s: Aggregate returned %s twice", tt.name, key)
				}
				got[key] = c.Count
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("%s: Aggregate = %v, want %v", tt.name, got, tt.want)
			}
		}
	})
}

func testUpdate(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "es-full", base))
		mustInsert(t, s, fullTask("full"))
		task := mustGet(t, s, "full")
		created := task.CreatedAt

		task.Type = typeB
		task.Params = json.RawMessage(`{"p": 2}`)
		task.State = json.RawMessage(`{"count": 4}`)
		task.Schedule = &deputy.Schedule{RRule: &deputy.RRule{Freq: deputy.Daily, TZID: "UTC"}}
		task.RunAt = at(time.Hour)
		task.ScheduledAt = at(time.Hour)
		task.Attempts = 0
		task.Traceparent = ""
		task.Scope = []string{"reporting"}
		task.Enabled = false
		task.TimeoutOverride = ""
		task.Priority = nil
		task.Cost = ptr(deputy.CostExtraLarge)
		task.SpaceID = "other"
		task.UserScope.UserName = "bob"
		task.EffectivePriority = deputy.PriorityNormal
		task.EffectiveCost = deputy.CostExtraLarge
		want := task.Clone()
		task.Keys = nil // ignored without ReplaceKeys

		mustUpdate(t, s, deputy.UpdateOptions{Now: at(2*time.Hour + 7)}, task)

		if task.Version != 2 {
			t.Fatalf("Version = %d, want 2", task.Version)
		}
		wantTime(t, "UpdatedAt", task.UpdatedAt, at(2*time.Hour+7))
		want.Version = 2
		want.CreatedAt = created
		want.UpdatedAt = at(2*time.Hour + 7)
		wantTask(t, want, mustGet(t, s, "full"))
		wantRefs(t, s, "es", "es-full", 1, true)
	})

	t.Run("ErrConflictStaleVersion", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base), newTask("b", typeA, base))
		first := mustGet(t, s, "a")
		stale := first.Clone()
		first.Params = json.RawMessage(`{"winner": true}`)
		mustUpdate(t, s, deputy.UpdateOptions{Now: at(time.Minute)}, first)

		stale.Params = json.RawMessage(`{"loser": true}`)
		other := mustGet(t, s, "b")
		errs, err := s.Update(t.Context(), []*deputy.Task{stale, other},
			deputy.UpdateOptions{Now: at(2 * time.Minute)})
		wantItemCodes(t, "Update", errs, err, deputy.ECONFLICT, "")

		got := mustGet(t, s, "a")
		if got.Version != 2 || !jsonEqual(got.Params, first.Params) {
			t.Fatalf("stale update was written: version %d, params %s", got.Version, got.Params)
		}
		wantTime(t, "UpdatedAt", got.UpdatedAt, at(time.Minute))
		if got := mustGet(t, s, "b"); got.Version != 2 {
			t.Fatalf("other task version = %d, want 2", got.Version)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		ghost := newTask("ghost", typeA, base)
		ghost.Version = 1
		errs, err := s.Update(t.Context(), []*deputy.Task{ghost, mustGet(t, s, "a")},
			deputy.UpdateOptions{Now: base})
		wantItemCodes(t, "Update", errs, err, deputy.ENOTFOUND, "")
		mustNotExist(t, s, "ghost")
	})

	t.Run("ReplaceKeys", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "old", base), keyRecord("es", "new", base),
			keyRecord("uiam", "kept", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "old"),
			taskKey("uiam", "kept")))
		task := mustGet(t, s, "a")

		withKeys(task, taskKey("es", "new"), taskKey("uiam", "kept"))
		mustUpdate(t, s, deputy.UpdateOptions{Now: at(time.Minute), ReplaceKeys: true}, task)

		got := mustGet(t, s, "a")
		if w, g := keysString(task.Keys), keysString(got.Keys); w != g {
			t.Fatalf("keys = %s, want %s", g, w)
		}
		wantRefs(t, s, "es", "old", 0, false)
		wantRefs(t, s, "es", "new", 1, true)
		wantRefs(t, s, "uiam", "kept", 1, true)
		queued := allPending(t, s)
		wantQueued(t, queued, "old")
		wantSecret(t, "queued secret", queued[0].Secret, recordSecret("es", "old"))
		wantTime(t, "QueuedAt", queued[0].QueuedAt, at(time.Minute))
		wantTimePtr(t, "HoldUntil", queued[0].HoldUntil, nil)
	})

	t.Run("ReplaceKeysDropAll", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "old", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "old")))
		task := mustGet(t, s, "a")
		task.Keys, task.UserScope = nil, nil
		mustUpdate(t, s, deputy.UpdateOptions{Now: at(time.Minute), ReplaceKeys: true}, task)

		if got := mustGet(t, s, "a"); len(got.Keys) != 0 {
			t.Fatalf("keys = %s, want none", keysString(got.Keys))
		}
		wantQueued(t, allPending(t, s), "old")
	})

	t.Run("ReplaceKeysErrConflictUnrecorded", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "old", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "old")))
		task := mustGet(t, s, "a")
		want := task.Clone()

		withKeys(task, taskKey("es", "unrecorded"))
		task.Params = json.RawMessage(`{"changed": true}`)
		errs, err := s.Update(t.Context(), []*deputy.Task{task},
			deputy.UpdateOptions{Now: at(time.Minute), ReplaceKeys: true})
		wantItemCodes(t, "Update", errs, err, deputy.ECONFLICT)

		wantTask(t, want, mustGet(t, s, "a"))
		wantRefs(t, s, "es", "old", 1, true)
		wantQueued(t, allPending(t, s))
	})

	t.Run("ReplaceKeysRunningHoldsUntilLease", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "old", base), keyRecord("es", "new", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "old")))
		claimed := claimOne(t, s, "a", typeA, "node-1", base)

		task := mustGet(t, s, "a")
		withKeys(task, taskKey("es", "new"))
		mustUpdate(t, s, deputy.UpdateOptions{Now: at(time.Second), ReplaceKeys: true}, task)

		queued := allPending(t, s)
		wantQueued(t, queued, "old")
		wantTimePtr(t, "HoldUntil", queued[0].HoldUntil, claimed.RetryAt)

		// The run still completes: Update does not touch the claim.
		mustComplete(t, s, deputy.Completion{ID: "a", ClaimVersion: claimed.ClaimVersion,
			Now: at(2 * time.Second), RunAt: at(time.Hour)})
	})
}

func testRemove(t *testing.T, newStore func(t *testing.T) deputy.Store) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "k", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "k")),
			newTask("b", typeA, base))

		errs, err := s.Remove(t.Context(), []string{"a", "missing", "b"}, at(time.Minute))
		wantItemCodes(t, "Remove", errs, err, "", deputy.ENOTFOUND, "")

		mustNotExist(t, s, "a")
		mustNotExist(t, s, "b")
		wantRefs(t, s, "es", "k", 0, false)
		queued := allPending(t, s)
		wantQueued(t, queued, "k")
		if k := queued[0]; k.Kind != "es" || k.Attempts != 0 || k.LastError != "" ||
			k.NextAttemptAt != nil || k.HoldUntil != nil {
			t.Fatalf("queued key = %+v, want a fresh entry", k)
		}
		wantSecret(t, "queued secret", queued[0].Secret, recordSecret("es", "k"))
		wantTime(t, "QueuedAt", queued[0].QueuedAt, at(time.Minute))
	})

	t.Run("ErrNotFoundTwice", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustInsert(t, s, newTask("a", typeA, base))
		errs, err := s.Remove(t.Context(), []string{"a", "a"}, base)
		wantItemCodes(t, "Remove", errs, err, "", deputy.ENOTFOUND)
	})

	t.Run("RunningHoldsUntilLease", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustRecordKeys(t, s, keyRecord("es", "k", base))
		mustInsert(t, s, withKeys(newTask("a", typeA, base), taskKey("es", "k")))
		claimed := claimOne(t, s, "a", typeA, "node-1", base)

		mustRemove(t, s, at(time.Second), "a")

		queued := allPending(t, s)
		wantQueued(t, queued, "k")
		wantTimePtr(t, "HoldUntil", queued[0].HoldUntil, claimed.RetryAt)
		errs, err := s.Complete(t.Context(), []deputy.Completion{{ID: "a",
			ClaimVersion: claimed.ClaimVersion, Now: at(2 * time.Second), RunAt: at(time.Hour)}})
		wantItemCodes(t, "Complete", errs, err, deputy.ENOTFOUND)
	})
}
