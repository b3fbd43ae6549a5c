#!/usr/bin/env bash
# ci_services_stop.sh - stop the PostgreSQL and Redis started by ci_services.sh.
# Safe to run when nothing is running. `--purge` also deletes the state dir.
# Uses the same CI_SERVICES_DIR / PG_PORT / REDIS_PORT variables.
set -uo pipefail

DIR=${CI_SERVICES_DIR:-/tmp/flujo-services}
REDIS_PORT=${REDIS_PORT:-56379}
PGDATA_DIR="$DIR/pg/data"
REDIS_PID="$DIR/redis/redis.pid"
log() { echo "[ci_services_stop] $*" >&2; }
pid_alive() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi

# PostgreSQL: pg_ctl's own fast shutdown (rolls back open transactions, waits)
if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    pid=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
    if pid_alive "$pid" && grep -qa postgres "/proc/$pid/cmdline" 2>/dev/null; then
        log "stopping PostgreSQL (pid $pid)"
        if [ -n "$PGBIN" ]; then
            as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >&2 \
                || { log "pg_ctl stop failed; SIGQUIT to postmaster $pid"; kill -QUIT "$pid" 2>/dev/null; }
        else
            kill -INT "$pid"   # SIGINT = fast shutdown
            for _ in $(seq 300); do pid_alive "$pid" || break; sleep 0.1; done
        fi
    else
        log "PostgreSQL: stale postmaster.pid (pid $pid not running), removing it"
        rm -f "$PGDATA_DIR/postmaster.pid"
    fi
else
    log "PostgreSQL: not running"
fi

# Redis: SHUTDOWN NOSAVE over the port; wait for the pid (from the pid file) to exit
rpid=""
[ -f "$REDIS_PID" ] && rpid=$(cat "$REDIS_PID")
if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then
    log "stopping Redis on port $REDIS_PORT${rpid:+ (pid $rpid)}"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
else
    log "Redis: not answering on port $REDIS_PORT"
fi
if [ -n "$rpid" ]; then
    for _ in $(seq 50); do pid_alive "$rpid" || break; sleep 0.1; done
    if pid_alive "$rpid" && grep -qa redis-server "/proc/$rpid/cmdline" 2>/dev/null; then
        log "redis $rpid still alive; SIGTERM"; kill -TERM "$rpid"
    fi
    rm -f "$REDIS_PID"
fi

if [ "${1:-}" = "--purge" ] && [ -d "$DIR" ]; then
    if [ -f "$DIR/.ci-services" ]; then
        log "removing $DIR"
        rm -rf "$DIR"
    else
        log "not removing $DIR: no .ci-services marker (not made by ci_services.sh)"
    fi
fi
exit 0
