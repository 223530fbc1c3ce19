package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/sqlite"
	"github.com/deputyhq/deputy/storetest"
)

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
