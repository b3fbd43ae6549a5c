#!/usr/bin/env bash
# services.sh - install (if missing) and start PostgreSQL + Redis on loopback
# for tests, without systemd. Idempotent: a second run finds both servers up
# and does nothing (or, with CI_SERVICES_FRESH=1, wipes and restarts them).
#
# stdout: only `export NAME=value` lines, so a CI script can do
#     eval "$(bash ci_services.sh)"
# everything else (progress, timings, errors) goes to stderr.
#
# Tunables (environment):
#   CI_SERVICES_DIR   state dir (data, sockets, logs, pid files) [/tmp/ci-services]
#   PG_PORT           PostgreSQL TCP port on 127.0.0.1           [55432]
#   PG_USER/PG_PASSWORD/PG_DB  role, password, database created  [ci/ci/ci]
#   PG_FAST           1 = fsync/synchronous_commit/full_page_writes off (test speed) [1]
#   REDIS_PORT        Redis TCP port on 127.0.0.1                [56379]
#   CI_SERVICES_FRESH 1 = stop, wipe data, start again           [0]
#   START_TIMEOUT     seconds to wait for each server            [60]
set -euo pipefail

DIR=${CI_SERVICES_DIR:-/tmp/flujo-services}
PG_PORT=${PG_PORT:-55432}
PG_USER=${PG_USER:-ci}
PG_PASSWORD=${PG_PASSWORD:-ci}
PG_DB=${PG_DB:-ci}
PG_FAST=${PG_FAST:-1}
REDIS_PORT=${REDIS_PORT:-56379}
FRESH=${CI_SERVICES_FRESH:-0}
START_TIMEOUT=${START_TIMEOUT:-60}

PGDATA_DIR="$DIR/pg/data"
PG_SOCK="$DIR/pg/sock"
PG_LOG="$DIR/pg/postgres.log"
REDIS_DIR="$DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

