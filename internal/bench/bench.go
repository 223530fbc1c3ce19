// Package bench is the engine of "deputy bench". It runs one deputy node,
// with the library's default configuration unless told otherwise, over a
// store of its own, and measures it with no-op tasks:
//
//   - burn-down: N tasks are scheduled in bulk, then the node is started and
//     timed until the last completion is written;
//   - steady: tasks are scheduled one per call at an offered rate while the
//     node runs them, and the time from scheduling to the start of each run
//     is recorded.
//
// The store is a SQLite file in a directory of its own, or a PostgreSQL
// schema that the run creates and drops; a run never touches a schema or a
// table it did not create.
//
// [Run] returns a [*ConfigError] for settings it refuses, and an error
// wrapping [ErrInterrupted] when its context ends before it does: a run
// either completes and returns every figure, or returns none.
package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/builtin"
)

// Modes of a run.
const (
	ModeBurndown = "burndown"
	ModeSteady   = "steady"
)

// Stores a run can use.
const (
	StoreSQLite   = "sqlite"
	StorePostgres = "postgres"
)

// Defaults of [Config].
const (
	DefaultN                = 100_000
	DefaultRate             = 500
	DefaultDuration         = 10 * time.Second
	DefaultChunk            = 5000
	DefaultSchedulers       = 8
	DefaultProgressInterval = time.Second
	DefaultDrainTimeout     = time.Minute

	// MaxRate bounds the offered rate of steady mode, in tasks per second.
	MaxRate = 1_000_000
	// MaxChunk bounds the tasks of one BulkSchedule call.
	MaxChunk = 10_000
)

// ErrInterrupted is wrapped by the error of a run whose context ended
// before the run did, such as by a signal: it has no figures to report.
var ErrInterrupted = errors.New("bench: interrupted")

// ConfigError is a setting a run refuses: a value out of range, or a
// PostgreSQL schema that exists already. Nothing was measured.
type ConfigError struct {
	Err error
}

// Error implements the error interface.
func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the refusal.
func (e *ConfigError) Unwrap() error { return e.Err }

// Config configures a [Run].
type Config struct {
	// Mode is ModeBurndown or ModeSteady. Defaults to ModeBurndown.
	Mode string
	// Store is StoreSQLite or StorePostgres. Defaults to StoreSQLite.
	Store string

	// N is how many tasks a burn-down runs. Defaults to 100,000.
	N int
	// Rate is the offered rate of steady mode, in tasks per second, at
	// most MaxRate. Defaults to 500.
	Rate float64
	// Duration is how long steady mode schedules tasks: it stops then,
	// also when it fell behind the offered rate. Rate times Duration must
	// make at least one task. Defaults to 10s.
	Duration time.Duration
	// Waiting is how many tasks, due in a day, wait in the store while the
	// node runs: they show whether a large store slows claims or grows the
	// node's memory. Zero means none.
	Waiting int
	// Chunk is how many tasks one BulkSchedule call schedules. Defaults to
	// 5000; at most MaxChunk.
	Chunk int
	// Schedulers is how many goroutines call Schedule in steady mode, so
	// that one slow call does not hold back the offered rate. Defaults to 8.
	Schedulers int

	// Capacity overrides the node's capacity when positive. Zero means the
	// library's default; negative is refused.
	Capacity int
	// PollInterval overrides the node's poll interval when positive, and
	// must then be at least the library's minimum of 10ms. Zero means the
	// library's default; negative is refused.
	PollInterval time.Duration

	// DatabaseURL is the PostgreSQL server to use. Required for
	// StorePostgres.
	DatabaseURL string
	// Schema is the PostgreSQL schema to create and drop. It must not
	// exist: a run only ever drops a schema it created. Defaults to
	// deputy_bench_ and a random suffix.
	Schema string
	// DataDir is the directory the SQLite file is created in; the file is
	// removed at the end. Defaults to a temporary directory.
	DataDir string

	// Progress receives a line of progress per ProgressInterval. Nil
	// discards them.
	Progress io.Writer
	// ProgressInterval defaults to 1s.
	ProgressInterval time.Duration
	// DrainTimeout bounds how long steady mode waits, once scheduling ends,
	// for the scheduled tasks to complete. Defaults to 1m.
	DrainTimeout time.Duration
	// Logger receives the node's and the store's logs. Defaults to
	// discarding them.
	Logger *slog.Logger
}

// withDefaults returns c with its zero values set to their defaults.
func (c Config) withDefaults() Config {
	c.Mode = cmp.Or(c.Mode, ModeBurndown)
	c.Store = cmp.Or(c.Store, StoreSQLite)
	c.N = cmp.Or(c.N, DefaultN)
	c.Rate = cmp.Or(c.Rate, DefaultRate)
	c.Duration = cmp.Or(c.Duration, DefaultDuration)
	c.Chunk = cmp.Or(c.Chunk, DefaultChunk)
	c.Schedulers = cmp.Or(c.Schedulers, DefaultSchedulers)
	c.ProgressInterval = cmp.Or(c.ProgressInterval, DefaultProgressInterval)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, DefaultDrainTimeout)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate returns a [*ConfigError] for settings a run refuses.
