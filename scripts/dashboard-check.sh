#!/bin/sh
# dashboard-check.sh - `make dashboard-check`: the admin dashboard in a real headless browser.
#
# Installs Debian's chromium with apt-get when no Chromium is found (as root; otherwise it asks
# for one), starts the gallery example (in-memory cache, a free port, a small temporary
# database, a random admin token), drives a little traffic with curl and waits until the route
# analytics hold it, then loads /admin/cache/dashboard#token=... in headless Chromium twice:
# once for a screenshot (target/dashboard/dashboard.png, 1400x1800), once to dump the DOM the
# page's script built; then the same for the 1-day window (dashboard-1d.png). Fails unless that DOM carries the page's marker title ("annocache
# dashboard: ok", set after its first successful render; a script error sets "...: error"), a
# route row and a chart. Everything started here is stopped on exit.
#
# Usage: scripts/dashboard-check.sh
# Variables: CHROMIUM (browser binary; default: chromium, chromium-browser or google-chrome on
# PATH), DASHBOARD_OUT (default target/dashboard), GALLERY_SEED_ITEMS (default 2000 here),
# CARGO (default cargo), CARGO_TARGET_DIR.

set -eu
script=dashboard-check.sh
cd "$(dirname "$0")/.."
. scripts/gallery-lib.sh

CARGO=${CARGO:-cargo}
# The gallery runs on its in-memory cache here, whatever the environment says.
unset REDIS_URL REDIS_CLUSTER_URLS
out=${DASHBOARD_OUT:-target/dashboard}

find_chromium() {
    if [ -n "${CHROMIUM:-}" ]; then
        command -v "$CHROMIUM" && return 0
        return 1
    fi
    for c in chromium chromium-browser google-chrome; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

if ! chromium=$(find_chromium); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "no Chromium found: installing Debian's chromium with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
        chromium=$(find_chromium) || { say "chromium still not found after installing it"; exit 1; }
    else
        say "no Chromium found (CHROMIUM=..., or run as root on Debian to install it)"
        exit 1
    fi
fi
if ! command -v curl >/dev/null 2>&1; then
    say "curl is required"
    exit 1
fi

say "building the gallery"
$CARGO build -q -p gallery --bin gallery
dir=$(target_dir debug)

token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
mkfifo "$tmp/out"
ADDR=127.0.0.1:0 GALLERY_DB="$tmp/gallery.sqlite3" GALLERY_SEED_ITEMS=${GALLERY_SEED_ITEMS:-2000} \
    ADMIN_TOKEN=$token RUST_LOG=${RUST_LOG:-warn} \
    "$dir/gallery" >"$tmp/out" &
pids="$pids $!"
# The service prints exactly one line on stdout once it listens: wait for it.
exec 3<"$tmp/out"
if ! IFS= read -r line <&3; then
    say "the gallery exited before listening"
    exit 1
fi
base=${line#listening on }
say "gallery at $base (memory cache)"

# A little traffic: misses, hits, a per-user route, a write (invalidations), an unknown path.
get() {
    code=$(curl -s -o /dev/null -w '%{http_code}' "$@")
    case $code in
    2??) ;;
    *) say "GET $* answered $code"; exit 1 ;;
    esac
}
# Two public items (not every id is public).
ids=$(curl -s "$base/content?limit=2" | grep -o '"id":[0-9]*' | cut -d: -f2 | tr '\n' ' ')
[ -n "$ids" ] || { say "GET /content listed no items"; exit 1; }
for _ in 1 2 3; do
    for id in $ids; do
        get "$base/content/$id"
    done
    get "$base/gallery"
    get "$base/gallery?page=2"
    get "$base/tags"
    get "$base/generation-types"
    get "$base/content?limit=5"
    get -H 'x-user-id: 1' "$base/users/1/gallery"
    get -H 'x-user-id: 1' "$base/users/1/content_items"
done
curl -s -o /dev/null "$base/no-such-route" || true
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d '{"tags":["tags:list"]}' "$base/admin/cache/invalidate")
[ "$code" = 200 ] || { say "POST invalidate answered $code"; exit 1; }

# The writer stores aggregates every 200 ms: wait (bounded, 10 s) until the analytics list the
# routes driven above, so the page has rows to show.
i=0
until curl -s -H "authorization: Bearer $token" "$base/admin/cache/analytics?window=5m" \
    | grep -q '"route":"/gallery"'; do
    i=$((i + 1))
    if [ "$i" -ge 100 ]; then
        say "the analytics never listed /gallery"
        exit 1
    fi
    sleep 0.1
done

url="$base/admin/cache/dashboard#token=$token"
mkdir -p "$out"
rm -f "$out/dashboard.png" "$out/dom.html" "$out/dashboard-1d.png" "$out/dom-1d.html"
# --virtual-time-budget: the page's fetches and rendering finish before the capture.
browse() {
    profile=$1
    shift
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --no-first-run --no-default-browser-check --disable-extensions \
        --user-data-dir="$tmp/$profile" --window-size=1400,1800 --virtual-time-budget=10000 \
        "$@" "$url"
}
say "headless Chromium: $("$chromium" --version 2>/dev/null | sed -n 1p)"
browse profile-shot --screenshot="$out/dashboard.png" 2>"$tmp/chromium-shot.log" || {
    say "chromium --screenshot failed (log: $(cat "$tmp/chromium-shot.log"))"
    exit 1
}
browse profile-dom --dump-dom >"$out/dom.html" 2>"$tmp/chromium-dom.log" || {
    say "chromium --dump-dom failed (log: $(cat "$tmp/chromium-dom.log"))"
    exit 1
}
[ -s "$out/dashboard.png" ] || { say "no screenshot written"; exit 1; }

fail=0
if ! grep -q '<title>annocache dashboard: ok</title>' "$out/dom.html"; then
    say "the page did not report a successful render: $(grep -o '<title>[^<]*</title>' "$out/dom.html" || echo 'no title'); error box: $(grep -o '<p id="error"[^>]*>[^<]*' "$out/dom.html" || true)"
    fail=1
fi
rows=$(grep -o '<tr class="route">' "$out/dom.html" | wc -l | tr -d ' ')
cards=$(grep -o 'class="route-card"' "$out/dom.html" | wc -l | tr -d ' ')
if [ "$rows" -lt 1 ] || [ "$cards" -lt 1 ]; then
    say "expected route rows and charts, found $rows rows and $cards charts"
    fail=1
fi
if grep -q '/gallery<' "$out/dom.html"; then :; else
    say "the route /gallery is not in the table"
    fail=1
fi
[ "$fail" = 0 ] || exit 1

# The day window: 15-minute buckets.
url="$base/admin/cache/dashboard#token=$token&window=1d"
browse profile-day --screenshot="$out/dashboard-1d.png" 2>"$tmp/chromium-day.log" || {
    say "chromium --screenshot (1d) failed (log: $(cat "$tmp/chromium-day.log"))"
    exit 1
}
browse profile-day-dom --dump-dom >"$out/dom-1d.html" 2>>"$tmp/chromium-day.log" || exit 1
if ! grep -q '<title>annocache dashboard: ok</title>' "$out/dom-1d.html" \
    || ! grep -q '(1d, 15 min buckets)' "$out/dom-1d.html"; then
    say "the 1d view did not render (see $out/dom-1d.html)"
    exit 1
fi
say "ok: $rows route rows, $cards route charts (5m and 1d); screenshots $out/dashboard.png and $out/dashboard-1d.png"
