package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order. Their names are
// NNNN_description.sql, numbered from 1 without gaps.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and _",
				base)
		}
		b, err := migrationFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies the migrations the database lacks, each in its own
// transaction, and records them in deputy_migrations.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	const createTable = `CREATE TABLE IF NOT EXISTS deputy_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`
	if _, err := db.w.ExecContext(ctx, createTable); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	// A newer deputy may have migrated the file further than this one knows.
	var latest int
	err = db.w.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM deputy_migrations`).
		Scan(&latest)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if latest > len(ms) {
		return fmt.Errorf("migrate: database is at version %d, newer than this deputy's %d",
			latest, len(ms))
	}

	for _, m := range ms[latest:] {
		var applied bool
		err := db.write(ctx, func(ctx context.Context, w *wtx) (err error) {
			applied, err = db.apply(ctx, w.tx, m)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
		if applied {
			db.log.Info("applied migration",
				slog.Int("version", m.version),
				slog.String("name", m.name))
		}
	}
	return nil
}

// apply applies m in tx unless another process applied it first, and
// reports whether it did.
func (db *DB) apply(ctx context.Context, tx *sql.Tx, m migration) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM deputy_migrations WHERE version = ?`,
		m.version).Scan(&n)
	if err != nil || n > 0 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO deputy_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, micros(db.cfg.Now()))
	return err == nil, err
}
