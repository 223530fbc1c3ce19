package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockKey is the first half of the advisory lock key that
// serializes migrations; the second half is a hash of the schema, so that
// stores in different schemas migrate independently.
const migrationLockKey = 0x64657075 // "depu"

// migration is one numbered SQL file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, file := range names {
		base := path.Base(file)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and _",
				base)
		}
		b, err := migrationFS.ReadFile(file)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(base, ".sql")
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a number", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

const createMigrationsTable = `
CREATE TABLE IF NOT EXISTS deputy_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate applies the pending migrations in order, each in its own
// transaction, and records them in deputy_migrations. Nodes that migrate at
// once take turns on an advisory lock, and each re-checks what is applied
// once it holds it, so every migration runs exactly once.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	// Fast path: a node starting on an up-to-date schema takes no lock.
	applied, err := db.appliedMigrations(ctx, db.pool)
	if err == nil && len(applied) >= len(ms) && !slices.ContainsFunc(ms, func(m migration) bool {
		return !applied[m.version]
	}) {
		return nil
	}

	for _, m := range ms {
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
				migrationLockKey)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, createMigrationsTable); err != nil {
				return err
			}
			var done bool
			err = tx.QueryRow(ctx,
				"SELECT EXISTS (SELECT 1 FROM deputy_migrations WHERE version = $1)", m.version,
			).Scan(&done)
			if err != nil || done {
				return err
			}

			// Without arguments pgx uses the simple protocol, which runs a
			// file of several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "INSERT INTO deputy_migrations (version, name) VALUES ($1, $2)",
				m.version, m.name)
			if err == nil {
				db.log.Info("applied migration", "migration", m.name, "schema", db.cfg.Schema)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, wrapErr(err))
		}
	}
	return nil
}

// appliedMigrations returns the versions recorded in deputy_migrations.
func (db *DB) appliedMigrations(ctx context.Context, q querier) (map[int]bool, error) {
	rows, err := q.Query(ctx, "SELECT version FROM deputy_migrations")
	if err != nil {
		return nil, err
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	applied := make(map[int]bool, len(versions))
	for _, v := range versions {
		applied[int(v)] = true
	}
	return applied, nil
}

// MigrationVersions returns the versions of the applied migrations, in
// order.
func (db *DB) MigrationVersions(ctx context.Context) ([]int, error) {
	applied, err := db.appliedMigrations(ctx, db.pool)
	if err != nil {
		return nil, fmt.Errorf("migration versions: %w", wrapErr(err))
	}
	vs := make([]int, 0, len(applied))
	for v := range applied {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs, nil
}
