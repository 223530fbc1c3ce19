package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testURL returns the server the tests use. Without TEST_DATABASE_URL the
// tests skip, except in CI, where PostgreSQL must be tested.
func testURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	switch {
	case url != "":
		return url
	case os.Getenv("CI") != "":
		tb.Fatalf("TEST_DATABASE_URL is not set, and CI requires the PostgreSQL tests to run: " +
			"start a server with scripts/pg-start.sh")
	default:
		tb.Skip("TEST_DATABASE_URL is not set: skipping PostgreSQL tests " +
			"(eval \"$(scripts/pg-start.sh)\" starts a throwaway server)")
	}
	return ""
}

// newSchema returns the name of a fresh schema, dropped when tb ends.
func newSchema(tb testing.TB) string {
	tb.Helper()
	url := testURL(tb)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "test_" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// mustOpen opens a migrated store in schema, closed when tb ends.
func mustOpen(tb testing.TB, schema string, configure ...func(*Config)) *DB {
	tb.Helper()
	cfg := Config{URL: testURL(tb), Schema: schema, Migrate: true, MaxConns: 4}
	for _, f := range configure {
		f(&cfg)
	}
	db, err := Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestStore(t *testing.T) {
	t.Parallel()
	testURL(t)
	storetest.Exercise(t, func(t *testing.T) deputy.Store {
		// The suite runs hundreds of subtests in parallel: small pools, and
		// no listener, keep them within the server's connection limit.
		return mustOpen(t, newSchema(t), func(c *Config) {
			c.MaxConns = 2
			c.NoListen = true
		})
	})
}

func TestOpen_ErrConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{}, {URL: "postgres://x", MaxConns: -1},
		{URL: "postgres://x", StatementTimeout: -time.Second}, {URL: "not a url ://"}} {
		if db, err := Open(t.Context(), cfg); err == nil {
			db.Close()
			t.Fatalf("Open(%+v) succeeded, want an error", cfg)
		}
	}
}

func TestOpen_StatementTimeout(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	mustOpen(t, schema, func(c *Config) { c.NoListen = true })
	db := mustOpen(t, schema, func(c *Config) {
		c.Migrate = false
		c.NoListen = true
		c.StatementTimeout = 50 * time.Millisecond
	})
	_, err := db.Pool().Exec(t.Context(), "SELECT pg_sleep(5)")
	if !isCode(err, "57014") {
		t.Fatalf("pg_sleep(5) under a 50ms statement timeout: %v, want query_canceled", err)
	}
}

func TestOpen_ErrUnavailable(t *testing.T) {
	t.Parallel()
	testURL(t)
	// Nothing listens on port 1.
	const url = "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5"
	_, err := Open(t.Context(), Config{URL: url})
	if code := deputy.ErrorCode(err); code != deputy.EUNAVAILABLE {
		t.Fatalf("Open of an unreachable server: %v (code %q), want %q", err, code,
			deputy.EUNAVAILABLE)
	}
}

func TestMigrate_Idempotent(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	db := mustOpen(t, schema)
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}

	for range 2 {
		if err := db.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
	}
	wantMigrations(t, db, len(ms))

	// Open without Migrate leaves the schema alone and works on it.
	other := mustOpen(t, schema, func(c *Config) { c.Migrate = false })
	wantMigrations(t, other, len(ms))
}

func TestMigrate_NotWithoutConfig(t *testing.T) {
	t.Parallel()
	db := mustOpen(t, newSchema(t), func(c *Config) { c.Migrate = false })
	if _, err := db.Get(t.Context(), "x"); !isCode(err, "42P01") {
		t.Fatalf("Get on an unmigrated schema: %v, want undefined_table", err)
	}
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if _, err := db.Get(t.Context(), "x"); deputy.ErrorCode(err) != deputy.ENOTFOUND {
		t.Fatalf("Get after Migrate: %v, want not found", err)
	}
}

