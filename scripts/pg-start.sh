#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for tests and prints its URL.
#
#   eval "$(scripts/pg-start.sh)"   # exports TEST_DATABASE_URL and PGSTOP
#
# The cluster lives in a temporary directory, listens on 127.0.0.1 only, and
# trusts local connections. It is for tests: never point it at real data.
set -euo pipefail

bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
port=${PG_PORT:-55432}
dir=$(mktemp -d /tmp/deputy-pg.XXXXXX)
owner=postgres
if ! id "$owner" >/dev/null 2>&1; then
	useradd --system --no-create-home "$owner" >&2
fi
chown "$owner" "$dir"
run() { if [ "$(id -u)" = 0 ]; then runuser -u "$owner" -- "$@"; else "$@"; fi; }

run "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 256MB
CONF
# Tests trade durability for speed; benchmarks set PG_DURABLE=1 to measure
# with PostgreSQL's default durability.
if [ -z "${PG_DURABLE:-}" ]; then
	printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$dir/data/postgresql.conf"
fi
run "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
echo "export TEST_DATABASE_URL='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'"
echo "export PGSTOP='runuser -u $owner -- $bin/pg_ctl -D $dir/data -m fast stop'"
echo "export PGDATA_DIR='$dir/data'"
