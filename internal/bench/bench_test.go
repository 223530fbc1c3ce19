package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun_BurndownSQLite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var progress bytes.Buffer
	res, err := Run(t.Context(), Config{N: 300, Chunk: 100, DataDir: dir,
		Progress: &progress, ProgressInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Mode != ModeBurndown || res.Store != StoreSQLite || res.N != 300 || res.Chunk != 100 {
		t.Errorf("settings = %+v", res)
	}
	if res.Completed != 300 || res.TasksPerSec <= 0 || res.ElapsedSeconds <= 0 {
		t.Errorf("completed %d at %g tasks/s in %gs, want 300 at a positive rate",
			res.Completed, res.TasksPerSec, res.ElapsedSeconds)
	}
	// The defaults of the library: capacity 10, a budget of 20 no-op runs.
	if res.Capacity != 10 || res.CostBudget != 20 || res.TaskCost != 1 ||
		res.PollInterval != "500ms" {
		t.Errorf("node settings = capacity %d, budget %d, cost %d, poll %s; want the defaults",
			res.Capacity, res.CostBudget, res.TaskCost, res.PollInterval)
	}
	if res.Claims == nil || res.Claims.Items != 300 || res.PeakRSS <= 0 || res.GoVersion == "" {
		t.Errorf("figures = claims %+v, peak rss %d, go %q", res.Claims, res.PeakRSS, res.GoVersion)
	}
	if !strings.Contains(progress.String(), "burndown: scheduled 300 tasks") {
		t.Errorf("progress = %q", progress.String())
	}
	// The database file went with the run.
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("data dir after the run: %v, %v; want it empty", entries, err)
	}
}

func TestRun_SteadySQLite(t *testing.T) {
	t.Parallel()
	res, err := Run(t.Context(), Config{Mode: ModeSteady, Rate: 100,
		Duration: 500 * time.Millisecond, Waiting: 50, Capacity: 5,
		PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Scheduled != 50 || res.Completed != 50 {
		t.Errorf("scheduled %d, completed %d; want 50 of each", res.Scheduled, res.Completed)
	}
	if res.Latency == nil || res.Latency.Count != 50 || res.Latency.P50 > res.Latency.Max {
		t.Errorf("latency = %+v, want 50 ordered samples", res.Latency)
	}
	if res.ScheduleCall == nil || res.ScheduleCall.Count != 50 {
		t.Errorf("schedule calls = %+v", res.ScheduleCall)
	}
	if res.Capacity != 5 || res.PollInterval != "50ms" || res.Waiting != 50 {
		t.Errorf("settings = capacity %d, poll %s, waiting %d", res.Capacity, res.PollInterval,
			res.Waiting)
	}
	// The result is one JSON object with every figure.
	b, err := json.Marshal(res)
	if err != nil || !bytes.Contains(b, []byte(`"schedule_to_start_ms":{"count":50`)) {
		t.Errorf("JSON = %s, %v", b, err)
	}
}

// TestRun_SteadyBehind offers far more than the node can schedule: the run
// stops scheduling at its duration and reports the rate it achieved.
func TestRun_SteadyBehind(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	res, err := Run(t.Context(), Config{Mode: ModeSteady, Rate: MaxRate,
		Duration: 300 * time.Millisecond, Schedulers: 1, DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(begin); took > 30*time.Second {
		t.Errorf("the run took %s for a duration of 300ms", took)
	}
	if res.Scheduled < 1 || res.Scheduled >= int64(0.3*MaxRate) ||
		res.Completed != res.Scheduled {
		t.Errorf("scheduled %d, completed %d; want some, all completed, fewer than offered",
			res.Scheduled, res.Completed)
	}
	if res.ScheduledPerSec <= 0 || res.ScheduledPerSec >= MaxRate || res.ElapsedSeconds <= 0 {
		t.Errorf("scheduled %g/s, elapsed %gs; want the achieved rate, below the offered one",
			res.ScheduledPerSec, res.ElapsedSeconds)
	}
}

func TestRun_ErrConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{Mode: "sprint"}, {Store: "mysql"}, {Store: StorePostgres},
		{N: -1}, {Rate: -1}, {Rate: math.NaN()}, {Rate: MaxRate + 1}, {Chunk: 20_000},
		{Waiting: -1}, {Capacity: -1}, {PollInterval: -time.Second},
		{PollInterval: 5 * time.Millisecond},
		{Mode: ModeSteady, Rate: 0.001, Duration: 2 * time.Second}} {
		dir := t.TempDir()
		cfg.DataDir = dir
		_, err := Run(t.Context(), cfg)
		if _, ok := errors.AsType[*ConfigError](err); !ok {
			t.Errorf("Run(%+v) = %v, want a *ConfigError", cfg, err)
		}
		// A refused run creates nothing.
		if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
			t.Errorf("Run(%+v) left %v, %v", cfg, entries, err)
		}
	}
}

// TestRun_Interrupted cancels runs midway: each reports the interruption,
// returns no figures, and removes its store.
func TestRun_Interrupted(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{ModeBurndown, ModeSteady} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			res, err := Run(ctx, Config{Mode: mode, N: 50_000, Chunk: 500, Rate: 200,
				Duration: time.Minute, DataDir: dir, Progress: cancelOnWrite(cancel),
				ProgressInterval: 50 * time.Millisecond})
			if !errors.Is(err, ErrInterrupted) || res != nil {
				t.Fatalf("Run = %+v, %v; want no result and %v", res, err, ErrInterrupted)
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Errorf("data dir after the run: %v, %v; want it empty", entries, err)
			}
		})
	}
}

