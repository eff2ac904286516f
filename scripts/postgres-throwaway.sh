#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the test suite and prints its URL on stdout.
#
#   eval "$(scripts/postgres-throwaway.sh start)"   # exports SY_TEST_POSTGRES_URL and SY_PG_DIR
#   scripts/postgres-throwaway.sh stop "$SY_PG_DIR"
#
# Installs Debian's `postgresql` package when no server binaries are found. The server listens on 127.0.0.1 on a
# free port, trusts local connections, keeps its data in a temporary directory, and is stopped by `stop`.
set -euo pipefail

find_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    return 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

start() {
    local bindir
    if ! bindir=$(find_bindir); then
        echo "installing postgresql (Debian package) ..." >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        bindir=$(find_bindir)
    fi
    local dir port
    dir=$(mktemp -d /tmp/switchyard-pg.XXXXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # initdb refuses to run as root: run the server as the postgres user when we are root.
    local run=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
        chown postgres "$dir"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "export SY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
    echo "export SY_PG_DIR=$dir"
    echo "export SY_PG_BINDIR=$bindir"
}

stop() {
    local dir=$1 bindir
    bindir=$(find_bindir) || exit 0
    local run=()
    [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:?usage: $0 stop DIR}" ;;
    *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