func (c Config) validate() error {
	if err := c.check(); err != nil {
		return &ConfigError{Err: err}
	}
	return nil
}

// check returns what is wrong with c, once its defaults are set.
func (c Config) check() error {
	switch {
	case c.Mode != ModeBurndown && c.Mode != ModeSteady:
		return fmt.Errorf("mode %q: want %s or %s", c.Mode, ModeBurndown, ModeSteady)
	case c.Store != StoreSQLite && c.Store != StorePostgres:
		return fmt.Errorf("store %q: want %s or %s", c.Store, StoreSQLite, StorePostgres)
	case c.Store == StorePostgres && c.DatabaseURL == "":
		return errors.New("the postgres store needs a database URL")
	case c.N < 1:
		return fmt.Errorf("n %d must be positive", c.N)
	case !(c.Rate > 0 && c.Rate <= MaxRate): // NB: also refuses NaN
		return fmt.Errorf("rate %g must be positive and at most %d", c.Rate, MaxRate)
	case c.Duration <= 0:
		return fmt.Errorf("duration %s must be positive", c.Duration)
	case c.Mode == ModeSteady && c.steadyTasks() < 1:
		return fmt.Errorf("rate %g for %s schedules no task", c.Rate, c.Duration)
	case c.Waiting < 0:
		return fmt.Errorf("waiting %d must not be negative", c.Waiting)
	case c.Chunk < 1 || c.Chunk > MaxChunk:
		return fmt.Errorf("chunk %d must be between 1 and %d", c.Chunk, MaxChunk)
	case c.Schedulers < 1:
		return fmt.Errorf("schedulers %d must be positive", c.Schedulers)
	case c.Capacity < 0:
		return fmt.Errorf("capacity %d must not be negative", c.Capacity)
	case c.PollInterval < 0:
		return fmt.Errorf("poll interval %s must not be negative", c.PollInterval)
	}
	// The node's own limits, such as the shortest poll interval.
	if err := c.nodeConfig().Validate(); err != nil {
		return fmt.Errorf("node %s", strings.TrimPrefix(err.Error(), "deputy: "))
	}
	return nil
}

// steadyTasks is how many tasks steady mode offers: Rate for Duration.
func (c Config) steadyTasks() int64 {
	return int64(c.Rate * c.Duration.Seconds())
}

// nodeConfig is the configuration of the node under test: the library's
// defaults unless the run overrides them.
func (c Config) nodeConfig() deputy.Config {
	return deputy.Config{
		NodeID:       "deputy-bench-" + randomSuffix(),
		Capacity:     c.Capacity,
		PollInterval: c.PollInterval,
		Logger:       c.Logger,
	}
}

// Result is every figure and setting of a run; it marshals to the JSON line
// "deputy bench" prints.
type Result struct {
	Mode  string `json:"mode"`
	Store string `json:"store"`

	N            int     `json:"n,omitempty"`
	Rate         float64 `json:"rate,omitempty"`
	Duration     string  `json:"duration,omitempty"`
	Waiting      int     `json:"waiting"`
	Chunk        int     `json:"chunk"`
	Schedulers   int     `json:"schedulers,omitempty"`
	Capacity     int     `json:"capacity"`
	CostBudget   int     `json:"cost_budget"`
	TaskCost     int     `json:"task_cost"`
	PollInterval string  `json:"poll_interval"`
	Lease        string  `json:"lease"`

	// Insert is the scheduling of the burn-down's tasks and of the waiting
	// ones, before the node starts.
	InsertSeconds     float64 `json:"insert_s"`
	InsertTasksPerSec float64 `json:"insert_tasks_per_sec"`

	// Elapsed runs from the node's start (burn-down) or the first Schedule
	// call (steady) to the last completion written.
	ElapsedSeconds float64 `json:"elapsed_s"`
	Completed      int64   `json:"completed"`
	TasksPerSec    float64 `json:"tasks_per_sec"`

	// Steady mode: what was scheduled, at what rate, how long Schedule
	// took, and the time from scheduling to the start of each run.
	Scheduled       int64      `json:"scheduled,omitempty"`
	ScheduledPerSec float64    `json:"scheduled_per_sec,omitempty"`
	ScheduleCall    *Latencies `json:"schedule_call_ms,omitempty"`
	Latency         *Latencies `json:"schedule_to_start_ms,omitempty"`

	// Claims and Completes describe the node's calls of the store's Claim
	// and Complete: how many, how many tasks each carried, how long each
	// took.
	Claims    *Calls `json:"claims,omitempty"`
	Completes *Calls `json:"completes,omitempty"`
	// Combined are the calls that wrote outcomes and claimed in one
	// transaction, counted in Claims and Completes too.
	Combined *Calls `json:"complete_and_claim,omitempty"`

	// ProcessCPUSeconds is the CPU time the process used from the node's
	// start to the end of the run, scheduling included in steady mode.
	ProcessCPUSeconds float64 `json:"process_cpu_s"`

	// PeakRSS is the process's peak resident memory (VmHWM). NodePeakRSS
	// is the peak since the node started: the insertion's peak is reset
	// first when the kernel allows it.
	PeakRSS     int64 `json:"peak_rss_bytes"`
	NodePeakRSS int64 `json:"node_peak_rss_bytes,omitempty"`
	// RSSAtStart is the resident memory when the node started.
	RSSAtStart int64 `json:"rss_at_start_bytes,omitempty"`

	StoreSettings map[string]string `json:"store_settings,omitempty"`
	GoVersion     string            `json:"go_version"`
	NumCPU        int               `json:"num_cpu"`
	GOMAXPROCS    int               `json:"gomaxprocs"`
	StartedAt     time.Time         `json:"started_at"`
}

