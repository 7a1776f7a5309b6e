#!/bin/sh
# load.sh - the gallery load test (`make load`): a throw-away redis-server, then gallery-load
# (release build), which starts a cached gallery on that Redis and an uncached one
# (CACHE_ENABLED=false), replays the same mix against each and prints them side by side.
# Everything started here is stopped on exit.
#
# Usage: scripts/load.sh [gallery-load options: --duration S --warmup S --concurrency N --writes PCT]
# Variables: REDIS_PORT (default: a free random port), GALLERY_DB (default: a temp file),
# GALLERY_SEED_ITEMS (default 50000), LOAD_DURATION, LOAD_WARMUP, LOAD_CONCURRENCY,
# LOAD_WRITE_PERCENT, CARGO, CARGO_TARGET_DIR.
# Exit status: 0 when the targets are met, 2 when they are not, 1 on errors.

set -eu
script=load.sh
cd "$(dirname "$0")/.."
. scripts/gallery-lib.sh

CARGO=${CARGO:-cargo}
say "building the gallery binaries (release)"
$CARGO build -q --release -p gallery --bins
dir=$(target_dir release)

start_redis

GALLERY_DB=${GALLERY_DB:-$tmp/gallery.sqlite3} REDIS_URL=$redis_url \
    "$dir/gallery-load" "$@"
