#!/bin/sh
# demo.sh - the gallery demo (`make demo`): a throw-away redis-server, the gallery service on it,
# and the asserted demo walk (gallery-demo), which stops that Redis near the end to show the
# service answering without it. Everything started here is stopped on exit.
#
# Usage: scripts/demo.sh
# Variables: REDIS_PORT (default: a free random port), GALLERY_DB (default: a temp file, seeded
# with GALLERY_SEED_ITEMS items, default 50000), DEMO_FRESH (rounds of the freshness check,
# default 10), CARGO (default cargo), CARGO_TARGET_DIR.

set -eu
script=demo.sh
cd "$(dirname "$0")/.."
. scripts/gallery-lib.sh

CARGO=${CARGO:-cargo}
say "building the gallery binaries"
$CARGO build -q -p gallery --bins
dir=$(target_dir debug)

start_redis

db=${GALLERY_DB:-$tmp/gallery.sqlite3}
mkfifo "$tmp/out"
REDIS_URL=$redis_url ADDR=127.0.0.1:0 GALLERY_DB=$db RUST_LOG=${RUST_LOG:-warn} \
    "$dir/gallery" >"$tmp/out" &
pids="$pids $!"
# The service prints exactly one line on stdout once it listens: wait for it.
exec 3<"$tmp/out"
if ! IFS= read -r line <&3; then
    say "the gallery exited before listening"
    exit 1
fi
base=${line#listening on }
say "gallery at $base (database $db)"

"$dir/gallery-demo" "$base" --stop-redis "$redis_url" --fresh "${DEMO_FRESH:-10}"
