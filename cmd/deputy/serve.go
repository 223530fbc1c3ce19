package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/deputyhq/deputy"
	"github.com/deputyhq/deputy/builtin"
	"github.com/deputyhq/deputy/httpapi"
	"github.com/deputyhq/deputy/postgres"
	"github.com/deputyhq/deputy/sqlite"
)

// Shutdown deadlines: how long open API calls may take to finish, and how
// long running tasks may take before their contexts are cancelled.
const (
	apiShutdownTimeout     = 10 * time.Second
	managerShutdownTimeout = 30 * time.Second
)

// serveOptions are the serve flags that are not configuration keys.
type serveOptions struct {
	configPath string
	dev        bool
	noMigrate  bool
}

func newServeCmd(e *env) *cobra.Command {
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: claim and run due tasks, and serve the HTTP API",
		Long: `Run the daemon: claim and run due tasks, and serve the HTTP API.

With no configuration at all it keeps its tasks in SQLite under ./deputy-data
and listens on 127.0.0.1:7420. Every configuration key can be set in a YAML
file (--config), as an environment variable DEPUTY_<KEY>, or as a flag, from
low to high precedence. Durations are written like 500ms, 10s, 5m, 1h or 1d.`,
		Args: args(cobra.NoArgs),
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&opts.configPath, "config", "", "YAML configuration file")
	f.BoolVar(&opts.dev, "dev", false,
		"development mode: start local stand-ins of Elasticsearch and UIAM and use them")
	f.BoolVar(&opts.noMigrate, "no-migrate", false, "do not apply PostgreSQL migrations on start")
	addConfigFlags(f)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(opts.configPath, e.lookupEnv, cmd.Flags())
		if err != nil {
			return usageError{err}
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// Once shutting down, a second signal ends the process at once.
		context.AfterFunc(ctx, stop)
		return serve(ctx, e, cfg, opts)
	}
	return cmd
}

// serve runs the daemon until ctx is done, then shuts it down in phases:
// the API stops taking calls, the manager stops claiming and lets running
// tasks finish until a deadline, and the store is closed.
func serve(ctx context.Context, e *env, cfg Config, opts serveOptions) (err error) {
	log := cfg.newLogger(e.stderr)
	var dev *devEnv
	if opts.dev {
		if dev, err = startDev(&cfg, log); err != nil {
			return err
		}
		defer dev.Close()
		log.Warn("development mode: Elasticsearch and UIAM are in-process stand-ins; not for production")
	}
	d, err := newDaemon(ctx, cfg, opts, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	if err := d.m.Start(ctx); err != nil {
		return err
	}
	srv, served := serveAPI(ln, d.api, log)
	addr := ln.Addr().String()
	d.announce(addr, log)
	if dev != nil {
		dev.printBanner(e.stderr, addr)
	}

	if cfg.Examples {
		// A signal during start is a shutdown, not a failure.
		if err = scheduleExamples(ctx, d.m, addr, log); err != nil && ctx.Err() == nil {
			err = fmt.Errorf("schedule examples: %w", err)
		} else {
			err = nil
		}
	}
	if err == nil {
		select {
		case <-ctx.Done():
			log.Info("shutting down", slog.String("reason", context.Cause(ctx).Error()))
		case err = <-served:
			err = fmt.Errorf("serve: %w", err)
		}
	}
	return errors.Join(err, d.shutdown(srv, log))
}

// serveAPI serves h on ln in the background. The channel receives the
// error Serve returns.
func serveAPI(ln net.Listener, h http.Handler, log *slog.Logger) (*http.Server, <-chan error) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// A body trickled in slowly must not hold a connection forever.
		ReadTimeout:  time.Minute,
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return srv, served
}

// announce logs where the daemon listens, for people and for tests and
// tools that read the address from the "deputy listening" line.
func (d *daemon) announce(addr string, log *slog.Logger) {
	log.Info("deputy listening",
		slog.String("addr", addr),
		slog.String("node_id", d.m.NodeID()),
		slog.String("store", d.storeDesc),
		slog.Bool("authentication", d.auth != nil))
	if d.auth == nil && !loopback(addr) {
		log.Warn("the API is not authenticated and listens beyond loopback: anyone who reaches it "+
			"can change every task", slog.String("addr", addr))
	}
}

// shutdown stops the API, then the manager, each with its deadline.
func (d *daemon) shutdown(srv *http.Server, log *slog.Logger) error {
	apiCtx, cancel := context.WithTimeout(context.Background(), apiShutdownTimeout)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(apiCtx); err != nil {
		errs = append(errs, fmt.Errorf("shut down api: %w", err))
	}
	mCtx, cancel := context.WithTimeout(context.Background(), managerShutdownTimeout)
	defer cancel()
	if err := d.m.Stop(mCtx); err != nil {
		errs = append(errs, fmt.Errorf("stop manager: %w", err))
	}
	log.Info("deputy stopped")
	return errors.Join(errs...)
}