// Latencies summarises durations, in milliseconds.
type Latencies struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// Calls describes the calls of a store method.
type Calls struct {
	Calls        int64      `json:"calls"`
	Items        int64      `json:"tasks"`
	ItemsPerCall float64    `json:"tasks_per_call"`
	Ms           *Latencies `json:"ms,omitempty"`
}

// Run runs one benchmark and returns its figures. It removes what it
// created, also when it fails or is interrupted.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}

	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, interrupted(ctx, fmt.Errorf("bench: %w", err))
	}
	res, err := measure(ctx, cfg, st)
	err = interrupted(ctx, err)

	// Remove the store whatever happened, and say so when that fails: what
	// is left behind is the user's to remove.
	if cerr := st.close(context.WithoutCancel(ctx)); cerr != nil {
		err = errors.Join(err, fmt.Errorf("bench: %w", cerr))
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// interrupted returns err, or [ErrInterrupted] once ctx is done: what
// failed after an interruption is its fallout, such as a closed statement,
// and a run that went on is cut short all the same.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ErrInterrupted, context.Cause(ctx))
	}
	return err
}

// measure runs the node over st in the mode of cfg and returns its
// figures.
func measure(ctx context.Context, cfg Config, st *runStore) (res *Result, err error) {
	res = &Result{
		Mode: cfg.Mode, Store: cfg.Store, Waiting: cfg.Waiting, Chunk: cfg.Chunk,
		GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		StartedAt: time.Now().UTC(), StoreSettings: st.settings,
	}
	n := newNode(st.Store)
	if n.m, err = deputy.New(n.store, cfg.nodeConfig()); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := n.m.Register(n.noop()); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	n.describe(ctx, res)

	switch cfg.Mode {
	case ModeBurndown:
		err = burndown(ctx, cfg, n, res)
	default:
		err = steady(ctx, cfg, n, res)
	}
	if stopErr := n.stop(ctx); err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res.Claims, res.Completes = n.counts.claims.summary(), n.counts.completes.summary()
	res.Combined = n.counts.combined.summary()
	res.ProcessCPUSeconds = (cpuTime() - n.cpuStart).Seconds()
	res.PeakRSS, _ = procStatus("VmHWM")
	if n.hwmReset {
		res.NodePeakRSS = res.PeakRSS
	}
	return res, nil
}

// node is the deputy node under test, with the counters the benchmark
// reads.
type node struct {
	m *deputy.Manager
	// store is what the manager uses: counts wrapping the run's store.
	store  deputy.Store
	counts *countingStore
	// rec records the runs' start latencies in steady mode.
	rec      *recorder
	started  bool
	hwmReset bool
	cpuStart time.Duration
}

func newNode(s deputy.Store) *node {
	counts, store := wrapStore(s)
	return &node{store: store, counts: counts, rec: newRecorder()}
}

// noop is builtin's no-op task, whose runs record when they start.
func (n *node) noop() deputy.Definition {
	d := builtin.Noop()
	run := d.Run
	d.Run = func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		n.rec.started(r.Task, time.Now())
		return run(ctx, r)
	}
	return d
}

// describe fills in the node's effective settings. It reads the store's
// workload too, so it is called while the store is empty.
func (n *node) describe(ctx context.Context, res *Result) {
	h := n.m.Health(ctx)
	res.Capacity = h.Stats.Configuration.Capacity.Config
	res.CostBudget = h.Stats.Configuration.Capacity.AsCost
	res.PollInterval = time.Duration(h.Stats.Configuration.PollInterval).String()
	res.Lease = time.Duration(h.Stats.Configuration.Lease).String()
	if d, ok := n.m.Definition(builtin.NoopType); ok {
		res.TaskCost = int(d.Cost)
	}
}

// start starts the node, after resetting the process's peak memory so
// that what follows is the node's own.
func (n *node) start(ctx context.Context, res *Result) error {
	runtime.GC()
	freeOSMemory()
	n.hwmReset = resetPeakRSS()
	res.RSSAtStart, _ = procStatus("VmRSS")
	n.cpuStart = cpuTime()
	if err := n.m.Start(ctx); err != nil {
		return err
	}
	n.started = true
	return nil
}

// stop stops the node, letting what runs finish.
func (n *node) stop(ctx context.Context) error {
	if !n.started {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return n.m.Stop(sctx)
}
