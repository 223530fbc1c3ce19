package postgres

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deputyhq/deputy"
)

// explainClaim returns EXPLAIN (ANALYZE, BUFFERS) of the claim statement
// for p. The statement really runs, so it runs in a transaction that is
// rolled back: nothing is claimed.
func explainClaim(ctx context.Context, db *DB, p deputy.ClaimParams) (string, error) {
	limit := p.MaxTasks
	if limit <= 0 {
		limit = p.Budget
	}
	tx, err := db.Pool().Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx)

	now := micro(p.Now)
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+claimSQL+taskCols("t."), now, p.Types,
		limit, p.Budget, p.Owner, now.Add(p.Lease))
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return strings.Join(lines, "\n"), err
}

// loadIdle fills the tasks table of db with n idle tasks due an hour after
// now, and due tasks due before now, spread over three priorities, in one
// server-side statement each.
func loadIdle(tb testing.TB, db *DB, now time.Time, n, due int) {
	tb.Helper()
	ctx := context.Background()
	const insert = `
INSERT INTO tasks (id, task_type, status, enabled, eff_priority, eff_cost, version, run_at,
    scheduled_at, created_at, updated_at, params, state, space_id)
SELECT $1 || g, CASE WHEN g % 10 = 0 THEN 'test:b' ELSE 'test:a' END, 'idle', true,
    (ARRAY[50, 50, 40, 1])[1 + g % 4], 2, 1, $2::timestamptz + g * $3::interval, $2, $2, $2,
    '{}', '{}', 'default'
FROM generate_series(1, $4::int) g`
	_, err := db.Pool().Exec(ctx, insert, "idle-", now.Add(time.Hour), time.Millisecond, n)
	if err == nil {
		_, err = db.Pool().Exec(ctx, insert, "due-", now.Add(-time.Hour), time.Millisecond, due)
	}
	if err == nil {
		_, err = db.Pool().Exec(ctx, "VACUUM ANALYZE tasks")
	}
	if err != nil {
		tb.Fatalf("load tasks: %v", err)
	}
}

var executionTime = regexp.MustCompile(`Execution Time: ([0-9.]+) ms`)

// TestClaim_Plan reports the claim's plan on a table of idle tasks of which
// 1,000 are due: it must read the due rows through the claim index, not the
// idle ones. DEPUTY_PG_LARGE=1 makes the table a million tasks and checks
// that a claim of all 1,000 due tasks takes milliseconds.
func TestClaim_Plan(t *testing.T) {
	t.Parallel()
	n, large := 20_000, os.Getenv("DEPUTY_PG_LARGE") != ""
	if large {
		n = 1_000_000
	}
	db := mustOpen(t, newSchema(t), func(c *Config) { c.NoListen = true })
	now := time.Now()
	loadIdle(t, db, now, n, 1000)

	for _, budget := range []int{20, 2000} {
		p := deputy.ClaimParams{Owner: "n", Now: now, Types: []string{"test:a", "test:b"},
			Budget: budget, Lease: time.Minute}
		plan, err := explainClaim(t.Context(), db, p)
		if err != nil {
			t.Fatalf("explain: %v", err)
		}
		t.Logf("claim plan, %d tasks, budget %d:\n%s", n+1000, budget, plan)

		if strings.Contains(plan, "Seq Scan on tasks") ||
			!strings.Contains(plan, "tasks_claim_idx") {
			t.Fatalf("claim does not use tasks_claim_idx")
		}
		m := executionTime.FindStringSubmatch(plan)
		if m == nil {
			t.Fatalf("no execution time in the plan")
		}
		ms, _ := strconv.ParseFloat(m[1], 64)
		if large && ms > 200 {
			t.Fatalf("claim took %.1fms on %d tasks, want milliseconds", ms, n+1000)
		}
	}

	// And the claim itself takes all the due tasks, none of the idle ones.
	tasks, err := db.Claim(t.Context(), deputy.ClaimParams{Owner: "n", Now: now,
		Types: []string{"test:a", "test:b"}, Budget: 5000, Lease: time.Minute})
	if err != nil || len(tasks) != 1000 {
		t.Fatalf("Claim = %d tasks, %v; want 1000", len(tasks), err)
	}
}
