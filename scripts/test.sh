#!/usr/bin/env bash
# Runs deputy's tests. Without TEST_DATABASE_URL it starts a throwaway
# PostgreSQL 15 cluster (scripts/pg-start.sh) so that the PostgreSQL store and
# the multi-node tests run too, and stops it afterwards.
#
#   scripts/test.sh                 # everything, with the race detector
#   scripts/test.sh ./sqlite/...    # some packages
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TEST_DATABASE_URL:-}" ] && [ -x "${PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ]; then
	env=$(scripts/pg-start.sh)
	eval "$env"
	trap 'eval "$PGSTOP" >/dev/null 2>&1 || true' EXIT
	export TEST_DATABASE_URL PGSTOP PGDATA_DIR
	echo "test.sh: started a throwaway PostgreSQL at $TEST_DATABASE_URL" >&2
fi

if [ $# -gt 0 ]; then
	go test -race -timeout 40m "$@"
	exit 0
fi

# Everything but the multi-node tests, then those verbosely, so that the
# counts they check (tasks run, duplicates, failover times) show in the log.
# They run deputy binaries they build themselves, which go test's cache does
# not know of: -count=1 runs them afresh.
go test -race -timeout 40m $(go list ./... | grep -v '/e2e$')
go test -race -timeout 20m -count=1 -v ./e2e
