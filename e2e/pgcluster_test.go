package e2e

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// pgCluster is a private PostgreSQL cluster, started by
// scripts/pg-start.sh, that a test may restart without disturbing others.
type pgCluster struct {
	url     string
	dataDir string
	bin     string
}

// exportRE matches the lines scripts/pg-start.sh prints.
var exportRE = regexp.MustCompile(`(?m)^export ([A-Z_]+)='([^']*)'$`)

// startPGCluster starts a cluster on a free port, stopped and deleted when
// tb ends. Without the PostgreSQL binaries it skips, except in CI.
func startPGCluster(tb testing.TB) *pgCluster {
	tb.Helper()
	p := &pgCluster{bin: cmp.Or(os.Getenv("PG_BIN"), "/usr/lib/postgresql/15/bin")}
	if _, err := os.Stat(filepath.Join(p.bin, "initdb")); err != nil {
		require(tb, fmt.Sprintf("no PostgreSQL binaries in %s (set PG_BIN)", p.bin))
	}
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("../scripts/pg-start.sh")
	cmd.Env = append(os.Environ(), "PG_PORT="+port)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("scripts/pg-start.sh: %v", err)
	}
	for _, m := range exportRE.FindAllStringSubmatch(string(out), -1) {
		switch m[1] {
		case "TEST_DATABASE_URL":
			p.url = m[2]
		case "PGDATA_DIR":
			p.dataDir = m[2]
		}
	}
	if p.url == "" || p.dataDir == "" {
		tb.Fatalf("scripts/pg-start.sh printed no URL or data directory:\n%s", out)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := p.pgctl(ctx, "-m", "immediate", "stop").CombinedOutput(); err != nil {
			tb.Errorf("stop the private cluster: %v\n%s", err, out)
			return
		}
		os.RemoveAll(filepath.Dir(p.dataDir))
	})
	return p
}

// restart restarts the cluster with a fast shutdown, which disconnects
// every session, and returns once it accepts connections again.
func (p *pgCluster) restart(ctx context.Context) error {
	return p.run(ctx, "-m", "fast", "-l", p.logFile(), "restart")
}

// stop stops the cluster with a fast shutdown.
func (p *pgCluster) stop(ctx context.Context) error {
	return p.run(ctx, "-m", "fast", "stop")
}

// start starts the cluster and returns once it accepts connections.
func (p *pgCluster) start(ctx context.Context) error {
	return p.run(ctx, "-l", p.logFile(), "start")
}

// logFile is the server log, next to the data directory as
// scripts/pg-start.sh has it.
func (p *pgCluster) logFile() string { return filepath.Join(filepath.Dir(p.dataDir), "log") }

// run runs pg_ctl with args.
func (p *pgCluster) run(ctx context.Context, args ...string) error {
	if out, err := p.pgctl(ctx, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %s: %w\n%s", args[len(args)-1], err, out)
	}
	return nil
}

// pgctl returns a pg_ctl command on the cluster, run as the postgres user
// when the tests run as root (PostgreSQL refuses to run as root).
func (p *pgCluster) pgctl(ctx context.Context, args ...string) *exec.Cmd {
	args = append([]string{"-D", p.dataDir, "-w"}, args...)
	pgctl := filepath.Join(p.bin, "pg_ctl")
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", pgctl},
			args...)...)
	}
	return exec.CommandContext(ctx, pgctl, args...)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}
