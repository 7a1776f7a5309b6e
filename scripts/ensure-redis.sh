#!/bin/sh
# ensure-redis.sh - make sure the tests can reach a Redis server.
#
# Usage: scripts/ensure-redis.sh [--binary]
#
# Prints the absolute path of a usable `redis-server` binary on stdout (all
# messages go to stderr), so callers can do
#     REDIS_SERVER_BIN=$(scripts/ensure-redis.sh) && export REDIS_SERVER_BIN
#
# Without --binary it also makes sure `redis-cli` is there: the cluster tests
# create their local Redis Cluster with `redis-cli --cluster create`. The
# cache-testing crate (tests/testing) looks for it the same way: $REDIS_CLI_BIN, next to the
# redis-server binary, on $PATH, then $ENSURE_REDIS_CLI_CANDIDATES (default:
# /usr/bin/redis-cli /usr/local/bin/redis-cli). If it is missing, it installs
# the Debian package `redis-tools` (which holds redis-cli; the package
# `redis-server` depends on it) under the same conditions as below; if that
# is impossible it only warns (the cluster tests then fail with instructions,
# everything else works). Nothing is checked when $REDIS_CLUSTER_URLS names an
# existing cluster (the cluster fault tests still need redis-cli then).
#
# Lookup order (same as the cache-testing crate):
#   1. $REDIS_SERVER_BIN  - if set, it must be executable; nothing is installed
#   2. `redis-server` on $PATH
#   3. $ENSURE_REDIS_CANDIDATES (default: /usr/bin/redis-server /usr/local/bin/redis-server)
#
# If none is found and we run as root with apt-get available, installs the
# Debian packages `redis-server` and `redis-tools` (`apt-get update -qq` once,
# then `apt-get install -y -qq redis-server redis-tools`). The package's own service is neither
# needed nor started on purpose: tests spawn their own processes (policy-rc.d
# blocks the service start when possible). Otherwise exits 1 with
# instructions.
#
# Without --binary, if $REDIS_URL is set, the tests use that server: nothing
# is required locally, a binary is still printed if one exists (fault tests
# need it), and exit status is 0. With --binary, a local binary is mandatory
# (used by `make redis-up`).
#
# Environment (besides REDIS_URL / REDIS_SERVER_BIN / REDIS_CLI_BIN /
# REDIS_CLUSTER_URLS):
#   ENSURE_REDIS_NO_INSTALL=1   never install; behave as if not root.
#   ENSURE_REDIS_CANDIDATES     space-separated fallback paths (may be empty).
#   ENSURE_REDIS_CLI_CANDIDATES the same for redis-cli.
# Both exist to test the "missing" path without uninstalling anything, e.g.
#   PATH=/nonexistent ENSURE_REDIS_CANDIDATES= ENSURE_REDIS_NO_INSTALL=1 \
#       /bin/sh scripts/ensure-redis.sh      # -> exit 1 with instructions
#   REDIS_SERVER_BIN=/nonexistent scripts/ensure-redis.sh   # -> exit 1
#   REDIS_CLI_BIN=/nonexistent scripts/ensure-redis.sh      # -> warning, exit 0
# (With ENSURE_REDIS_NO_INSTALL=1 the missing path uses only shell builtins,
# so an unusable PATH is fine; on merged-/usr systems /bin holds redis-server.)

set -eu

need_binary=0
case "${1:-}" in
    --binary) need_binary=1 ;;
    "") ;;
    *) echo "usage: $0 [--binary]" >&2; exit 2 ;;
esac

candidates=${ENSURE_REDIS_CANDIDATES-/usr/bin/redis-server /usr/local/bin/redis-server}
cli_candidates=${ENSURE_REDIS_CLI_CANDIDATES-/usr/bin/redis-cli /usr/local/bin/redis-cli}

say() { printf 'ensure-redis: %s\n' "$*" >&2; }

