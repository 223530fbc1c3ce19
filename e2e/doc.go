// Package e2e holds deputy's multi-node tests: they run three real
// `deputy serve` processes against one PostgreSQL database and check that
// every task runs exactly once, across nodes, when a node is killed with
// SIGKILL, and when PostgreSQL restarts.
//
// The package has no code of its own; everything is in its tests. They need
// a PostgreSQL server: set TEST_DATABASE_URL (eval "$(scripts/pg-start.sh)"
// starts a throwaway one). Without it they skip, except when CI is set,
// where they fail. Each scenario creates its own database on that server.
// The restart scenario starts a private cluster with scripts/pg-start.sh,
// so that restarting it disturbs no other test; it needs the PostgreSQL 15
// binaries (PG_BIN, by default /usr/lib/postgresql/15/bin).
//
// Every task is an "http" task whose runs POST to a counter server in the
// test. The counter reads the task's row while the run waits for the answer,
// so each run is recorded with the claim it ran under: the node that owned
// it, the occurrence it was due at, and its attempt number.
//
// go test hides the output of passing packages when given a package list
// (go test ./...); run go test -v ./e2e to see the figures each scenario
// checked.
package e2e
