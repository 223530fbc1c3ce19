package deputy_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/sqlite"
)

// clock is a settable clock for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openStore(tb testing.TB) deputy.Store { return openSQLite(tb) }

func openSQLite(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(tb.TempDir(), "deputy.db")})
	if err != nil {
		tb.Fatalf("open sqlite: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

type harness struct {
	store deputy.Store
	clock *clock
	m     *deputy.Manager
}

func newHarness(t *testing.T, cfg deputy.Config, defs ...deputy.Definition) *harness {
	t.Helper()
	h := &harness{store: openStore(t), clock: newClock()}
	h.m = h.manager(t, cfg, defs...)
	return h
}

// manager builds another manager over the harness's store and clock.
func (h *harness) manager(t *testing.T, cfg deputy.Config, defs ...deputy.Definition) *deputy.Manager {
	t.Helper()
	cfg.Now = h.clock.Now
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	m, err := deputy.New(h.store, cfg)
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	if err := m.Register(defs...); err != nil {
		t.Fatalf("register: %v", err)
	}
	return m
}

func (h *harness) start(t *testing.T, m *deputy.Manager) {
	t.Helper()
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) task(t *testing.T, id string) *deputy.Task {
	t.Helper()
	task, err := h.store.Get(context.Background(), id)
	if err != nil && deputy.ErrorCode(err) != deputy.ENOTFOUND {
		t.Fatalf("get %s: %v", id, err)
	}
	return task
}

// recorder is a definition whose runs are observed by the test.
type recorder struct {
	runs chan *deputy.Run
	fn   func(ctx context.Context, r *deputy.Run) (deputy.Result, error)
}

type runFunc = func(ctx context.Context, r *deputy.Run) (deputy.Result, error)

func newRecorder(typ string, fn runFunc) (*recorder, deputy.Definition) {
	rec := &recorder{runs: make(chan *deputy.Run, 100), fn: fn}
	return rec, deputy.Definition{Type: typ, Run: func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		rec.runs <- r
		if rec.fn == nil {
			return deputy.Result{}, nil
		}
		return rec.fn(ctx, r)
	}}
}

func (r *recorder) next(t *testing.T) *deputy.Run {
	t.Helper()
	select {
	case run := <-r.runs:
		return run
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a run")
		return nil
	}
}

func TestManager_Schedule(t *testing.T) {
	t.Parallel()
	_, def := newRecorder("job", nil)
	h := newHarness(t, deputy.Config{}, def)
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		task, err := h.m.Schedule(ctx, deputy.NewTask{Type: "job", Params: json.RawMessage(`{"a":1}`)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if task.ID == "" || task.Status != deputy.StatusIdle || !task.Enabled || task.Version != 1 ||
			string(task.Params) != `{"a":1}` || string(task.State) != `{}` || task.SpaceID != "default" ||
			!task.RunAt.Equal(h.clock.Now()) {
			t.Fatalf("scheduled task = %+v", task)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		if _, err := h.m.Schedule(ctx, deputy.NewTask{ID: "dup", Type: "job"}, nil); err != nil {
			t.Fatal(err)
		}
		_, err := h.m.Schedule(ctx, deputy.NewTask{ID: "dup", Type: "job"}, nil)
		if deputy.ErrorCode(err) != deputy.ECONFLICT {
			t.Fatalf("second schedule = %v; want conflict", err)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		bad := map[string]deputy.NewTask{
			"unknown type":  {Type: "nope"},
			"no type":       {},
			"params array":  {Type: "job", Params: json.RawMessage(`[1]`)},
			"bad interval":  {Type: "job", Schedule: &deputy.Schedule{Interval: "often"}},
			"rrule no tzid": {Type: "job", Schedule: &deputy.Schedule{RRule: &deputy.RRule{Freq: "DAILY"}}},
			"bad timeout":   {Type: "job", TimeoutOverride: "soon"},
			"bad id":        {ID: "a/b", Type: "job"},
		}
		for name, nt := range bad {
			if _, err := h.m.Schedule(ctx, nt, nil); deputy.ErrorCode(err) != deputy.EINVALID {
				t.Errorf("%s: err = %v; want invalid", name, err)
			}
		}
		// A bulk call with one invalid task stores nothing.
		_, err := h.m.BulkSchedule(ctx, []deputy.NewTask{{ID: "good", Type: "job"}, {Type: "nope"}}, nil)
		if deputy.ErrorCode(err) != deputy.EINVALID {
			t.Fatalf("bulk with an invalid task = %v; want invalid", err)
		}
		if task := h.task(t, "good"); task != nil {
			t.Fatalf("bulk with an invalid task stored %s", task.ID)
		}
	})
}

func TestManager_RunsOneOffTask(t *testing.T) {
	t.Parallel()
	rec, def := newRecorder("job", nil)
	h := newHarness(t, deputy.Config{}, def)
	h.start(t, h.m)

	nt := deputy.NewTask{Type: "job", Params: json.RawMessage(`{"x":1}`)}
	task, err := h.m.Schedule(context.Background(), nt, nil)
	if err != nil {
		t.Fatal(err)
	}
	run := rec.next(t)
	if run.Task.ID != task.ID || string(run.Task.Params) != `{"x":1}` || run.Task.Attempts != 1 ||
		run.Request != nil || len(run.Task.Keys) != 0 {
		t.Fatalf("run = %+v", run.Task)
	}
	waitFor(t, "the task to be removed", func() bool { return h.task(t, task.ID) == nil })
}

func TestManager_RecurringTask(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	rec, def := newRecorder("tick", func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		return deputy.Result{State: json.RawMessage(`{"n":` + string(rune('0'+n.Add(1))) + `}`)}, nil
	})
	h := newHarness(t, deputy.Config{}, def)
	h.start(t, h.m)
	start := h.clock.Now()
	if _, err := h.m.Schedule(context.Background(),
		deputy.NewTask{ID: "r", Type: "tick", Schedule: &deputy.Schedule{Interval: "1m"}}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	waitFor(t, "the first outcome", func() bool {
		task := h.task(t, "r")
		return task.Status == deputy.StatusIdle && string(task.State) == `{"n":1}`
	})
	task := h.task(t, "r")
	if !task.RunAt.Equal(start.Add(time.Minute)) || task.Attempts != 0 || task.OwnerID != "" {
		t.Fatalf("after one run: %+v", task)
	}

	// Nothing runs before the next occurrence; then exactly one run.
	h.clock.Advance(time.Minute)
	rec.next(t)
	waitFor(t, "the second outcome", func() bool { return string(h.task(t, "r").State) == `{"n":2}` })
	if got := h.task(t, "r").RunAt; !got.Equal(start.Add(2 * time.Minute)) {
		t.Fatalf("next run at %v; want %v", got, start.Add(2*time.Minute))
	}
	select {
	case <-rec.runs:
		t.Fatal("ran twice for one occurrence")
	default:
	}
}

func TestManager_RetriesThenRemoves(t *testing.T) {
	t.Parallel()
	rec, def := newRecorder("flaky", func(context.Context, *deputy.Run) (deputy.Result, error) {
		return deputy.Result{}, errors.New("boom")
	})
	def.MaxAttempts = 2
	h := newHarness(t, deputy.Config{}, def)
	h.start(t, h.m)
	if _, err := h.m.Schedule(context.Background(), deputy.NewTask{ID: "f", Type: "flaky"}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	waitFor(t, "the retry to be scheduled", func() bool {
		task := h.task(t, "f")
		return task.Status == deputy.StatusIdle && task.Attempts == 1
	})
	if got, want := h.task(t, "f").RunAt, h.clock.Now().Add(30*time.Second); !got.Equal(want) {
		t.Fatalf("retry at %v; want %v", got, want)
	}
	h.clock.Advance(31 * time.Second)
	if run := rec.next(t); run.Task.Attempts != 2 {
		t.Fatalf("second attempt sees attempts %d", run.Task.Attempts)
	}
	waitFor(t, "the task to be removed after its last attempt", func() bool { return h.task(t, "f") == nil })
}

func TestManager_Timeout(t *testing.T) {
	t.Parallel()
	rec, def := newRecorder("slow", func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		<-ctx.Done()
		return deputy.Result{}, ctx.Err()
	})
	def.Timeout = 20 * time.Millisecond
	h := newHarness(t, deputy.Config{}, def)
	h.start(t, h.m)
	if _, err := h.m.Schedule(context.Background(), deputy.NewTask{ID: "s", Type: "slow"}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	waitFor(t, "the timed-out run to be retried later", func() bool {
		task := h.task(t, "s")
		return task.Status == deputy.StatusIdle && task.Attempts == 1 && task.RunAt.After(h.clock.Now())
	})
}

func TestManager_StopInterruptsRuns(t *testing.T) {
	t.Parallel()
	rec, def := newRecorder("block", func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		<-ctx.Done()
		return deputy.Result{}, ctx.Err()
	})
	h := newHarness(t, deputy.Config{}, def)
	if err := h.m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Schedule(context.Background(), deputy.NewTask{ID: "b", Type: "block"}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	task := h.task(t, "b")
	if task.Status != deputy.StatusIdle || task.Attempts != 0 || task.OwnerID != "" || task.RunAt.After(h.clock.Now()) {
		t.Fatalf("interrupted task = %+v; want idle, due, attempt not counted", task)
	}
	if err := h.m.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop = %v", err)
	}
}

func TestManager_StartReleasesOwnedTasks(t *testing.T) {
	t.Parallel()
	rec, def := newRecorder("job", nil)
	h := newHarness(t, deputy.Config{NodeID: "node-1"}, def)
	ctx := context.Background()
	if _, err := h.m.Schedule(ctx, deputy.NewTask{ID: "j", Type: "job"}, nil); err != nil {
		t.Fatal(err)
	}
	// A previous life of node-1 claimed the task and died.
	claimed, err := h.store.Claim(ctx, deputy.ClaimParams{
		Owner: "node-1", Now: h.clock.Now(), Types: []string{"job"}, Budget: 10, Lease: time.Hour,
	})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim = %v, %v", claimed, err)
	}
	h.start(t, h.m)
	run := rec.next(t)
	if run.Task.ID != "j" || run.Task.Attempts != 2 {
		t.Fatalf("rerun = %+v", run.Task)
	}
}

func TestManager_DisableDuringRunSurvives(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rec, def := newRecorder("job", func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		<-release
		return deputy.Result{State: json.RawMessage(`{"done":true}`)}, nil
	})
	h := newHarness(t, deputy.Config{}, def)
	h.start(t, h.m)
	ctx := context.Background()
	nt := deputy.NewTask{ID: "d", Type: "job", Schedule: &deputy.Schedule{Interval: "1h"}}
	if _, err := h.m.Schedule(ctx, nt, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	res, err := h.m.BulkDisable(ctx, []string{"d"}, false, nil)
	if err != nil || len(res.Errors) != 0 {
		t.Fatalf("disable = %+v, %v", res, err)
	}
	close(release)
	waitFor(t, "the outcome", func() bool { return string(h.task(t, "d").State) == `{"done":true}` })
	if task := h.task(t, "d"); task.Enabled {
		t.Fatalf("the run re-enabled the task: %+v", task)
	}
}

// longRuns returns a definition of type "long" whose runs last until
// cancelled, which each reports on ended, or until the test ends. Its
// MaxConcurrency of 1 keeps the node from claiming while one runs.
func longRuns(t *testing.T) (*recorder, deputy.Definition, <-chan struct{}) {
	ended := make(chan struct{}, 2)
	rec, def := newRecorder("long", func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		select {
		case <-ctx.Done():
			ended <- struct{}{}
			return deputy.Result{}, ctx.Err()
		case <-t.Context().Done(): // before the manager stops
			return deputy.Result{}, nil
		}
	})
	def.Timeout = time.Hour
	def.MaxConcurrency = 1
	return rec, def, ended
}

// renewalsDown is a SQLite store whose lease renewals fail, as when the
// database is out of reach for a while; everything else works.
type renewalsDown struct {
	*sqlite.DB
	calls atomic.Int32
}

func (s *renewalsDown) RenewLeases(context.Context, []deputy.Lease) ([]error, error) {
	s.calls.Add(1)
	return nil, errors.New("renewals refused by the test")
}

// A run whose lease runs out before a renewal succeeds is cancelled, since
// another node may claim its task from then on; until then it goes on.
// Its attempt does not count: the store was out of reach, not the task at
// fault.
func TestManager_CancelsRunWhoseLeaseRanOut(t *testing.T) {
	t.Parallel()
	rec, def, ended := longRuns(t)
	store := &renewalsDown{DB: openSQLite(t)}
	h := &harness{store: store, clock: newClock()}
	h.m = h.manager(t, deputy.Config{Lease: time.Second}, def)
	h.start(t, h.m)
	if _, err := h.m.Schedule(context.Background(), deputy.NewTask{ID: "l", Type: "long"}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	waitFor(t, "a renewal", func() bool { return store.calls.Load() > 0 })
	select {
	case <-ended:
		t.Fatal("the run was cancelled while its lease held")
	default:
	}

	h.clock.Advance(time.Second)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the run went on after its lease ran out")
	}
	// No node claimed the task meanwhile, so the interrupted run hands it
	// back, due at once with its attempt not counted, and it runs again.
	if run := rec.next(t); run.Task.Attempts != 1 {
		t.Fatalf("the run after the lapse is attempt %d, want 1", run.Task.Attempts)
	}
}

// heartbeatsDown is a SQLite store whose heartbeats fail once down is
// set, as when a node is cut off from the database; other calls work.
type heartbeatsDown struct {
	*sqlite.DB
	down  atomic.Bool
	calls atomic.Int32
}

func (s *heartbeatsDown) Heartbeat(ctx context.Context, node string, now time.Time) error {
	if s.down.Load() {
		s.calls.Add(1)
		return errors.New("heartbeats refused by the test")
	}
	return s.DB.Heartbeat(ctx, node, now)
}

// A node that goes NodeTTL without a heartbeat recorded may be taken for
// dead and its tasks released to the others, however long their leases:
// it cancels its runs before then.
func TestManager_CancelsRunsWhenHeartbeatsFail(t *testing.T) {
	t.Parallel()
	rec, def, ended := longRuns(t)
	store := &heartbeatsDown{DB: openSQLite(t)}
	h := &harness{store: store, clock: newClock()}
	h.m = h.manager(t, deputy.Config{Lease: time.Hour, HeartbeatInterval: 100 * time.Millisecond,
		NodeTTL: 2 * time.Second}, def)
	h.start(t, h.m)
	if _, err := h.m.Schedule(context.Background(), deputy.NewTask{ID: "h", Type: "long"}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	store.down.Store(true)
	// Failed heartbeats are retried every 25 ms (HeartbeatInterval/4)
	// after the first at 100 ms: twenty-five take 0.7 s, during which the
	// node checked its holds at 0.5 s (NodeTTL/4) and kept them, its
	// clock standing still.
	waitFor(t, "failed heartbeats", func() bool { return store.calls.Load() >= 25 })
	select {
	case <-ended:
		t.Fatal("the run was cancelled before the node could be taken for dead")
	default:
	}

	h.clock.Advance(2 * time.Second)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the run went on after the node could be taken for dead")
	}
}

func TestManager_UnknownTypesLeftToOthers(t *testing.T) {
	t.Parallel()
	_, other := newRecorder("other", nil)
	rec, def := newRecorder("job", nil)
	h := newHarness(t, deputy.Config{}, def, other)
	ctx := context.Background()
	if _, err := h.m.Schedule(ctx, deputy.NewTask{ID: "o", Type: "other"}, nil); err != nil {
		t.Fatal(err)
	}
	// A node that only knows "job".
	n := h.manager(t, deputy.Config{NodeID: "n2"}, def)
	h.start(t, n)
	if _, err := h.m.Schedule(ctx, deputy.NewTask{ID: "j", Type: "job"}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	if task := h.task(t, "o"); task.Status != deputy.StatusIdle || task.OwnerID != "" || task.Attempts != 0 {
		t.Fatalf("node claimed a task of a type it does not know: %+v", task)
	}
}

func TestManager_BulkCalls(t *testing.T) {
	t.Parallel()
	_, def := newRecorder("job", nil)
	h := newHarness(t, deputy.Config{}, def)
	ctx := context.Background()
	var nts []deputy.NewTask
	for _, id := range []string{"a", "b", "c"} {
		nts = append(nts, deputy.NewTask{ID: id, Type: "job", Schedule: &deputy.Schedule{Interval: "1m"}})
	}
	if res, err := h.m.BulkSchedule(ctx, nts, nil); err != nil || len(res.Tasks) != 3 {
		t.Fatalf("bulk schedule = %+v, %v", res, err)
	}

	res, err := h.m.BulkUpdateSchedules(ctx, []string{"a", "b", "missing"}, deputy.Schedule{Interval: "5m"}, nil)
	if err != nil || len(res.Tasks) != 2 || len(res.Errors) != 1 ||
		deputy.ErrorCode(res.Errors[0].Err) != deputy.ENOTFOUND {
		t.Fatalf("bulk update schedules = %+v, %v", res, err)
	}
	if got, want := h.task(t, "a").RunAt, h.clock.Now().Add(4*time.Minute); !got.Equal(want) {
		t.Fatalf("rescheduled run at %v; want %v (old run - old interval + new interval)", got, want)
	}

	stamp := func(s json.RawMessage, id string) (json.RawMessage, error) {
		return json.RawMessage(`{"id":"` + id + `"}`), nil
	}
	res, err = h.m.BulkUpdateState(ctx, []string{"a", "c"}, stamp, nil)
	if err != nil || len(res.Tasks) != 2 || string(h.task(t, "c").State) != `{"id":"c"}` {
		t.Fatalf("bulk update state = %+v, %v", res, err)
	}

	if res, err = h.m.BulkDisable(ctx, []string{"a", "b"}, true, nil); err != nil || len(res.Tasks) != 2 {
		t.Fatalf("bulk disable = %+v, %v", res, err)
	}
	if task := h.task(t, "a"); task.Enabled || string(task.State) != `{}` {
		t.Fatalf("disabled task = %+v", task)
	}
	if res, err = h.m.BulkEnable(ctx, []string{"a"}, true, nil); err != nil || len(res.Tasks) != 1 {
		t.Fatalf("bulk enable = %+v, %v", res, err)
	}
	if task := h.task(t, "a"); !task.Enabled || !task.RunAt.Equal(h.clock.Now()) {
		t.Fatalf("enabled task = %+v", task)
	}

	counts, err := h.m.Aggregate(ctx, deputy.Query{})
	if err != nil || len(counts) != 1 || counts[0].Count != 2 {
		t.Fatalf("aggregate = %+v, %v; want the 2 enabled tasks", counts, err)
	}

	if _, err := h.m.RunSoon(ctx, "c"); err != nil {
		t.Fatalf("run soon: %v", err)
	}
	if err := h.m.Remove(ctx, "missing"); deputy.ErrorCode(err) != deputy.ENOTFOUND {
		t.Fatalf("remove missing = %v", err)
	}
	if err := h.m.RemoveIfExists(ctx, "missing"); err != nil {
		t.Fatalf("remove if exists = %v", err)
	}
	res, err = h.m.BulkRemove(ctx, []string{"a", "b", "c", "zzz"})
	if err != nil || len(res.Errors) != 1 || res.Errors[0].ID != "zzz" {
		t.Fatalf("bulk remove = %+v, %v", res, err)
	}
}

func TestManager_EnsureScheduled(t *testing.T) {
	t.Parallel()
	_, def := newRecorder("job", nil)
	h := newHarness(t, deputy.Config{}, def)
	ctx := context.Background()
	nt := deputy.NewTask{ID: "e", Type: "job", Schedule: &deputy.Schedule{Interval: "1m"}}
	if _, err := h.m.EnsureScheduled(ctx, nt, nil); err != nil {
		t.Fatal(err)
	}
	nt.Schedule = &deputy.Schedule{Interval: "2m"}
	task, err := h.m.EnsureScheduled(ctx, nt, nil)
	if err != nil || task.Schedule.Interval != "2m" || h.task(t, "e").Schedule.Interval != "2m" {
		t.Fatalf("ensure on an existing task = %+v, %v; want the interval updated", task, err)
	}
}

func TestManager_ClaimsHeartbeatOncePerSecond(t *testing.T) {
	t.Parallel()
	rec, def := newRecorder("job", nil)
	// The heartbeat loop stays silent: only Start and claims record one.
	h := newHarness(t, deputy.Config{HeartbeatInterval: time.Hour, NodeTTL: 2 * time.Hour}, def)
	h.start(t, h.m)
	started := h.clock.Now()
	lastSeen := func() time.Time {
		nodes, err := h.store.Nodes(context.Background())
		if err != nil || len(nodes) != 1 {
			t.Fatalf("Nodes = %v, %v", nodes, err)
		}
		return nodes[0].LastSeen
	}

	// A claim soon after a heartbeat records none.
	h.clock.Advance(300 * time.Millisecond)
	if _, err := h.m.Schedule(context.Background(), deputy.NewTask{Type: "job"}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	if got := lastSeen(); !got.Equal(started) {
		t.Fatalf("last seen %v after a claim 300ms after Start; want %v", got, started)
	}

	// A claim a second after it records one.
	h.clock.Advance(time.Second)
	if _, err := h.m.Schedule(context.Background(), deputy.NewTask{Type: "job"}, nil); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	if got, want := lastSeen(), started.Add(1300*time.Millisecond); !got.Equal(want) {
		t.Fatalf("last seen %v after a claim 1.3s after Start; want %v", got, want)
	}
}

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	if err := (deputy.Config{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := deputy.Config{HeartbeatInterval: 10 * time.Second, NodeTTL: 5 * time.Second}.Validate()
	if err == nil || !strings.Contains(err.Error(), "node_ttl 5s must be at least twice heartbeat_interval 10s") {
		t.Fatalf("node_ttl below heartbeat_interval: %v", err)
	}
	// Between the two: no time left for a failed heartbeat's retry.
	if err := (deputy.Config{HeartbeatInterval: 10 * time.Second, NodeTTL: 19 * time.Second}).Validate(); err == nil {
		t.Fatal("node_ttl below twice heartbeat_interval accepted")
	}
	for _, hb := range []time.Duration{-time.Second, time.Nanosecond} {
		err := deputy.Config{HeartbeatInterval: hb, NodeTTL: 2 * hb}.Validate()
		if err == nil || !strings.Contains(err.Error(), "heartbeat_interval") {
			t.Fatalf("heartbeat_interval %s: %v", hb, err)
		}
	}
	if err := (deputy.Config{HeartbeatInterval: 10 * time.Second, NodeTTL: 20 * time.Second}).Validate(); err != nil {
		t.Fatalf("node_ttl twice heartbeat_interval: %v", err)
	}
	for _, c := range []int{-1, deputy.MaxCapacity + 1, 1 << 62} {
		err := deputy.Config{Capacity: c}.Validate()
		if err == nil || !strings.Contains(err.Error(), "capacity") {
			t.Fatalf("capacity %d: %v", c, err)
		}
	}
	if err := (deputy.Config{Capacity: deputy.MaxCapacity}).Validate(); err != nil {
		t.Fatalf("capacity %d: %v", deputy.MaxCapacity, err)
	}
	if _, nerr := deputy.New(openStore(t), deputy.Config{HeartbeatInterval: 10 * time.Second,
		NodeTTL: 5 * time.Second}); nerr == nil {
		t.Fatal("New accepted what Validate refuses")
	}
}
