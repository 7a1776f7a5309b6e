#!/bin/sh
# check-features.sh - compile a crate under each feature set, warnings denied.
#
# Usage: scripts/check-features.sh [PACKAGE]        (default: cache-core)
#
# Checks the library of PACKAGE with:
#   --no-default-features
#   --no-default-features --features F     for every feature F (except
#                                          `default`) in PACKAGE's Cargo.toml
#   --all-features
# Feature names are read from the [features] table of PACKAGE/Cargo.toml, so
# new features are picked up automatically. Warnings are errors for PACKAGE
# only (`cargo rustc --profile check -- -D warnings`), which catches e.g.
# imports unused when a feature is off without rebuilding dependencies.

set -eu

pkg=${1:-cache-core}
cd "$(dirname "$0")/.."
manifest=$pkg/Cargo.toml
if [ ! -f "$manifest" ]; then
    echo "check-features: $manifest not found" >&2
    exit 1
fi

# Keys of the [features] table, one per line, without `default`.
features=$(awk '
    /^[[:space:]]*\[/ { in_features = ($0 ~ /^[[:space:]]*\[features\][[:space:]]*$/); next }
    in_features && /^[[:space:]]*[A-Za-z0-9_-]+[[:space:]]*=/ {
        name = $0
        sub(/^[[:space:]]*/, "", name)
        sub(/[[:space:]]*=.*/, "", name)
        if (name != "default") print name
    }
' "$manifest")

check() {
    echo "==> cargo check -p $pkg $*" >&2
    ${CARGO:-cargo} rustc -p "$pkg" --lib --profile check "$@" -- -D warnings
}

check --no-default-features
for f in $features; do
    check --no-default-features --features "$f"
done
check --all-features
echo "check-features: $pkg OK (features: none," $features", all)" >&2
