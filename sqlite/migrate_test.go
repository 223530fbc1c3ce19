package sqlite

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMigrate(t *testing.T) {
	t.Parallel()

	t.Run("ReopenAppliesNothing", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "deputy.db")
		ms, err := migrations()
		if err != nil {
			t.Fatalf("migrations: %v", err)
		}
		first := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

		for i, now := range []time.Time{first, first.Add(time.Hour)} {
			var logs bytes.Buffer
			db, err := Open(t.Context(), Config{
				Path:   path,
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				Now:    func() time.Time { return now },
			})
			if err != nil {
				t.Fatalf("Open %d: %v", i, err)
			}
			applied := strings.Count(logs.String(), "applied migration")
			if want := []int{len(ms), 0}[i]; applied != want {
				t.Fatalf("Open %d applied %d migrations, want %d:\n%s",
					i, applied, want, logs.String())
			}

			rows, err := db.r.QueryContext(t.Context(),
				`SELECT version, name, applied_at FROM deputy_migrations ORDER BY version`)
			if err != nil {
				t.Fatalf("list migrations: %v", err)
			}
			var n int
			for rows.Next() {
				var (
					version   int
					name      string
					appliedAt int64
				)
				if err := rows.Scan(&version, &name, &appliedAt); err != nil {
					t.Fatalf("scan migration: %v", err)
				}
				if version != ms[n].version || name != ms[n].name || appliedAt != micros(first) {
					t.Fatalf("migration %d = %d %s applied at %d, want %d %s at %d",
						n, version, name, appliedAt, ms[n].version, ms[n].name, micros(first))
				}
				n++
			}
			if err := rows.Close(); err != nil || n != len(ms) {
				t.Fatalf("listed %d migrations (%v), want %d", n, err, len(ms))
			}
			if err := db.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
	})

	t.Run("ErrNewerDatabase", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "deputy.db")
		db, err := Open(t.Context(), Config{Path: path})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		_, err = db.w.ExecContext(t.Context(), `INSERT INTO deputy_migrations
			(version, name, applied_at) VALUES (1000, 'future.sql', 0)`)
		if err != nil {
			t.Fatalf("insert migration: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		if _, err := Open(t.Context(), Config{Path: path}); err == nil ||
			!strings.Contains(err.Error(), "newer") {
			t.Fatalf("Open of a newer database: %v, want an error", err)
		}
	})
}

func TestConfig_ErrInvalid(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if db, err := Open(t.Context(), Config{Path: path}); err == nil {
			_ = db.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
}
