# gallery-lib.sh - shared by scripts/demo.sh and scripts/load.sh (sourced, not run).
#
# start_redis: starts a throw-away redis-server (no persistence) on $REDIS_PORT or on a free
#   random port, in its own temporary directory; sets $redis_pid and $redis_url.
# cleanup: stops every process these scripts started (by pid) and removes the temp directory;
#   installed as the EXIT/INT/TERM trap.

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gallery-script.XXXXXX")
redis_pid=""
pids=""

say() { printf '%s: %s\n' "$script" "$*" >&2; }

cleanup() {
    for p in $pids $redis_pid; do
        kill "$p" 2>/dev/null || true
    done
    for p in $pids $redis_pid; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

random_port() {
    n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    echo $((20000 + n % 20000))
}

start_redis() {
    bin=$(sh scripts/ensure-redis.sh --binary)
    attempt=0
    while [ "$attempt" -lt 5 ]; do
        attempt=$((attempt + 1))
        port=${REDIS_PORT:-$(random_port)}
        "$bin" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$tmp" --logfile "$tmp/redis.log" &
        redis_pid=$!
        # redis-server has no readiness signal on stdout: probe it (bounded, 10 s).
        i=0
        while [ "$i" -lt 100 ]; do
            if ! kill -0 "$redis_pid" 2>/dev/null; then
                break # exited: port taken
            fi
            if redis-cli -p "$port" ping >/dev/null 2>&1; then
                redis_url=redis://127.0.0.1:$port
                say "redis-server (pid $redis_pid) on $redis_url"
                return 0
            fi
            sleep 0.1
            i=$((i + 1))
        done
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=""
        if [ -n "${REDIS_PORT:-}" ]; then
            break
        fi
    done
    say "could not start redis-server (see $tmp/redis.log)"
    exit 1
}

# target_dir PROFILE: where cargo puts the binaries.
target_dir() {
    echo "${CARGO_TARGET_DIR:-target}/$1"
}