// daemon is what serve wires together.
type daemon struct {
	store     deputy.Store
	storeDesc string
	m         *deputy.Manager
	auth      deputy.Authenticator
	api       http.Handler
}

// newDaemon opens the store and builds the manager and the API.
func newDaemon(ctx context.Context, cfg Config, opts serveOptions, log *slog.Logger,
) (*daemon, error) {
	// Settings that do not go together are refused before anything is
	// created; those of the key services are checked once they exist.
	if err := cfg.managerConfig(log).Validate(); err != nil {
		return nil, usagef("%s", strings.TrimPrefix(err.Error(), "deputy: "))
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if cfg.NodeID == "" {
		id, err := persistentNodeID(cfg.Data)
		if err != nil {
			return nil, err
		}
		cfg.NodeID = id
	}
	keys, err := newKeyServices(cfg, log)
	if err != nil {
		return nil, err
	}
	d := &daemon{auth: keys.auth}
	if d.store, d.storeDesc, err = openStore(ctx, cfg, !opts.noMigrate, log); err != nil {
		return nil, err
	}

	mcfg := cfg.managerConfig(log)
	mcfg.KeyServices, mcfg.Cipher = keys.services, keys.cipher
	if len(mcfg.CredentialHosts) == 0 {
		mcfg.CredentialHosts = keys.hosts
	}
	if d.m, err = deputy.New(d.store, mcfg); err != nil {
		// The store is open, so the manager's configuration is at fault:
		// settings that do not go together, such as node_ttl and
		// heartbeat_interval.
		d.store.Close()
		return nil, usagef("%s", strings.TrimPrefix(err.Error(), "deputy: "))
	}
	runLevel := slog.LevelDebug
	if cfg.Examples {
		runLevel = slog.LevelInfo
	}
	if err := d.m.Register(builtins(runLevel)...); err != nil {
		d.store.Close()
		return nil, err
	}
	d.api = httpapi.New(httpapi.Config{
		Manager:       d.m,
		Authenticator: d.auth,
		AdminRole:     cfg.AdminRole,
		Logger:        log,
	})
	return d, nil
}

// builtins returns the built-in task types, logging each run at level.
func builtins(level slog.Level) []deputy.Definition {
	defs := []deputy.Definition{
		builtin.HTTP(builtin.HTTPConfig{UserAgent: "deputy/" + buildVersion()}),
		builtin.Noop(),
		builtin.Fail(),
		builtin.Sleep(),
	}
	for i := range defs {
		defs[i] = logRuns(defs[i], level)
	}
	return defs
}

// logRuns makes d log the start of every run, and its success, at level;
// the manager logs failures itself, and successes at debug level.
func logRuns(d deputy.Definition, level slog.Level) deputy.Definition {
	run := d.Run
	d.Run = func(ctx context.Context, r *deputy.Run) (deputy.Result, error) {
		log := r.Logger
		if log == nil {
			return run(ctx, r)
		}
		log.Log(ctx, level, "task claimed; running")
		start := time.Now()
		res, err := run(ctx, r)
		if err == nil && level > slog.LevelDebug {
			log.Log(ctx, level, "task run succeeded", slog.Duration("duration", time.Since(start)))
		}
		return res, err
	}
	return d
}

// openStore opens the configured store and describes it for the log.
func openStore(ctx context.Context, cfg Config, migrate bool, log *slog.Logger,
) (deputy.Store, string, error) {
	switch cfg.Store.Driver {
	case "postgres":
		db, err := postgres.Open(ctx, postgres.Config{
			URL:     cfg.Store.URL.Reveal(),
			Logger:  log.With(slog.String("component", "postgres")),
			Migrate: migrate,
		})
		if err != nil {
			return nil, "", fmt.Errorf("open postgres: %w", err)
		}
		return db, "postgres", nil
	default:
		if dir := filepath.Dir(cfg.Store.Path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, "", fmt.Errorf("create sqlite directory: %w", err)
			}
		}
		db, err := sqlite.Open(ctx, sqlite.Config{
			Path:   cfg.Store.Path,
			Logger: log,
		})
		if err != nil {
			return nil, "", fmt.Errorf("open sqlite: %w", err)
		}
		return db, "sqlite:" + cfg.Store.Path, nil
	}
}

// persistentNodeID returns the node id kept in dir/node_id, generating and
// writing one the first time, so that a restarted node keeps its id and can
// release the tasks it owned.
func persistentNodeID(dir string) (string, error) {
	path := filepath.Join(dir, "node_id")
	b, err := os.ReadFile(path)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != "":
		return strings.TrimSpace(string(b)), nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read node id: %w", err)
	}
	id := "deputy-" + uuid.NewString()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	return id, nil
}

// loopback reports whether addr (host:port) only listens on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
