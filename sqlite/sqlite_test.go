package sqlite_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/sqlite"
	"github.com/deputyhq/deputy/storetest"
	"go.uber.org/goleak"
)

// TestMain fails the tests when a goroutine outlives them: every store is
// closed by then.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// MustOpen opens a store on a fresh file in t's temporary directory and
// closes it when t ends.
func MustOpen(tb testing.TB) *sqlite.DB {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "deputy.db"))
}

// MustOpenPath opens a store on path and closes it when tb ends.
func MustOpenPath(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(tb.Context(), sqlite.Config{Path: path})
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
	storetest.Exercise(t, func(t *testing.T) deputy.Store { return MustOpen(t) })
}

// TestDB_ClaimTwoHandles claims from two handles on one file, as two
// processes would: the BEGIN IMMEDIATE of each claim serializes them through
// the file lock, so every task is claimed once.
func TestDB_ClaimTwoHandles(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "deputy.db")
	dbs := []*sqlite.DB{MustOpenPath(t, path), MustOpenPath(t, path)}
	const n = 400
	mustInsertAll(t, dbs[0], benchTasks(n))

	var (
		mu     sync.Mutex
		claims = map[string]int{}
		wg     sync.WaitGroup
	)
	for w := range 6 {
		db := dbs[w%2]
		wg.Go(func() {
			for {
				tasks, err := db.Claim(t.Context(), deputy.ClaimParams{
					Owner: fmt.Sprint("node-", w), Now: benchBase.Add(time.Hour),
					Types: []string{"noop"}, Budget: 6, Lease: time.Hour,
				})
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if len(tasks) == 0 {
					return
				}
				mu.Lock()
				for _, task := range tasks {
					claims[task.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	if len(claims) != n {
		t.Fatalf("claimed %d distinct tasks, want %d", len(claims), n)
	}
	for id, c := range claims {
		if c != 1 {
			t.Fatalf("task %s claimed %d times", id, c)
		}
	}
}