# Prints the first usable redis-server, returns 1 if none.
find_redis() {
    if p=$(command -v redis-server 2>/dev/null) && [ -x "$p" ]; then
        case "$p" in
            /*) ;;
            *) p="$(pwd)/$p" ;;
        esac
        printf '%s\n' "$p"
        return 0
    fi
    for p in $candidates; do
        if [ -f "$p" ] && [ -x "$p" ]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# Prints the first usable redis-cli for the redis-server binary $1, returns 1
# if none: next to $1, on PATH, then the candidates.
find_cli() {
    p=${1%/*}/redis-cli
    if [ -f "$p" ] && [ -x "$p" ]; then
        printf '%s\n' "$p"
        return 0
    fi
    if p=$(command -v redis-cli 2>/dev/null) && [ -x "$p" ]; then
        printf '%s\n' "$p"
        return 0
    fi
    for p in $cli_candidates; do
        if [ -f "$p" ] && [ -x "$p" ]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

can_install() {
    [ "${ENSURE_REDIS_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1
}

# apt-get install the Debian packages "$@" (after one `apt-get update`), with
# the packages' services kept from starting; returns apt-get's status.
apt_install() {
    # Keep the package's service from being started: we never use it.
    # Only if no policy exists already (never clobber the host's policy).
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -e "$policy" ] && [ -d /usr/sbin ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || status=$?
    if [ "$status" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "$@" >&2 || status=$?
    fi
    if [ "$added_policy" = 1 ]; then
        rm -f "$policy"
    fi
    return "$status"
}

# Makes sure redis-cli exists for the redis-server binary $1 (see the header);
# never fails.
ensure_cli() {
    [ "$need_binary" = 0 ] || return 0
    if [ -n "${REDIS_CLI_BIN:-}" ]; then
        if [ -f "$REDIS_CLI_BIN" ] && [ -x "$REDIS_CLI_BIN" ]; then
            return 0
        fi
        say "warning: REDIS_CLI_BIN=$REDIS_CLI_BIN is not an executable file; the cluster"
        say "  tests will fail. Point it at a redis-cli binary, or unset it."
        return 0
    fi
    if find_cli "$1" >/dev/null; then
        return 0
    fi
    if [ -n "${REDIS_CLUSTER_URLS:-}" ]; then
        say "no redis-cli; cluster tests use REDIS_CLUSTER_URLS (cluster fault tests need redis-cli)"
        return 0
    fi
    if can_install; then
        say "redis-cli not found; installing the Debian package redis-tools"
        if apt_install redis-tools; then
            cli_candidates="$cli_candidates /usr/bin/redis-cli"
            if cli=$(find_cli "$1"); then
                say "installed $cli"
                return 0
            fi
            say "apt-get installed redis-tools but no redis-cli was found"
        else
            say "apt-get failed"
        fi
    fi
    printf '%s\n' \
        "ensure-redis: warning: redis-cli not found (next to $1, on PATH, or in:" \
        "  ${cli_candidates:-no fallback paths}). The cluster tests need it to create their" \
        "  cluster and will fail. Fix one of:" \
        "    - install it:  sudo apt-get install redis-tools   (Debian/Ubuntu)" \
        "                   brew install redis                 (macOS)" \
        "    - point REDIS_CLI_BIN at a redis-cli binary" \
        "    - set REDIS_CLUSTER_URLS=redis://host:port,... to use an existing cluster" >&2
    return 0
}

# Only builtins (printf): works with an unusable PATH, see above.
how_to_fix() {
    printf '%s\n' \
        "ensure-redis: redis-server is not available (automatic install needs root" \
        "  and apt-get, and ENSURE_REDIS_NO_INSTALL unset)." \
        "  Fix one of:" \
        "    - install Redis:  sudo apt-get install redis-server   (Debian/Ubuntu)" \
        "                      brew install redis                   (macOS)" \
        "                      sudo dnf install redis                (Fedora)" \
        "    - point REDIS_SERVER_BIN at a redis-server binary" \
        "    - set REDIS_URL=redis://host:port to run the tests against an existing" \
        "      server (the fault tests still need a local redis-server binary)" >&2
}

if [ -n "${REDIS_SERVER_BIN:-}" ]; then
    if [ -f "$REDIS_SERVER_BIN" ] && [ -x "$REDIS_SERVER_BIN" ]; then
        ensure_cli "$REDIS_SERVER_BIN"
        printf '%s\n' "$REDIS_SERVER_BIN"
        exit 0
    fi
    say "REDIS_SERVER_BIN=$REDIS_SERVER_BIN is not an executable file."
    say "Point it at a redis-server binary, or unset it to search PATH."
    exit 1
fi

if bin=$(find_redis); then
    say "using $bin ($("$bin" --version 2>/dev/null || :))"
    ensure_cli "$bin"
    printf '%s\n' "$bin"
    exit 0
fi

if [ "$need_binary" = 0 ] && [ -n "${REDIS_URL:-}" ]; then
    say "no redis-server binary; tests will use REDIS_URL=$REDIS_URL (fault tests need a binary)"
    exit 0
fi

if can_install; then
    say "redis-server not found; installing the Debian packages redis-server and redis-tools"
    status=0
    apt_install redis-server redis-tools || status=$?
    if [ "$status" != 0 ]; then
        say "apt-get failed (exit $status)"
        how_to_fix
        exit 1
    fi
    # The package installs /usr/bin/redis-server; look there even if the
    # candidate list was overridden.
    candidates="$candidates /usr/bin/redis-server"
    if bin=$(find_redis); then
        say "installed $bin ($("$bin" --version 2>/dev/null || :))"
        ensure_cli "$bin"
        printf '%s\n' "$bin"
        exit 0
    fi
    say "apt-get installed redis-server but no binary was found"
    exit 1
fi

how_to_fix
exit 1
