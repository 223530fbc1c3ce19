package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/deputyhq/deputy/internal/bench"
)

// newBenchCmd returns "deputy bench", which runs [bench.Run] and prints its
// result as one JSON line.
func newBenchCmd(e *env) *cobra.Command {
	var (
		cfg        bench.Config
		logLevel   string
		cpuProfile string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a node's throughput and schedule-to-start latency with no-op tasks",
		Long: `Measure one deputy node, with the library's default configuration unless
flags override it, running no-op tasks.

  --mode burndown  schedules -n tasks in bulk, then times the node from its
                   start until the last completion is written (tasks/s).
  --mode steady    schedules one task per call at --rate for --duration while
                   the node runs them, and reports the achieved rate and the
                   time from scheduling to the start of each run. Scheduling
                   stops at --duration even when it fell behind --rate.

The store is a new SQLite file (WAL mode) in a temporary directory or in
--data, or, with --store postgres, a new schema (deputy_bench_<random>, or
--schema, which must not exist) in the database of --database-url or, without
it, of $DATABASE_URL. Either is removed at the end, also when the run fails or
is interrupted. Progress goes to stderr each second; one JSON line with every
figure and setting goes to stdout at the end, and none when the run fails or
is interrupted. Invalid settings exit 2.`,
		Example: `  deputy bench --mode burndown -n 50000
  DATABASE_URL=postgres://localhost/bench deputy bench --store postgres -n 100000
  deputy bench --store postgres --mode steady --rate 500 --duration 30s`,
		Args: args(cobra.NoArgs),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&cfg.Mode, "mode", bench.ModeBurndown, "burndown or steady")
	f.StringVar(&cfg.Store, "store", bench.StoreSQLite, "sqlite or postgres")
	f.IntVarP(&cfg.N, "num-tasks", "n", bench.DefaultN, "tasks to burn down")
	f.Float64Var(&cfg.Rate, "rate", bench.DefaultRate, "steady mode: tasks scheduled per second")
	f.DurationVar(&cfg.Duration, "duration", bench.DefaultDuration,
		"steady mode: how long to schedule tasks")
	f.IntVar(&cfg.Waiting, "waiting", 0,
		"tasks due in a day that wait in the store while the node runs")
	f.IntVar(&cfg.Chunk, "chunk", bench.DefaultChunk, "tasks per bulk schedule call")
	f.IntVar(&cfg.Schedulers, "schedulers", bench.DefaultSchedulers,
		"steady mode: goroutines calling Schedule")
	f.IntVar(&cfg.Capacity, "capacity", 0, "node capacity (0: the default)")
	f.DurationVar(&cfg.PollInterval, "poll-interval", 0, "node poll interval (0: the default)")
	f.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL for --store postgres "+
		"(default $DATABASE_URL; prefer it: flags are visible to other users)")
	f.StringVar(&cfg.Schema, "schema", "", "PostgreSQL schema to create and drop, "+
		"which must not exist (default deputy_bench_<random>)")
	f.StringVar(&cfg.DataDir, "data", "", "directory for the SQLite file (default a temporary one)")
	f.StringVar(&logLevel, "log-level", "", "node log level on stderr: debug, info, warn or error")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if logLevel != "" {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usagef("--log-level: %v", err)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(e.stderr,
				&slog.HandlerOptions{Level: level}))
		}
		if cfg.DatabaseURL == "" && cfg.Store == bench.StorePostgres {
			cfg.DatabaseURL, _ = e.lookupEnv("DATABASE_URL")
		}
		if err := checkBenchFlags(cfg); err != nil {
			return err
		}
		cfg.Progress = e.stderr
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if cpuProfile != "" {
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
		}
		res, err := bench.Run(ctx, cfg)
		if _, ok := errors.AsType[*bench.ConfigError](err); ok {
			return usageError{err}
		}
		if err != nil {
			return err
		}
		b, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", b)
		return err
	}
	return cmd
}

// checkBenchFlags refuses the flag values that are wrong on their face.
// Zero is refused where [bench.Config] would take it for the default; the
// rest, such as the ranges, is bench's to check.
func checkBenchFlags(cfg bench.Config) error {
	switch {
	case cfg.Mode != bench.ModeBurndown && cfg.Mode != bench.ModeSteady:
		return usagef("--mode %q: want burndown or steady", cfg.Mode)
	case cfg.Store != bench.StoreSQLite && cfg.Store != bench.StorePostgres:
		return usagef("--store %q: want sqlite or postgres", cfg.Store)
	case cfg.Store == bench.StorePostgres && cfg.DatabaseURL == "":
		return usagef("--store postgres needs --database-url or DATABASE_URL")
	case cfg.N <= 0:
		return usagef("-n %d: must be positive", cfg.N)
	case !(cfg.Rate > 0): // NB: also refuses NaN
		return usagef("--rate %g: must be positive", cfg.Rate)
	case cfg.Duration <= 0:
		return usagef("--duration %s: must be positive", cfg.Duration)
	case cfg.Chunk <= 0:
		return usagef("--chunk %d: must be positive", cfg.Chunk)
	case cfg.Schedulers <= 0:
		return usagef("--schedulers %d: must be positive", cfg.Schedulers)
	}
	return nil
}

// startCPUProfile starts writing a CPU profile to path, until the returned
// function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
