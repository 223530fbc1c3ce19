package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/postgres"
	"github.com/deputyhq/deputy/sqlite"
)

// runStore is the store of one run and how to remove it.
type runStore struct {
	deputy.Store
	// settings describe the store: its file or schema and the server's
	// durability settings.
	settings map[string]string
	// remove deletes what the run created, once the store is closed.
	remove func(ctx context.Context) error
}

// close closes the store and removes what the run created.
func (s *runStore) close(ctx context.Context) error {
	return errors.Join(s.Close(), s.remove(ctx))
}

func openStore(ctx context.Context, cfg Config) (*runStore, error) {
	if cfg.Store == StorePostgres {
		return openPostgres(ctx, cfg)
	}
	return openSQLite(ctx, cfg)
}

// openSQLite creates a database file in a directory of its own: a new
// temporary one, or one made inside cfg.DataDir.
func openSQLite(ctx context.Context, cfg Config) (*runStore, error) {
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}
	dir, err := os.MkdirTemp(cfg.DataDir, "deputy-bench-")
	if err != nil {
		return nil, fmt.Errorf("create sqlite directory: %w", err)
	}
	path := filepath.Join(dir, "deputy.db")
	db, err := sqlite.Open(ctx, sqlite.Config{Path: path, Logger: cfg.Logger})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	return &runStore{
		Store:    db,
		settings: map[string]string{"path": path, "journal_mode": "wal", "synchronous": "normal"},
		remove:   func(context.Context) error { return os.RemoveAll(dir) },
	}, nil
}

// openPostgres creates the run's schema, refusing one that exists, and
// opens the store in it with its migrations applied. The schema is dropped
// at the end: the run only ever drops a schema it created.
func openPostgres(ctx context.Context, cfg Config) (*runStore, error) {
	schema := cfg.Schema
	if schema == "" {
		schema = "deputy_bench_" + randomSuffix()
	}
	admin, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	settings, err := serverSettings(ctx, admin)
	if err == nil {
		err = createSchema(ctx, admin, schema)
	}
	if err != nil {
		_ = admin.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	settings["schema"] = schema

	// From here on the schema is the run's own, to drop on every way out.
	remove := func(ctx context.Context) error {
		defer admin.Close(context.WithoutCancel(ctx))
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+
			" CASCADE")
		if err != nil {
			return fmt.Errorf("drop schema %s: %w", schema, err)
		}
		return nil
	}
	db, err := postgres.Open(ctx, postgres.Config{
		URL: cfg.DatabaseURL, Schema: schema, Migrate: true, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open postgres: %w", err),
			remove(context.WithoutCancel(ctx)))
	}
	return &runStore{Store: db, settings: settings, remove: remove}, nil
}

// duplicateSchema is the SQLSTATE of CREATE SCHEMA on a schema that exists.
const duplicateSchema = "42P06"

// createSchema creates schema, and returns a [*ConfigError] when it exists
// already, whatever it holds. The statement is not cancelled with ctx, so
// that the run knows whether the schema is its own to drop.
func createSchema(ctx context.Context, conn *pgx.Conn, schema string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok &&
		pgErr.Code == duplicateSchema {
		return &ConfigError{Err: fmt.Errorf(
			"schema %q exists: the benchmark only uses a schema it creates", schema)}
	}
	if err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	return nil
}

// serverSettings reads the settings that bound a PostgreSQL figure.
func serverSettings(ctx context.Context, conn *pgx.Conn) (map[string]string, error) {
	names := []string{"server_version", "fsync", "synchronous_commit", "full_page_writes",
		"wal_sync_method", "shared_buffers", "max_connections"}
	settings := map[string]string{}
	for _, name := range names {
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return nil, fmt.Errorf("read setting %s: %w", name, err)
		}
		settings[name] = v
	}
	return settings, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// countingStore counts the completions the store wrote, and when it wrote
// the last of them, and times the node's claims and completions. A call
// that writes outcomes and claims counts as both.
type countingStore struct {
	deputy.Store
	claims, completes *callStats
	// combined counts the calls that wrote outcomes and claimed.
	combined *callStats
	// serial is what the store's SerialWrites reports, false without one.
	serial bool

	mu        sync.Mutex
	completed int64         // guarded by mu
	last      time.Time     // guarded by mu
	changed   chan struct{} // closed and replaced on each write; guarded by mu
}

