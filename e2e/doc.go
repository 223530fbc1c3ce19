// Package e2e holds deputy's multi-node tests: they run three real
// `deputy serve` processes against one PostgreSQL database and check that
// every task runs exactly once, across nodes, when a node is killed with
// SIGKILL, when PostgreSQL restarts, and when it stays down for longer than
// the node TTL.
//
// The package has no code of its own; everything is in its tests. They need
// a PostgreSQL server: set TEST_DATABASE_URL (eval "$(scripts/pg-start.sh)"
// starts a throwaway one). Without it they skip, except when CI is set,
// where they fail. Each scenario creates its own database on that server.
// The restart scenarios start a private cluster with scripts/pg-start.sh,
// so that restarting it disturbs no other test; they need the PostgreSQL 15
// binaries (PG_BIN, by default /usr/lib/postgresql/15/bin).
//
// Every task is an "http" task whose runs POST to a counter server in the
// test. The counter reads the task's row while the run waits for the answer,
// so each run is recorded with the claim it ran under: the node that owned
// it, the occurrence it was due at, and its attempt number.
//
// The nodes log at info level to a file each, kept when a test fails; set
// E2E_LOG_LEVEL=debug to see every run and write.
//
// go test hides the output of passing packages when given a package list
// (go test ./...); run go test -v ./e2e to see the figures each scenario
// checked.
package e2e
