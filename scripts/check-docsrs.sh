#!/bin/sh
# check-docsrs.sh - build the published crates' docs as docs.rs does, and check the feature badges.
#
# Usage: scripts/check-docsrs.sh
#
# docs.rs documents each crate with the `[package.metadata.docs.rs]` of its manifest: all
# features, `--cfg docsrs`, on nightly. Under `docsrs` every library enables
# `#![feature(doc_cfg)]`, which labels each feature-gated item ("Available on crate feature
# `metrics` only."). The feature is nightly-only, so this build on stable runs rustdoc with
# RUSTC_BOOTSTRAP=1 (scripts/rustdoc-bootstrap.sh as RUSTDOC): rustdoc only, not the whole
# `cargo doc`, whose build scripts would see it (see that script). Warnings are errors, as in
# `make doc`.
#
# It shares the usual target directory: after `make doc` only the five crates are documented
# again (their pages in target/doc are then the docs.rs flavor).
#
# Then it checks that the generated HTML carries the badge on known gated items of each kind
# (module, type, enum variant, function, re-export), so the badges cannot vanish unnoticed.

set -eu

cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
PACKAGES=${PACKAGES:-"cache-macros cache-core cache-axum cache-actix cache-testing"}

pkg_args=
for p in $PACKAGES; do pkg_args="$pkg_args -p $p"; done

target_dir=$($CARGO metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')

start=$(date +%s)
echo "==> RUSTDOC=scripts/rustdoc-bootstrap.sh RUSTDOCFLAGS=\"-D warnings --cfg docsrs\" $CARGO doc --all-features --no-deps$pkg_args"
# shellcheck disable=SC2086 # one word per package argument
RUSTDOC="$PWD/scripts/rustdoc-bootstrap.sh" RUSTDOCFLAGS="-D warnings --cfg docsrs" \
    $CARGO doc --all-features --no-deps $pkg_args
end=$(date +%s)

# page (under doc/) and the feature its badge must name.
status=0
for check in \
    cache_core/metrics/index.html:metrics \
    cache_core/http/index.html:http \
    cache_core/analytics/index.html:analytics \
    cache_core/cli/index.html:cli \
    cache_core/attr.cached.html:macros \
    cache_core/codec/enum.Codec.html:msgpack \
    cache_core/codec/enum.Codec.html:compact \
    cache_core/config/struct.CacheBuilder.html:analytics \
    cache_axum/analytics/index.html:analytics \
    cache_axum/analytics/struct.AnalyticsLayer.html:analytics \
    cache_axum/analytics/fn.warm_from_analytics.html:analytics \
    cache_actix/analytics/index.html:analytics \
    cache_actix/analytics/struct.AnalyticsLayer.html:analytics; do
    page=$target_dir/doc/${check%%:*}
    feature=${check##*:}
    if [ ! -f "$page" ]; then
        echo "check-docsrs: $page missing" >&2
        status=1
    elif ! sed 's/<[^>]*>//g' "$page" | grep -q "Available on crate feature $feature only"; then
        echo "check-docsrs: no \"Available on crate feature $feature only\" badge in $page" >&2
        status=1
    fi
done
# Re-exports and module lists carry the badge as a title on the crate's front page.
for check in cache_core:macros cache_core:metrics cache_axum:analytics cache_actix:analytics; do
    page=$target_dir/doc/${check%%:*}/index.html
    feature=${check##*:}
    if ! grep -q "title=\"Available on crate feature \`$feature\` only\"" "$page"; then
        echo "check-docsrs: no $feature badge on the list of $page" >&2
        status=1
    fi
done
[ "$status" = 0 ] || exit "$status"
echo "==> check-docsrs: docs built in $((end - start)) s; feature badges present"
