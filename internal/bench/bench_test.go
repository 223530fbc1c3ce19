package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
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

func TestRun_ErrConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{Mode: "sprint"}, {Store: "mysql"}, {Store: StorePostgres},
		{N: -1}, {Rate: -1}, {Chunk: 20_000}, {Waiting: -1}} {
		if _, err := Run(t.Context(), cfg); err == nil {
			t.Errorf("Run(%+v) succeeded, want an error", cfg)
		}
	}
}

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

func TestRun_PostgresSchemaNotEmpty(t *testing.T) {
	t.Parallel()
	url := testURL(t)
	schema := "deputy_bench_test_" + randomSuffix()
	conn := connect(t, url)
	ident := pgx.Identifier{schema}.Sanitize()
	for _, q := range []string{"CREATE SCHEMA " + ident,
		"CREATE TABLE " + ident + ".precious (x int)"} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+ident+" CASCADE")
	})

	_, err := Run(t.Context(),
		Config{Store: StorePostgres, DatabaseURL: url, Schema: schema, N: 10})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Run on a schema with a table = %v, want a refusal", err)
	}
	var n int
	err = conn.QueryRow(t.Context(), "SELECT count(*) FROM "+ident+".precious").Scan(&n)
	if err != nil {
		t.Fatalf("the table the run was not given is gone: %v", err)
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
