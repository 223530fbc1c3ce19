package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// binary is the deputy binary TestMain builds. It is empty when every test
// skips for want of a database.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests builds the binary and runs the tests.
//
// NB: the binary is built without the race detector, even under go test
// -race: three instrumented nodes under this load overwhelm a two-core
// machine, and late runs then skip occurrences. The race detector covers
// the same code in the packages' own tests.
func runTests(m *testing.M) int {
	if os.Getenv("TEST_DATABASE_URL") == "" && os.Getenv("CI") == "" {
		return m.Run() // every test skips: spare the build
	}
	dir, err := os.MkdirTemp("", "deputy-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "deputy")
	build := exec.Command("go", "build", "-o", binary, "github.com/deputyhq/deputy/cmd/deputy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build deputy:", err)
		return 1
	}
	return m.Run()
}

// require skips the test with why, except in CI, where what is missing must
// be there and the test fails.
func require(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s, and CI requires the multi-node tests to run", why)
	}
	tb.Skipf("%s: skipping the multi-node tests", why)
}

// serverURL returns the PostgreSQL server of TEST_DATABASE_URL.
func serverURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		require(tb, "TEST_DATABASE_URL is not set "+
			"(eval \"$(scripts/pg-start.sh)\" starts a throwaway server)")
	}
	return u
}

// newDatabase creates a database on server, dropped when tb ends, and
// returns its URL.
func newDatabase(tb testing.TB, server string) string {
	tb.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "test_" + hex.EncodeToString(b)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		tb.Fatalf("connect to %s: %v", redact(server), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() { dropDatabase(tb, server, name) })

	if !strings.Contains(server, "://") {
		return server + " dbname=" + name // key=value form
	}
	u, err := url.Parse(server)
	if err != nil {
		tb.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// dropDatabase drops a database, closing the connections left to it.
func dropDatabase(tb testing.TB, server, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		tb.Errorf("drop database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		tb.Errorf("drop database %s: %v", name, err)
	}
}

// redact hides the password of a connection URL.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "the server"
}
