#!/bin/sh
# check-package.sh - package the published crates as crates.io would, and dry-run the publish.
#
# Usage: scripts/check-package.sh
#
# 1. `cargo package` of the published crates together ($PACKAGES). Cargo (1.90 and later)
#    packages a set of workspace crates that depend on each other through a local overlay
#    registry, so cache-axum's `cache-core = "=0.1.0"` resolves to the cache-core just packaged,
#    not to crates.io, where it is not yet. Each package is verified: unpacked and built on its
#    own with its default features, as a user's build would be.
# 2. The file list of every package: README.md, LICENSE-MIT, LICENSE-APACHE, CHANGELOG.md and
#    src/lib.rs present; nothing under tests/, benches/ or examples/, no fixture or data files;
#    each .crate under $MAX_CRATE_KB (default 512 KiB; crates.io takes up to 10 MB).
# 3. `cargo publish --dry-run --no-verify` of the same set: the crates.io index is read (the
#    dependencies must exist there), nothing is uploaded; --no-verify because step 1 built them.
#    PUBLISH_DRY_RUN=0 skips it (a machine without access to the crates.io index).
#
# --allow-dirty: the check is about what the packages hold, so it runs on a work tree with
# uncommitted changes too (the work tree is what gets packaged).
#
# Prints the file count and the size of every .crate, and the time each step took.

set -eu

cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
PACKAGES=${PACKAGES:-"cache-macros cache-core cache-axum cache-actix cache-testing"}
MAX_CRATE_KB=${MAX_CRATE_KB:-512}
PUBLISH_DRY_RUN=${PUBLISH_DRY_RUN:-1}

pkg_args=
for p in $PACKAGES; do pkg_args="$pkg_args -p $p"; done

target_dir=$($CARGO metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
version=$($CARGO metadata --no-deps --format-version 1 |
    sed -n 's/.*"name":"cache-core","version":"\([^"]*\)".*/\1/p')
if [ -z "$target_dir" ] || [ -z "$version" ]; then
    echo "check-package: cannot read the target directory or the version from cargo metadata" >&2
    exit 1
fi

start=$(date +%s)
echo "==> $CARGO package --allow-dirty$pkg_args"
# shellcheck disable=SC2086 # one word per package argument
$CARGO package --allow-dirty $pkg_args
packaged=$(date +%s)

status=0
echo "==> package contents"
for p in $PACKAGES; do
    # shellcheck disable=SC2086
    list=$($CARGO package --allow-dirty --list -p "$p" 2>/dev/null)
    for f in README.md LICENSE-MIT LICENSE-APACHE CHANGELOG.md Cargo.toml src/lib.rs; do
        if ! printf '%s\n' "$list" | grep -qx "$f"; then
            echo "check-package: $p does not ship $f" >&2
            status=1
        fi
    done
    unwanted=$(printf '%s\n' "$list" |
        grep -E '^(tests|benches|examples|fixtures|target)/|\.(sqlite|db|rdb|aof|png|jpg|pem|key|crate)$' ||
        true)
    if [ -n "$unwanted" ]; then
        echo "check-package: $p ships files it should not:" >&2
        printf '  %s\n' $unwanted >&2
        status=1
    fi
    crate=$target_dir/package/$p-$version.crate
    if [ ! -f "$crate" ]; then
        echo "check-package: $crate was not written" >&2
        status=1
        continue
    fi
    kb=$(( ($(wc -c <"$crate") + 1023) / 1024 ))
    files=$(printf '%s\n' "$list" | wc -l)
    printf '  %-14s %4d files  %5d KiB  %s\n' "$p" "$files" "$kb" "$crate"
    if [ "$kb" -gt "$MAX_CRATE_KB" ]; then
        echo "check-package: $p is $kb KiB, over $MAX_CRATE_KB KiB" >&2
        status=1
    fi
done
[ "$status" = 0 ] || exit "$status"

if [ "$PUBLISH_DRY_RUN" = 0 ]; then
    echo "==> cargo publish --dry-run skipped (PUBLISH_DRY_RUN=0)"
else
    echo "==> $CARGO publish --dry-run --no-verify --allow-dirty$pkg_args"
    # shellcheck disable=SC2086
    $CARGO publish --dry-run --no-verify --allow-dirty $pkg_args
fi
end=$(date +%s)
echo "==> check-package: packaged and verified in $((packaged - start)) s, total $((end - start)) s"