// cancelOnWrite returns a writer that calls cancel on its first write.
func cancelOnWrite(cancel context.CancelFunc) io.Writer {
	var once sync.Once
	return writerFunc(func(p []byte) (int, error) {
		once.Do(cancel)
		return len(p), nil
	})
}

// writerFunc is a function that implements [io.Writer].
type writerFunc func(p []byte) (int, error)

// Write implements [io.Writer].
func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestPercentile(t *testing.T) {
	t.Parallel()
	samples := make([]float64, 100)
	for i := range samples {
		samples[i] = float64(100 - i)
	}
	l := summarize(samples)
	if l.P50 != 50 || l.P95 != 95 || l.P99 != 99 || l.Max != 100 || l.Count != 100 {
		t.Fatalf("summarize(1..100) = %+v", l)
	}
	if summarize(nil) != nil {
		t.Fatal("summarize(nil) is not nil")
	}
}

// testURL returns the PostgreSQL server of the tests, or skips.
func testURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		t.Skip("TEST_DATABASE_URL is not set")
	}
	return url
}

func TestRun_BurndownPostgres(t *testing.T) {
	t.Parallel()
	url := testURL(t)
	schema := "deputy_bench_test_" + randomSuffix()
	res, err := Run(t.Context(), Config{Store: StorePostgres, DatabaseURL: url, Schema: schema,
		N: 300, Chunk: 100})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Completed != 300 || res.StoreSettings["schema"] != schema ||
		res.StoreSettings["synchronous_commit"] == "" {
		t.Errorf("completed %d, settings %v", res.Completed, res.StoreSettings)
	}
	if exists := schemaExists(t, url, schema); exists {
		t.Errorf("schema %s still exists after the run", schema)
	}
}

func TestRun_InterruptedPostgres(t *testing.T) {
	t.Parallel()
	url := testURL(t)
	schema := "deputy_bench_test_" + randomSuffix()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	res, err := Run(ctx, Config{Mode: ModeSteady, Store: StorePostgres, DatabaseURL: url,
		Schema: schema, Rate: 200, Duration: time.Minute, Progress: cancelOnWrite(cancel),
		ProgressInterval: 50 * time.Millisecond})
	if !errors.Is(err, ErrInterrupted) || res != nil {
		t.Fatalf("Run = %+v, %v; want no result and %v", res, err, ErrInterrupted)
	}
	if exists := schemaExists(t, url, schema); exists {
		t.Errorf("schema %s still exists after the run", schema)
	}
}

// TestRun_PostgresSchemaExists gives runs a schema that exists, whatever it
// holds: each is refused, and what the schema holds is left intact.
func TestRun_PostgresSchemaExists(t *testing.T) {
	t.Parallel()
	url := testURL(t)
	for name, tc := range map[string]struct{ create, check string }{
		"Empty": {},
		"Table": {
			create: "CREATE TABLE %s.precious (x int)",
			check:  "SELECT count(*) FROM %s.precious",
		},
		"Function": {
			create: "CREATE FUNCTION %s.precious() RETURNS int LANGUAGE sql AS 'SELECT 1'",
			check:  "SELECT %s.precious()",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			schema := "deputy_bench_test_" + randomSuffix()
			conn := connect(t, url)
			ident := pgx.Identifier{schema}.Sanitize()
			mustExec(t, conn, "CREATE SCHEMA "+ident)
			t.Cleanup(func() {
				_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+ident+" CASCADE")
			})
			if tc.create != "" {
				mustExec(t, conn, strings.ReplaceAll(tc.create, "%s", ident))
			}

			_, err := Run(t.Context(),
				Config{Store: StorePostgres, DatabaseURL: url, Schema: schema, N: 10})
			if _, ok := errors.AsType[*ConfigError](err); !ok ||
				!strings.Contains(err.Error(), "exists") {
				t.Fatalf("Run on an existing schema = %v, want a refusal", err)
			}
			if !schemaExists(t, url, schema) {
				t.Fatalf("schema %s the run was not given is gone", schema)
			}
			if tc.check != "" {
				mustExec(t, conn, strings.ReplaceAll(tc.check, "%s", ident))
			}
		})
	}
}

func mustExec(t *testing.T, conn *pgx.Conn, q string) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func schemaExists(t *testing.T, url, schema string) bool {
	t.Helper()
	var exists bool
	err := connect(t, url).QueryRow(t.Context(),
		"SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists)
	if err != nil {
		t.Fatalf("check schema: %v", err)
	}
	return exists
}
