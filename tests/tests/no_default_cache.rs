#![allow(missing_docs)]
//! `#[cached]` and `#[invalidates]` without `cache = ...` in a process where no default cache was
//! installed: the bodies run (uncached: every call returns the body's value of that call) and
//! the first call logs one warning, `cache_no_default_cache`. This file never installs a default.

use std::sync::atomic::{AtomicU32, Ordering};

use cache_core::{cached, invalidates};
use cache_tests::LogCapture;

static CALLS: AtomicU32 = AtomicU32::new(0);

#[cached(resource = "item", ttl = "1m")]
async fn item(id: u32) -> u32 {
    id * 1000 + CALLS.fetch_add(1, Ordering::SeqCst)
}

#[invalidates("item:{id}")]
async fn write(id: u32) -> u32 {
    id
}

#[tokio::test]
async fn without_a_default_cache_calls_run_uncached_and_one_warning_says_so() {
    let logs = LogCapture::start();
    // Uncached: each call runs the body and returns that call's value.
    assert_eq!(item(7).await, 7000);
    assert_eq!(item(7).await, 7001);
    assert_eq!(write(7).await, 7);
    assert_eq!(item(7).await, 7002);
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    let warnings = logs.lines_with("cache_no_default_cache");
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    assert!(warnings[0].starts_with("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains("install_default"), "{}", warnings[0]);
}