log() { echo "[ci_services] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- install
APT_UPDATED=0
apt_install() {
    [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    # keep the packages from starting their default services (postgres 'main'
    # cluster on 5432, redis on 6379): containers usually ship a policy-rc.d
    # that says no; add a temporary one where there is none
    local tmp_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        tmp_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || rc=$?
    [ "$tmp_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || die "apt-get install $* failed ($rc)"
}

pg_bindir() {
    # newest server installed by Debian's postgresql-NN packages
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$d" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

PGBIN=$(pg_bindir)
if [ -z "$PGBIN" ]; then
    # 'postgresql' = Debian's default major; Debian's policy-rc.d in containers
    # stops the package from starting its own 'main' cluster on 5432.
    apt_install postgresql
    PGBIN=$(pg_bindir)
    [ -n "$PGBIN" ] || die "PostgreSQL server binaries not found after install"
fi
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server redis-tools
fi

# ------------------------------------------------------ run as postgres user
# postgres refuses to run as root: as root run its tools as the 'postgres'
# user (created by the Debian package); as a normal user run them directly.
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    PG_OWNER=postgres
    as_pg() { runuser -u postgres -- "$@"; }
else
    PG_OWNER=$(id -un)
    as_pg() { "$@"; }
fi

# alive = exists and is not a zombie (a killed daemon re-parented to an init
# that reaps late still answers kill -0; pg_ctl status would call it running)
pid_alive() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
pg_pid() { [ -f "$PGDATA_DIR/postmaster.pid" ] && head -n 1 "$PGDATA_DIR/postmaster.pid"; }
pg_running() {
    local pid
    pid=$(pg_pid) || return 1
    pid_alive "$pid" && grep -qa postgres "/proc/$pid/cmdline" 2>/dev/null
}
redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

# refuse to wipe or reuse a directory that this script did not create
MARKER="$DIR/.ci-services"
case "$DIR" in /|/tmp|/var|/root|/home|"$HOME") die "CI_SERVICES_DIR=$DIR is too broad";; esac
if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ] && [ ! -f "$MARKER" ]; then
    die "$DIR exists, is not empty and was not made by this script"
fi

if [ "$FRESH" = 1 ] && [ -d "$DIR" ]; then
    log "CI_SERVICES_FRESH=1: stopping and wiping $DIR"
    if pg_running; then as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >&2 || true; fi
    if redis_ping; then redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
    rm -rf "$DIR"
fi

mkdir -p "$DIR" "$DIR/pg" "$PG_SOCK" "$REDIS_DIR"
touch "$MARKER"
chmod 755 "$DIR"
chown "$PG_OWNER" "$DIR/pg" "$PG_SOCK"
chmod 700 "$DIR/pg"
as_pg test -w "$DIR/pg" || die "user $PG_OWNER cannot reach $DIR/pg (a parent dir not traversable?)"

# ---------------------------------------------------------------- PostgreSQL
t0=$(now_ms)
if pg_running; then
    log "PostgreSQL already running (data $PGDATA_DIR, port $PG_PORT): nothing to do"
else
    if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
        rm -rf "$PGDATA_DIR"
        INITDB_NOSYNC=""
        [ "$PG_FAST" = 1 ] && INITDB_NOSYNC="--no-sync"   # throwaway cluster: skip fsync
        pwfile=$(mktemp)
        printf '%s\n' "$PG_PASSWORD" > "$pwfile"
        chown "$PG_OWNER" "$pwfile"
        log "initdb $PGDATA_DIR"
        # superuser = $PG_USER; local socket: trust; TCP: scram-sha-256 password
        as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U "$PG_USER" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 $INITDB_NOSYNC \
            >"$DIR/pg/initdb.log" 2>&1 || { cat "$DIR/pg/initdb.log" >&2; rm -f "$pwfile"; die "initdb failed"; }
        rm -f "$pwfile"
        log "initdb done in $(( $(now_ms) - t0 )) ms"
        {
            echo "listen_addresses = '127.0.0.1'"
            echo "port = $PG_PORT"
            echo "unix_socket_directories = '$PG_SOCK'"
            echo "max_connections = 200"
            if [ "$PG_FAST" = 1 ]; then
                echo "fsync = off"
                echo "synchronous_commit = off"
                echo "full_page_writes = off"
            fi
        } | as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null   # later lines win
    fi
    # stale pid file left by a killed server (pg_running said no): remove it
    if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        log "removing stale postmaster.pid (pid $(pg_pid) not running)"
        rm -f "$PGDATA_DIR/postmaster.pid"
    fi
    # ...and the socket lock file, which names the same dead pid (the socket
    # dir is private to this script, so nothing else can own it)
    rm -f "$PG_SOCK/.s.PGSQL.$PG_PORT.lock" "$PG_SOCK/.s.PGSQL.$PG_PORT"
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$START_TIMEOUT" start >&2 \
        || { tail -n 30 "$PG_LOG" >&2; die "PostgreSQL did not start"; }
fi
# readiness over TCP (what the tests use), then make sure the database exists
deadline=$(( $(date +%s) + START_TIMEOUT ))
until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "PostgreSQL not ready on port $PG_PORT"
    sleep 0.1
done
if ! as_pg "$PGBIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    as_pg "$PGBIN/createdb" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" "$PG_DB" >&2
fi
log "PostgreSQL ready in $(( $(now_ms) - t0 )) ms"

# ---------------------------------------------------------------- Redis
t0=$(now_ms)
if redis_ping; then
    log "Redis already running on 127.0.0.1:$REDIS_PORT: nothing to do"
else
    if [ -f "$REDIS_PID" ]; then
        pid=$(cat "$REDIS_PID")
        if pid_alive "$pid" && grep -qa redis-server "/proc/$pid/cmdline" 2>/dev/null; then
            die "redis-server pid $pid (from $REDIS_PID) is alive but not answering on port $REDIS_PORT"
        fi
        rm -f "$REDIS_PID"
    fi
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    # no persistence: a test cache; protected-mode off is safe, bound to loopback
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" \
        --save '' --appendonly no --protected-mode no >&2
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    until redis_ping; do
        [ "$(date +%s)" -lt "$deadline" ] || { tail -n 30 "$REDIS_LOG" >&2; die "Redis not ready on port $REDIS_PORT"; }
        sleep 0.05
    done
fi
log "Redis ready in $(( $(now_ms) - t0 )) ms"

# ---------------------------------------------------------------- DSNs
PG_DSN="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
cat > "$DIR/env.sh" <<EOF
export PG_DSN='$PG_DSN'
export DATABASE_URL='$PG_DSN'
export REDIS_URL='$REDIS_URL'
export CI_SERVICES_DIR='$DIR'
EOF
cat "$DIR/env.sh"
