#!/bin/sh
# cache-admin.sh - inspect or flush a cache in Redis (`make cache-stats/flush`).
#
# Usage:
#   scripts/cache-admin.sh stats                   server stats (+ key count of
#                                                  $NAMESPACE if set)
#   NAMESPACE=ns scripts/cache-admin.sh flush      delete every key `ns:*`
#   NAMESPACE=ns DRY_RUN=1 scripts/cache-admin.sh flush   only count them
#
# Server: $REDIS_URL, default redis://127.0.0.1:${REDIS_PORT:-6379}.
# Needs redis-cli (Debian: redis-tools, installed with redis-server).
#
# Keys are enumerated with SCAN (`redis-cli --scan`), never KEYS, into a
# temporary file, then deleted with UNLINK in batches of 500
# (`xargs -r redis-cli UNLINK`), so a large namespace does not block the
# server. Keys containing newlines are not supported.

set -eu

url=${REDIS_URL:-redis://127.0.0.1:${REDIS_PORT:-6379}}
batch=500

say() { printf 'cache-admin: %s\n' "$*" >&2; }

if ! command -v redis-cli >/dev/null 2>&1; then
    say "redis-cli not found (Debian: apt-get install redis-tools; macOS: brew install redis)"
    exit 1
fi

cli() { redis-cli --no-auth-warning -u "$url" "$@"; }

# Prints the `field:value` lines of an INFO section for the given fields.
info_fields() {
    section=$1
    shift
    cli INFO "$section" | tr -d '\r' | awk -v want="$*" '
        BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) keep[w[i]] = 1 }
        { split($0, kv, ":"); if (kv[1] in keep) printf "  %-28s %s\n", kv[1], substr($0, length(kv[1]) + 2) }
    '
}

check_server() {
    if ! out=$(cli PING 2>&1) || [ "$out" != PONG ]; then
        say "cannot reach Redis at $url: $out"
        say "start one with \`make redis-up\` or set REDIS_URL"
        exit 1
    fi
}

check_namespace() {
    if [ -z "${NAMESPACE:-}" ]; then
        say "NAMESPACE is required, e.g. make cache-flush NAMESPACE=myapp"
        exit 2
    fi
    case "$NAMESPACE" in
        *'*'* | *'?'* | *'['* | *']'* | *'\'*)
            say "NAMESPACE must not contain glob characters (* ? [ ] \\): $NAMESPACE"
            exit 2
            ;;
    esac
}

# Writes the keys matching NAMESPACE:* to file $1 (one per line); fails if
# the scan fails. Uses larger SCAN batches where redis-cli supports --count
# (7.2+).
scan_namespace() {
    count=
    if redis-cli --help 2>&1 | grep -q -- '--count'; then
        count="--count 1000"
    fi
    # shellcheck disable=SC2086 # $count is intentionally split
    if ! cli --scan --pattern "$NAMESPACE:*" $count > "$1"; then
        say "SCAN of $NAMESPACE:* on $url failed"
        exit 1
    fi
}

keys_file=
cleanup() { [ -z "$keys_file" ] || rm -f "$keys_file"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
new_keys_file() { keys_file=$(mktemp "${TMPDIR:-/tmp}/cache-admin.XXXXXX"); }

stats() {
    check_server
    echo "Redis at $url"
    echo "stats:"
    info_fields stats keyspace_hits keyspace_misses expired_keys evicted_keys \
        total_commands_processed instantaneous_ops_per_sec total_connections_received \
        rejected_connections
    cli INFO stats | tr -d '\r' | awk -F: '
        $1 == "keyspace_hits" { h = $2 } $1 == "keyspace_misses" { m = $2 }
        END { if (h + m > 0) printf "  %-28s %.2f%%\n", "hit_ratio", 100 * h / (h + m);
              else printf "  %-28s n/a\n", "hit_ratio" }
    '
    echo "memory:"
    info_fields memory used_memory_human used_memory_peak_human maxmemory_human \
        maxmemory_policy mem_fragmentation_ratio
    echo "keys:"
    printf '  %-28s %s\n' dbsize "$(cli DBSIZE | tr -d '\r')"
    info_fields keyspace db0 db1 db2 db3 db4 db5 db6 db7 db8 db9 db10 db11 db12 db13 db14 db15
    if [ -n "${NAMESPACE:-}" ]; then
        check_namespace
        new_keys_file
        scan_namespace "$keys_file"
        printf '  %-28s %s\n' "keys in $NAMESPACE:*" "$(wc -l < "$keys_file" | tr -d ' ')"
    fi
}

flush() {
    check_namespace
    check_server
    new_keys_file
    scan_namespace "$keys_file"
    if [ "${DRY_RUN:-0}" = 1 ]; then
        n=$(wc -l < "$keys_file" | tr -d ' ')
        echo "dry run: $n keys match $NAMESPACE:* on $url (nothing deleted)"
        return 0
    fi
    # NUL-separate so that keys with spaces or quotes survive xargs.
    deleted=$(tr '\n' '\000' < "$keys_file" |
        xargs -0 -r -n "$batch" redis-cli --no-auth-warning -u "$url" UNLINK |
        awk '{ s += $NF } END { print s + 0 }')
    echo "deleted $deleted keys matching $NAMESPACE:* on $url"
}

case "${1:-}" in
    stats) stats ;;
    flush) flush ;;
    *) echo "usage: $0 stats|flush" >&2; exit 2 ;;
esac
