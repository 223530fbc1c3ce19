package postgres

import (
	"fmt"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
)

// TestDB_VacuumsAfterClaims claims past VacuumEvery: the store vacuums the
// tasks table itself.
func TestDB_VacuumsAfterClaims(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	db := mustOpen(t, schema, func(c *Config) {
		c.NoListen = true
		c.VacuumEvery = 5
	})
	now := time.Now()
	for i := range 6 {
		mustInsert(t, db, dueTask(fmt.Sprintf("t%d", i), now))
	}
	tasks, err := db.Claim(t.Context(), deputy.ClaimParams{Owner: "n", Now: now,
		Types: []string{"test:a"}, Budget: 20, Lease: time.Hour})
	if err != nil || len(tasks) != 6 {
		t.Fatalf("Claim = %d tasks, %v; want 6", len(tasks), err)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		var vacuums int64
		err := db.Pool().QueryRow(t.Context(), `SELECT vacuum_count FROM pg_stat_user_tables
WHERE schemaname = $1 AND relname = 'tasks'`, schema).Scan(&vacuums)
		if err != nil {
			t.Fatalf("read vacuum count: %v", err)
		}
		if vacuums > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the tasks table was not vacuumed after 6 claims with VacuumEvery 5")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := db.vacuumFailures.Load(); n > 0 {
		t.Fatalf("%d vacuums failed", n)
	}
}
