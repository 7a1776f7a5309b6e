#!/bin/sh
# rustdoc-bootstrap.sh - rustdoc with RUSTC_BOOTSTRAP=1, the RUSTDOC of scripts/check-docsrs.sh.
#
# The docs.rs build needs the nightly `doc_cfg` feature, which stable accepts under
# RUSTC_BOOTSTRAP=1. Given to rustdoc only: set for the whole `cargo doc`, it would also reach
# the build scripts that watch it (proc-macro2's `rerun-if-env-changed=RUSTC_BOOTSTRAP`), and the
# next build without it would rebuild every crate that depends on them.
RUSTC_BOOTSTRAP=1
export RUSTC_BOOTSTRAP
exec "${DOCSRS_RUSTDOC:-rustdoc}" "$@"
