// Package postgres implements [deputy.Store] on PostgreSQL, for deployments
// of several nodes sharing one database.
//
// Nodes claim due tasks with one statement per claim cycle that locks rows
// with FOR UPDATE SKIP LOCKED, so they never wait for each other and never
// claim a task twice. No transaction stays open while a task runs: a claim
// commits at once and the run's outcome is written conditionally on the
// claim. When a write makes a task due now, the store sends a NOTIFY that
// wakes the other nodes' claim loops (see [DB.Wakeups]).
//
// Open does not change the schema unless [Config.Migrate] is set; call
// [DB.Migrate] from a deployment step otherwise.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/deputyhq/deputy"
)

var (
	_ deputy.Store    = (*DB)(nil)
	_ deputy.Notifier = (*DB)(nil)
)

// DefaultNotifyInterval is the default of [Config.NotifyInterval].
const DefaultNotifyInterval = 5 * time.Millisecond

// defaultAppName is the application_name of connections whose URL sets
// none, so that the store's sessions stand out in pg_stat_activity.
const defaultAppName = "deputy"

// Config configures [Open].
type Config struct {
	// URL is the connection string, as a URL or key=value pairs. Required.
	// pgx's parameters apply, such as pool_max_conns, or
	// default_query_exec_mode=exec behind a pooler in transaction mode,
	// where the default cached prepared statements do not work.
	URL string
	// Schema is the schema the store's tables live in. Open creates it when
	// it is missing and puts it first on every connection's search_path.
	// Empty means the server's search_path, usually public.
	Schema string
	// Logger receives the store's background events: the listener's
	// reconnections and failed notifications. Defaults to discarding.
	Logger *slog.Logger
	// MaxConns bounds the connection pool, not counting the listener's
	// dedicated connection. Zero means pgxpool's default (at least 4).
	MaxConns int32
	// StatementTimeout bounds every statement on the server. Zero means the
	// server's setting.
	StatementTimeout time.Duration
	// Migrate makes Open apply pending migrations.
	Migrate bool
	// NoListen disables the LISTEN connection: [DB.Wakeups] then never
	// delivers. Notifications are still sent.
	NoListen bool
	// NotifyInterval is the least time between two notifications this store
	// sends; writes in between share one. Defaults to 5ms.
	NotifyInterval time.Duration
	// VacuumEvery is how many tasks the store claims between two VACUUMs of
	// the tasks table that it runs itself, so that claims do not slow down
	// between autovacuum's visits. Zero means 10,000; negative leaves the
	// table to autovacuum.
	VacuumEvery int
	// Now is the clock for the times the store sets itself: Insert's
	// CreatedAt and the check for tasks due now. Defaults to time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.NotifyInterval == 0 {
		c.NotifyInterval = DefaultNotifyInterval
	}
	if c.VacuumEvery == 0 {
		c.VacuumEvery = DefaultVacuumEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.URL == "":
		return errors.New("config: URL is required")
	case c.MaxConns < 0:
		return errors.New("config: MaxConns must not be negative")
	case c.StatementTimeout < 0:
		return errors.New("config: StatementTimeout must not be negative")
	case c.NotifyInterval < 0:
		return errors.New("config: NotifyInterval must not be negative")
	}
	return nil
}

// DB is a [deputy.Store] on PostgreSQL. It is safe for concurrent use.
type DB struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
	// channel is the NOTIFY payload: the schema, so that stores sharing a
	// database ignore each other's wakeups.
	channel string

	wakeups chan struct{} // delivered to [DB.Wakeups]
	notify  chan struct{} // requests a NOTIFY; buffered 1 so requests coalesce

	// listening is signalled each time the listener starts listening,
	// listenPID is its backend's pid and notified counts the notifications
	// it delivered: tests wait on, kill and count it.
	listening chan struct{}
	listenPID atomic.Uint32
	notified  atomic.Int64

	// claimedSince counts the tasks claimed since the last VACUUM started;
	// vacuuming is set while one runs. See claimedRows.
	claimedSince   atomic.Int64
	vacuuming      atomic.Bool
	vacuumFailures atomic.Int64

	ctx    context.Context // the store's lifetime, cancelled by Close
	cancel context.CancelFunc
	// bg orders the start of background goroutines after Open with Close.
	bg        sync.Mutex
	wg        sync.WaitGroup // background goroutines
	closeOnce sync.Once
}

// Open connects to PostgreSQL, creates the schema when it is missing, and
// applies migrations when cfg.Migrate is set. It checks the server with one
// round trip before returning.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	params := pcfg.ConnConfig.RuntimeParams
	if cfg.Schema != "" {
		params["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}
	if cfg.StatementTimeout > 0 {
		params["statement_timeout"] = strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	}
	if params["application_name"] == "" {
		params["application_name"] = defaultAppName
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}

	db := &DB{
		pool:      pool,
		cfg:       cfg,
		log:       cfg.Logger,
		channel:   cfg.Schema,
		wakeups:   make(chan struct{}, 1),
		notify:    make(chan struct{}, 1),
		listening: make(chan struct{}, 1),
	}
	if err := db.prepare(ctx); err != nil {
		pool.Close()
		return nil, err
	}

	db.ctx, db.cancel = context.WithCancel(context.Background())
	db.wg.Add(1)
	go db.notifyLoop()
	if !cfg.NoListen {
		db.wg.Add(1)
		go db.listenLoop(pcfg.ConnConfig.Copy())
	}
	return db, nil
}

// prepare checks the server, creates the schema and migrates when asked.
func (db *DB) prepare(ctx context.Context) error {
	if db.cfg.Schema == "" {
		if err := db.pool.Ping(ctx); err != nil {
			return fmt.Errorf("ping: %w", wrapErr(err))
		}
	} else {
		schema := pgx.Identifier{db.cfg.Schema}.Sanitize()
		_, err := db.pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema)
		// NB: concurrent CREATE SCHEMA IF NOT EXISTS can still collide on the
		// catalog's unique index; the schema exists either way.
		if err != nil && !isCode(err, "23505", "42P06") {
			return fmt.Errorf("create schema: %w", wrapErr(err))
		}
	}
	if db.cfg.Migrate {
		return db.Migrate(ctx)
	}
	return nil
}

// Close stops the listener and closes the pool, waiting for both. It is
// idempotent.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.bg.Lock()
		db.cancel()
		db.bg.Unlock()
		db.wg.Wait()
		db.pool.Close()
	})
	return nil
}

// Wakeups delivers a value when another writer, on any node, may have made
// a task due now. It is buffered: wakeups that arrive while one is pending
// coalesce.
func (db *DB) Wakeups() <-chan struct{} { return db.wakeups }

// Pool returns the store's connection pool, for tests and tools.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// now returns the store's clock as stored: UTC, to the microsecond.
func (db *DB) now() time.Time { return micro(db.cfg.Now()) }

// micro returns t as PostgreSQL stores it.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// querier is what the statements need from a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// maxTxAttempts bounds the attempts of a transaction that lost a deadlock
// or serialization race.
const maxTxAttempts = 3

// retry runs fn again when it lost a deadlock or a serialization race,
// which the server resolves by rolling one party back: fn wrote nothing.
// Batches are sorted by id so that writers lock rows in one order, which
// leaves the races with statements that lock in another order.
func retry(fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt == maxTxAttempts || !isCode(err, "40001", "40P01") {
			return err
		}
	}
}

// inTx runs fn in a transaction and commits, retrying as retry does. fn
// must not leave effects outside the transaction: callers write results
// back only once inTx succeeds.
func (db *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return retry(func() error { return pgx.BeginFunc(ctx, db.pool, fn) })
}