// TestMigrate_Concurrent starts several nodes on an empty schema at once:
// the advisory lock must let each migration run exactly once.
func TestMigrate_Concurrent(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	const nodes = 6
	dbs := make([]*DB, nodes)
	for i := range dbs {
		dbs[i] = mustOpen(t, schema, func(c *Config) {
			c.Migrate = false
			c.NoListen = true
			c.MaxConns = 1
		})
	}

	var wg sync.WaitGroup
	errs := make([]error, nodes)
	start := make(chan struct{})
	for i, db := range dbs {
		wg.Go(func() {
			<-start
			errs[i] = db.Migrate(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: Migrate: %v", i, err)
		}
	}
	ms, _ := migrations()
	wantMigrations(t, dbs[0], len(ms))
}

func wantMigrations(t *testing.T, db *DB, n int) {
	t.Helper()
	vs, err := db.MigrationVersions(t.Context())
	if err != nil {
		t.Fatalf("MigrationVersions: %v", err)
	}
	if len(vs) != n {
		t.Fatalf("applied migrations %v, want %d", vs, n)
	}
	var rows int
	if err := db.Pool().QueryRow(t.Context(), "SELECT count(*) FROM deputy_migrations").
		Scan(&rows); err != nil || rows != n {
		t.Fatalf("deputy_migrations has %d rows (%v), want %d", rows, err, n)
	}
}

// waitListening waits until db's listener has (re)connected, and drains the
// wakeup it delivers on connecting.
func waitListening(t *testing.T, db *DB) {
	t.Helper()
	select {
	case <-db.listening:
	case <-time.After(10 * time.Second):
		t.Fatalf("listener did not connect")
	}
	select {
	case <-db.Wakeups():
	default:
	}
}

// wantWakeup waits for a wakeup on db.
func wantWakeup(t *testing.T, db *DB, why string) {
	t.Helper()
	select {
	case <-db.Wakeups():
	case <-time.After(10 * time.Second):
		t.Fatalf("no wakeup after %s", why)
	}
}

func dueTask(id string, runAt time.Time) *deputy.Task {
	return &deputy.Task{ID: id, Type: "test:a", Params: []byte(`{}`), State: []byte(`{}`),
		RunAt: runAt, ScheduledAt: runAt, Status: deputy.StatusIdle, Enabled: true,
		SpaceID: deputy.DefaultSpace, EffectivePriority: deputy.PriorityNormal,
		EffectiveCost: deputy.CostNormal}
}

func mustInsert(tb testing.TB, db *DB, tasks ...*deputy.Task) {
	tb.Helper()
	errs, err := db.Insert(context.Background(), tasks)
	if err == nil {
		err = errors.Join(errs...)
	}
	if err != nil {
		tb.Fatalf("Insert: %v", err)
	}
}

func TestWakeups_OtherNode(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	writer := mustOpen(t, schema, func(c *Config) { c.NoListen = true })
	listener := mustOpen(t, schema)
	waitListening(t, listener)

	// A task due later wakes nobody; one due now does.
	mustInsert(t, writer, dueTask("later", time.Now().Add(time.Hour)))
	mustInsert(t, writer, dueTask("now", time.Now()))
	wantWakeup(t, listener, "an insert of a task due now")

	task, err := writer.Get(t.Context(), "later")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	task.RunAt = time.Now()
	errs, err := writer.Update(t.Context(), []*deputy.Task{task}, deputy.UpdateOptions{})
	if err != nil || errs[0] != nil {
		t.Fatalf("Update: %v, %v", err, errs)
	}
	wantWakeup(t, listener, "an update that made a task due now")
}

func TestWakeups_OtherSchemaIgnored(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	listener := mustOpen(t, schema)
	writer := mustOpen(t, schema, func(c *Config) { c.NoListen = true })
	other := mustOpen(t, newSchema(t), func(c *Config) { c.NoListen = true })
	probe := mustOpen(t, other.cfg.Schema)
	waitListening(t, listener)
	waitListening(t, probe)
	before := listener.notified.Load()

	// Notifications are per database: the payload keeps schemas apart. Once
	// the probe has other's notification, it is ahead of writer's on the
	// listener's connection too, so when writer's arrives the listener has
	// seen both and must have counted one.
	mustInsert(t, other, dueTask("now", time.Now()))
	wantWakeup(t, probe, "an insert in the probe's schema")
	mustInsert(t, writer, dueTask("now", time.Now()))
	wantWakeup(t, listener, "an insert in the listener's schema")
	if n := listener.notified.Load() - before; n != 1 {
		t.Fatalf("listener delivered %d notifications, want 1: its own schema's", n)
	}
}

// TestWakeups_ListenerReconnects kills the listener's connection on the
// server and checks that wakeups resume.
func TestWakeups_ListenerReconnects(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	writer := mustOpen(t, schema, func(c *Config) { c.NoListen = true })
	listener := mustOpen(t, schema)
	waitListening(t, listener)

	for round := range 2 {
		pid := listener.listenPID.Load()
		var killed bool
		err := writer.Pool().QueryRow(t.Context(), "SELECT pg_terminate_backend($1)", pid).
			Scan(&killed)
		if err != nil || !killed {
			t.Fatalf("terminate listener %d: %t, %v", pid, killed, err)
		}
		waitListening(t, listener)
		if got := listener.listenPID.Load(); got == pid {
			t.Fatalf("listener still on backend %d after it was terminated", pid)
		}

		mustInsert(t, writer, dueTask(fmt.Sprintf("t%d", round), time.Now()))
		wantWakeup(t, listener, "an insert after the listener reconnected")
	}
}

// TestClaim_SeveralNodes claims from separate pools, as separate nodes do:
// every task must be claimed exactly once.
func TestClaim_SeveralNodes(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	const nodes, n = 4, 2000
	dbs := make([]*DB, nodes)
	for i := range dbs {
		dbs[i] = mustOpen(t, schema, func(c *Config) { c.NoListen = true })
	}
	now := time.Now()
	var tasks []*deputy.Task
	for i := range n {
		task := dueTask(fmt.Sprintf("t%05d", i), now.Add(-time.Duration(i)*time.Millisecond))
		task.EffectivePriority = deputy.Priority(i % 3)
		task.EffectiveCost = deputy.Cost(1 + i%4)
		tasks = append(tasks, task)
	}
	mustInsert(t, dbs[0], tasks...)

	var (
		mu     sync.Mutex
		claims = map[string]int{}
		wg     sync.WaitGroup
		errs   = make([]error, nodes)
	)
	for i, db := range dbs {
		wg.Go(func() {
			owner := fmt.Sprintf("node-%d", i)
			errs[i] = burnDown(t.Context(), db, owner, now, 20, func(id string) {
				mu.Lock()
				claims[id]++
				mu.Unlock()
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("burn down: %v", err)
	}
	if len(claims) != n {
		t.Fatalf("claimed %d distinct tasks, want %d", len(claims), n)
	}
	for id, c := range claims {
		if c != 1 {
			t.Fatalf("task %s claimed %d times", id, c)
		}
	}
	if page, err := dbs[0].Fetch(t.Context(), deputy.Query{}); err != nil || len(page.Tasks) != 0 {
		t.Fatalf("tasks left after burning down: %d, %v", len(page.Tasks), err)
	}
}

// burnDown claims and deletes tasks as owner until none is due, and reports
// each claimed id to seen.
func burnDown(ctx context.Context, db *DB, owner string, now time.Time, budget int,
	seen func(id string),
) error {
	for {
		tasks, err := db.Claim(ctx, deputy.ClaimParams{Owner: owner, Now: now,
			Types: []string{"test:a"}, Budget: budget, Lease: time.Hour})
		if err != nil {
			return err
		}
		if len(tasks) == 0 {
			return nil
		}
		cs := make([]deputy.Completion, len(tasks))
		for i, task := range tasks {
			if seen != nil {
				seen(task.ID)
			}
			cs[i] = deputy.Completion{ID: task.ID, ClaimVersion: task.ClaimVersion, Now: now,
				Delete: true}
		}
		errs, err := db.Complete(ctx, cs)
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			return err
		}
	}
}

// TestClaim_LostConnection checks that a connection killed under the store
// surfaces as an error and that the next call works.
func TestClaim_LostConnection(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	db := mustOpen(t, schema, func(c *Config) {
		c.NoListen = true
		c.MaxConns = 1
	})
	killer := mustOpen(t, schema, func(c *Config) { c.NoListen = true })
	mustInsert(t, db, dueTask("a", time.Now()))

	var pid uint32
	conn, err := db.Pool().Acquire(t.Context())
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	pid = conn.Conn().PgConn().PID()
	conn.Release()
	_, err = killer.Pool().Exec(t.Context(), "SELECT pg_terminate_backend($1)", pid)
	if err != nil {
		t.Fatalf("terminate: %v", err)
	}

	// The pool may notice the dead connection before handing it out; either
	// way a few attempts must get through.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := db.Claim(t.Context(), deputy.ClaimParams{Owner: "n", Now: time.Now(),
			Types: []string{"test:a"}, Budget: 10, Lease: time.Minute})
		if err == nil {
			break
		}
		if code := deputy.ErrorCode(err); code != deputy.EUNAVAILABLE {
			t.Fatalf("Claim on a killed connection: %v (code %q), want %q", err, code,
				deputy.EUNAVAILABLE)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Claim still failing: %v", err)
		}
	}
}

// TestKeys_UserKeyNeverQueued checks that a key a task holds as the user's
// own is never queued for invalidation, even if its record says otherwise.
func TestKeys_UserKeyNeverQueued(t *testing.T) {
	t.Parallel()
	db := mustOpen(t, newSchema(t), func(c *Config) { c.NoListen = true })
	now := time.Now()
	err := db.RecordKeys(t.Context(), []deputy.Key{{Kind: "es", ID: "mine", Secret: []byte("s"),
		GrantedAt: now}})
	if err != nil {
		t.Fatalf("RecordKeys: %v", err)
	}
	task := dueTask("a", now.Add(time.Hour))
	task.Keys = []deputy.TaskKey{{Kind: "es", ID: "mine", Secret: []byte("s"), CreatedByUser: true}}
	mustInsert(t, db, task)

	errs, err := db.Remove(t.Context(), []string{"a"}, now)
	if err == nil {
		err = errors.Join(errs...)
	}
	if err != nil {
		t.Fatalf("Remove: %v", err)
	}
	keys, err := db.PendingKeys(t.Context(), deputy.PendingQuery{})
	if err != nil || len(keys) != 0 {
		t.Fatalf("PendingKeys = %v, %v; want none", keys, err)
	}
	n, recorded, err := db.KeyRefs(t.Context(), deputy.KeyRef{Kind: "es", ID: "mine"})
	if err != nil || n != 0 || recorded {
		t.Fatalf("KeyRefs = %d, %t, %v; want the record gone", n, recorded, err)
	}
}

// TestKeys_ConcurrentRefcount shares keys between tasks that several nodes
// insert, re-key and remove at once: the counts must come out exact, and
// each key must be queued once, when its last task lets go of it.
func TestKeys_ConcurrentRefcount(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	const nodes, rounds, batch = 4, 8, 5
	dbs := make([]*DB, nodes)
	for i := range dbs {
		dbs[i] = mustOpen(t, schema, func(c *Config) { c.NoListen = true })
	}
	now := time.Now().Add(time.Hour)
	granted := func(id string) deputy.TaskKey {
		return deputy.TaskKey{Kind: "es", ID: id, Secret: []byte("secret-" + id)}
	}
	user := deputy.TaskKey{Kind: "uiam", ID: "u", Secret: []byte("user"), CreatedByUser: true}
	err := dbs[0].RecordKeys(t.Context(), []deputy.Key{
		{Kind: "es", ID: "k1", Secret: []byte("r1"), GrantedAt: now},
		{Kind: "es", ID: "k2", Secret: []byte("r2"), GrantedAt: now}})
	if err != nil {
		t.Fatalf("RecordKeys: %v", err)
	}
	pin1, pin2 := dueTask("pin1", now), dueTask("pin2", now)
	pin1.Keys, pin2.Keys = []deputy.TaskKey{granted("k1")}, []deputy.TaskKey{granted("k2")}
	mustInsert(t, dbs[0], pin1, pin2)

	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for n, db := range dbs {
		wg.Go(func() {
			errs[n] = churnKeys(t.Context(), db, n, rounds, batch, now, granted, user)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("churn: %v", err)
	}

	wantRefs := func(kind, id string, refs int, recorded bool) {
		t.Helper()
		n, ok, err := dbs[0].KeyRefs(t.Context(), deputy.KeyRef{Kind: kind, ID: id})
		if err != nil || n != refs || ok != recorded {
			t.Fatalf("KeyRefs %s/%s = %d, %t, %v; want %d, %t", kind, id, n, ok, err, refs,
				recorded)
		}
	}
	wantRefs("es", "k1", 1, true)
	wantRefs("es", "k2", 1, true)
	wantRefs("uiam", "u", 0, false)
	if keys, err := dbs[0].PendingKeys(t.Context(), deputy.PendingQuery{}); err != nil ||
		len(keys) != 0 {
		t.Fatalf("PendingKeys = %v, %v; want none while pinned", keys, err)
	}

	errs2, err := dbs[1].Remove(t.Context(), []string{"pin2", "pin1"}, now)
	if err == nil {
		err = errors.Join(errs2...)
	}
	if err != nil {
		t.Fatalf("Remove pins: %v", err)
	}
	keys, err := dbs[0].PendingKeys(t.Context(), deputy.PendingQuery{})
	if err != nil || len(keys) != 2 || keys[0].ID == keys[1].ID {
		t.Fatalf("PendingKeys = %v, %v; want k1 and k2 once each", keys, err)
	}
}

// churnKeys inserts batches of tasks holding k1 and the user's key, moves
// some to k2, and removes them, in orders that differ between nodes.
func churnKeys(ctx context.Context, db *DB, node, rounds, batch int, now time.Time,
	granted func(string) deputy.TaskKey, user deputy.TaskKey,
) error {
	for r := range rounds {
		var (
			tasks []*deputy.Task
			ids   []string
		)
		for i := range batch {
			task := dueTask(fmt.Sprintf("n%d-r%d-t%d", node, r, i), now)
			task.Keys = []deputy.TaskKey{granted("k1"), user}
			tasks = append(tasks, task)
			ids = append(ids, task.ID)
		}
		if node%2 == 1 {
			slices.Reverse(tasks)
			slices.Reverse(ids)
		}
		errs, err := db.Insert(ctx, tasks)
		if err = errors.Join(append(errs, err)...); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		for _, task := range tasks[:2] {
			task.Keys = []deputy.TaskKey{granted("k2"), user}
		}
		errs, err = db.Update(ctx, tasks[:2], deputy.UpdateOptions{Now: now, ReplaceKeys: true})
		if err = errors.Join(append(errs, err)...); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		slices.Reverse(ids)
		errs, err = db.Remove(ctx, ids, now)
		if err = errors.Join(append(errs, err)...); err != nil {
			return fmt.Errorf("remove: %w", err)
		}
	}
	return nil
}

// TestHeartbeat_NeverBackwards checks that a late heartbeat, from a node
// whose clock went back, does not make the node look older than it is.
func TestHeartbeat_NeverBackwards(t *testing.T) {
	t.Parallel()
	db := mustOpen(t, newSchema(t), func(c *Config) { c.NoListen = true })
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, at := range []time.Time{now, now.Add(-time.Minute)} {
		if err := db.Heartbeat(t.Context(), "n1", at); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
	}
	nodes, err := db.Nodes(t.Context())
	if err != nil || len(nodes) != 1 || !nodes[0].LastSeen.Equal(now) {
		t.Fatalf("Nodes = %v, %v; want n1 last seen at %s", nodes, err, now)
	}
}