// claimCompleter is what deputy uses of a store that writes run outcomes
// in the transaction of a claim.
type claimCompleter interface {
	CompleteAndClaim(ctx context.Context, cs []deputy.Completion, p deputy.ClaimParams,
	) ([]error, []*deputy.Task, error)
}

// notifier forwards a store's wakeups.
type notifier struct{ n deputy.Notifier }

// Wakeups implements [deputy.Notifier].
func (n notifier) Wakeups() <-chan struct{} { return n.n.Wakeups() }

// combiner counts the outcomes and claims of a store's CompleteAndClaim.
type combiner struct {
	s  *countingStore
	cc claimCompleter
}

// CompleteAndClaim counts the outcomes written and the claim.
func (c combiner) CompleteAndClaim(ctx context.Context, cs []deputy.Completion,
	p deputy.ClaimParams,
) ([]error, []*deputy.Task, error) {
	begin := time.Now()
	errs, tasks, err := c.cc.CompleteAndClaim(ctx, cs, p)
	if err != nil {
		return errs, tasks, err
	}
	took := time.Since(begin)
	c.s.claims.add(len(tasks), took)
	c.s.completes.add(len(cs), took)
	c.s.combined.add(len(cs), took)
	c.s.wrote(errs)
	return errs, tasks, nil
}

// wrapStore returns the counts of s, and the store the node uses: the
// counts, with the optional interfaces of s that deputy uses.
func wrapStore(s deputy.Store) (*countingStore, deputy.Store) {
	c := &countingStore{Store: s, changed: make(chan struct{}),
		claims: newCallStats(), completes: newCallStats(), combined: newCallStats()}
	if sw, ok := s.(interface{ SerialWrites() bool }); ok {
		c.serial = sw.SerialWrites()
	}
	n, notifies := s.(deputy.Notifier)
	cc, combines := s.(claimCompleter)
	switch {
	case notifies && combines:
		return c, struct {
			*countingStore
			notifier
			combiner
		}{c, notifier{n}, combiner{c, cc}}
	case notifies:
		return c, struct {
			*countingStore
			notifier
		}{c, notifier{n}}
	case combines:
		return c, struct {
			*countingStore
			combiner
		}{c, combiner{c, cc}}
	}
	return c, c
}

// SerialWrites reports whether the store runs one write at a time, as the
// store's own method does: deputy claims differently when it does.
func (s *countingStore) SerialWrites() bool { return s.serial }

// Complete implements [deputy.Store], counting the outcomes written.
func (s *countingStore) Complete(ctx context.Context, cs []deputy.Completion,
) ([]error, error) {
	begin := time.Now()
	errs, err := s.Store.Complete(ctx, cs)
	if err != nil {
		return errs, err
	}
	s.completes.add(len(cs), time.Since(begin))
	s.wrote(errs)
	return errs, nil
}

// wrote counts the outcomes written, those without an error.
func (s *countingStore) wrote(errs []error) {
	written := 0
	for _, e := range errs {
		if e == nil {
			written++
		}
	}
	now := time.Now()
	s.mu.Lock()
	s.completed += int64(written)
	s.last = now
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Claim implements [deputy.Store], timing the claims.
func (s *countingStore) Claim(ctx context.Context, p deputy.ClaimParams) ([]*deputy.Task, error) {
	begin := time.Now()
	tasks, err := s.Store.Claim(ctx, p)
	if err == nil {
		s.claims.add(len(tasks), time.Since(begin))
	}
	return tasks, err
}

// count returns how many completions were written, and when the last
// write returned.
func (s *countingStore) count() (int64, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.completed, s.last
}

// waitFor blocks until n completions are written or ctx is done, and
// returns when the write that reached n returned.
func (s *countingStore) waitFor(ctx context.Context, n int64) (time.Time, error) {
	for {
		s.mu.Lock()
		done, last, changed := s.completed, s.last, s.changed
		s.mu.Unlock()
		if done >= n {
			return last, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("wait for %d completions, %d written: %w",
				n, done, context.Cause(ctx))
		}
	}
}
