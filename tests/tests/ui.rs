#![allow(missing_docs)]
//! Compile-time behaviour of `#[cached]` and `#[invalidates]`: what compiles, and where the
//! errors point. Regenerate the `.stderr` files with `TRYBUILD=overwrite` and review each one.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/cached/pass/*.rs");
    t.compile_fail("tests/ui/cached/fail/*.rs");
    t.pass("tests/ui/invalidates/pass/*.rs");
    t.compile_fail("tests/ui/invalidates/fail/*.rs");
}
