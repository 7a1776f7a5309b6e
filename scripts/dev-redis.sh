#!/bin/sh
# dev-redis.sh - a local redis-server for development (`make redis-up/down`).
#
# Usage: scripts/dev-redis.sh up|down|status
#
# `up` starts redis-server daemonized on 127.0.0.1:${REDIS_PORT:-6379} without
# persistence; its pidfile and log live in .redis/ (gitignored) at the repo
# root. It prints the REDIS_URL to export. `down` stops it (SIGTERM, then
# SIGKILL after 5 s). A server is only ever stopped through our pidfile, never
# by name or port.

set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
port=${REDIS_PORT:-6379}
dir=$root/.redis
pidfile=$dir/redis-$port.pid
logfile=$dir/redis-$port.log
url=redis://127.0.0.1:$port

say() { printf 'dev-redis: %s\n' "$*" >&2; }

# Short sleep; falls back to 1 s where fractional sleep is unsupported.
nap() { sleep 0.1 2>/dev/null || sleep 1; }

# The pid in our pidfile if that process is alive, else nothing.
running_pid() {
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

need_cli() {
    if ! command -v redis-cli >/dev/null 2>&1; then
        say "redis-cli not found (Debian: apt-get install redis-tools)"
        exit 1
    fi
}

up() {
    if pid=$(running_pid); then
        say "already running (pid $pid)"
        echo "export REDIS_URL=$url"
        return 0
    fi
    need_cli
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
        say "port $port is already served by another Redis; use REDIS_PORT=NNNN make redis-up"
        exit 1
    fi
    bin=$(scripts/ensure-redis.sh --binary)
    mkdir -p "$dir"
    rm -f "$pidfile"
    "$bin" --port "$port" --bind 127.0.0.1 --protected-mode no \
        --save "" --appendonly no \
        --daemonize yes --pidfile "$pidfile" --logfile "$logfile" --dir "$dir"
    i=0
    while [ "$i" -lt 100 ]; do
        if pid=$(running_pid); then
            # Make sure the server answering is ours.
            served=$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' |
                sed -n 's/^process_id://p')
            if [ "$served" = "$pid" ]; then
                say "redis-server pid $pid on 127.0.0.1:$port (log: .redis/redis-$port.log)"
                echo "export REDIS_URL=$url"
                return 0
            fi
        fi
        nap
        i=$((i + 1))
    done
    say "redis-server did not come up on port $port; last log lines:"
    tail -n 20 "$logfile" >&2 2>/dev/null || :
    exit 1
}

down() {
    if ! pid=$(running_pid); then
        say "not running (no live pid in .redis/redis-$port.pid)"
        rm -f "$pidfile"
        return 0
    fi
    kill "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$i" -ge 50 ]; then
            say "pid $pid ignored SIGTERM; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || :
            break
        fi
        nap
        i=$((i + 1))
    done
    rm -f "$pidfile"
    say "stopped redis-server pid $pid (port $port)"
}

status() {
    if pid=$(running_pid); then
        echo "running: pid $pid, $url"
    else
        echo "not running (port $port)"
        return 1
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
