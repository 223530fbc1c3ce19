// Package sqlite is the embedded [deputy.Store]: one SQLite file in WAL mode,
// written through a single connection and read through a pool.
//
// Writes serialize on the writer connection, each in a BEGIN IMMEDIATE
// transaction, so that claims never race; reads run in parallel beside them
// and see the last committed state. Open applies the embedded migrations.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deputyhq/deputy"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Config configures [Open].
type Config struct {
	// Path is the database file, created when missing. Required. In-memory
	// databases are not supported: the writer and the readers are separate
	// connections to the file.
	Path string
	// Logger receives the store's logs. Defaults to discarding them.
	Logger *slog.Logger
	// BusyTimeout is how long a connection waits for a lock held by another
	// process before failing. Defaults to 5s.
	BusyTimeout time.Duration
	// MaxReaders bounds the read connections. Defaults to GOMAXPROCS, and at
	// least 4.
	MaxReaders int
	// Now returns the time of writes whose caller passes none: the
	// timestamps of inserted tasks and of keys recorded on insert. Defaults
	// to time.Now.
	Now func() time.Time
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Logger = cmp.Or(c.Logger, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.BusyTimeout = cmp.Or(c.BusyTimeout, 5*time.Second)
	c.MaxReaders = cmp.Or(c.MaxReaders, max(4, runtime.GOMAXPROCS(0)))
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Path == "":
		return errors.New("path is required")
	case c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:"):
		return fmt.Errorf("path %q must be a plain file path", c.Path)
	case strings.ContainsAny(c.Path, "?#"):
		return fmt.Errorf("path %q must not contain ? or #", c.Path)
	case c.BusyTimeout < 0:
		return errors.New("busy timeout must not be negative")
	case c.MaxReaders < 1:
		return errors.New("max readers must be positive")
	}
	return nil
}

// DB is the SQLite store.
type DB struct {
	cfg Config
	log *slog.Logger

	// w is the single writer connection; r is the read pool.
	w *sql.DB
	r *sql.DB
	// stmts are the writer's statements, prepared once at Open.
	stmts map[string]*sql.Stmt

	closeOnce sync.Once
	closeErr  error
}

var _ deputy.Store = (*DB)(nil)

// Open opens or creates the database at cfg.Path and applies the pending
// migrations.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db := &DB{cfg: cfg, log: cfg.Logger.With("component", "sqlite")}

	// The writer goes first: it switches the file to WAL mode.
	var err error
	db.w, err = sql.Open("sqlite", dsn(cfg, writerParams))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)
	if err := db.w.PingContext(ctx); err != nil {
		_ = db.w.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}

	db.r, err = sql.Open("sqlite", dsn(cfg, readerParams))
	if err != nil {
		_ = db.w.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.r.SetMaxOpenConns(cfg.MaxReaders)
	db.r.SetMaxIdleConns(cfg.MaxReaders)

	if err := db.migrate(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	if err := db.prepare(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	return db, nil
}

// dsn returns the data source name of cfg's file with the settings every
// connection shares, plus the given URL query parameters.
func dsn(cfg Config, params url.Values) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "temp_store(MEMORY)")
	for k, vs := range params {
		q[k] = append(q[k], vs...)
	}
	return cfg.Path + "?" + q.Encode()
}

// writerParams are the writer's own settings: transactions that take the
// write lock at BEGIN, a larger page cache, and a WAL file truncated back
// to 64 MiB after checkpoints.
var writerParams = url.Values{
	"_txlock": {"immediate"},
	"_pragma": {"cache_size(-32768)", "journal_size_limit(67108864)"},
}

// readerParams keep readers from writing.
var readerParams = url.Values{"_query_only": {"1"}}

// SerialWrites reports that the database runs one write at a time: a
// manager on it keeps no second claim in flight ahead of the first, which
// would only wait for it.
func (db *DB) SerialWrites() bool { return true }

// Close closes the database. It is idempotent.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		var errs []error
		for _, s := range db.stmts {
			errs = append(errs, s.Close())
		}
		if db.r != nil {
			errs = append(errs, db.r.Close())
		}
		errs = append(errs, db.w.Close())
		if err := errors.Join(errs...); err != nil {
			db.closeErr = fmt.Errorf("close sqlite: %w", err)
		}
	})
	return db.closeErr
}

// micros returns t as stored: unix microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

// microsPtr returns an optional time as stored, nil for NULL.
func microsPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

// fromMicros returns a stored time.
func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// fromMicrosPtr returns a stored optional time.
func fromMicrosPtr(v sql.Null[int64]) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.V)
	return &t
}

// boolInt returns b as stored.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
