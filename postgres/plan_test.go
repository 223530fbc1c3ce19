package postgres

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deputyhq/deputy"
)

var joinRows = regexp.MustCompile(`Rows Removed by (?:Join )?Filter: ([0-9]+)`)

// TestComplete_JoinBounded completes a batch on a table that was never
// analyzed, with many running tasks: the join of the batch with the tasks
// must match rows, not compare every pair; a plan that compares pairs
// costs the batch times the running tasks, or the batch squared.
func TestComplete_JoinBounded(t *testing.T) {
	t.Parallel()
	db := mustOpen(t, newSchema(t), func(c *Config) { c.NoListen = true })
	const running, batch = 5000, 200
	now := time.Now()
	var tasks []*deputy.Task
	for i := range running {
		tasks = append(tasks, dueTask(fmt.Sprintf("t%05d", i), now))
	}
	mustInsert(t, db, tasks...)
	var claimed []*deputy.Task
	for len(claimed) < running {
		c, err := db.Claim(t.Context(), deputy.ClaimParams{Owner: "n", Now: now,
			Types: []string{"test:a"}, Budget: 2 * running, Lease: time.Hour})
		if err != nil || len(c) == 0 {
			t.Fatalf("Claim = %d tasks, %v", len(c), err)
		}
		claimed = append(claimed, c...)
	}

	// A prepared statement is planned for its arguments at first, and may
	// then switch to a generic plan that does not know how long the arrays
	// are: check both.
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		for _, del := range []bool{false, true} {
			var a completionArrays
			for _, task := range claimed[:batch] {
				a.add(&deputy.Completion{ID: task.ID, ClaimVersion: task.ClaimVersion, Now: now,
					Delete: del, RunAt: now.Add(time.Hour)}, now)
			}
			plan := explain(t, db, mode, completeSQL, a.args()...)
			for _, m := range joinRows.FindAllStringSubmatch(plan, -1) {
				if n, _ := strconv.Atoi(m[1]); n > batch {
					t.Fatalf("%s: completing %d of %d running tasks filtered %d rows:\n%s",
						mode, batch, running, n, plan)
				}
			}
		}
	}
}

// explain returns EXPLAIN (ANALYZE) of a statement planned in the given
// plan_cache_mode, run in a transaction that is rolled back.
func explain(t *testing.T, db *DB, mode, sql string, args ...any) string {
	t.Helper()
	tx, err := db.Pool().Begin(t.Context())
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer tx.Rollback(t.Context())
	if _, err := tx.Exec(t.Context(), "SET LOCAL plan_cache_mode = "+mode); err != nil {
		t.Fatalf("set plan_cache_mode: %v", err)
	}
	rows, err := tx.Query(t.Context(), "EXPLAIN (ANALYZE, COSTS OFF) "+sql, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	return strings.Join(lines, "\n")
}
