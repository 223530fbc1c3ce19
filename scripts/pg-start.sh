#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for tests and prints its URL.
#
#   eval "$(scripts/pg-start.sh)"   # exports TEST_DATABASE_URL and PGSTOP
#
# The cluster lives in a temporary directory, listens on 127.0.0.1 only, and
# trusts local connections. It is for tests: never point it at real data.
set -euo pipefail

bin=${PG_BIN:-/usr/lib/postgresql/15/bin}

# free reports whether nothing listens on a loopback TCP port.
free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port=${PG_PORT:-}
if [ -z "$port" ]; then
	for p in $(seq 55432 55532); do
		if free "$p"; then port=$p; break; fi
	done
fi
if [ -z "$port" ] || ! free "$port"; then
	echo "pg-start.sh: port ${port:-55432-55532} is busy; set PG_PORT to a free one" >&2
	exit 1
fi
dir=$(mktemp -d /tmp/deputy-pg.XXXXXX)
trap 'rm -rf "$dir"' ERR
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
echo "export PGSTOP='runuser -u $owner -- $bin/pg_ctl -D $dir/data -m fast stop; rm -rf $dir'"
echo "export PGDATA_DIR='$dir/data'"
