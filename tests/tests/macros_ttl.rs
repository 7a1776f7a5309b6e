#![allow(missing_docs)]
//! The macro crate parses `ttl = "..."` at compile time with its own copy of the duration
//! grammar (a proc-macro crate cannot depend on cache-core). This checks that both copies agree:
//! the TTL stored by a `#[cached]` fn equals `cache_core::parse_duration` of the same string.

use std::sync::Arc;
use std::time::Duration;

use cache_core::__private::{with_request_context, RequestContext};
use cache_core::codec::Envelope;
use cache_core::{cached, parse_duration, Cache, CacheKey};

#[cached(resource = "ttl", ttl = "90s", cache = cache)]
async fn secs(cache: &Cache) -> u32 {
    1
}

#[cached(resource = "ttl", ttl = "1h30m", cache = cache)]
async fn compound(cache: &Cache) -> u32 {
    2
}

#[cached(resource = "ttl", ttl = "2d", cache = cache)]
async fn days(cache: &Cache) -> u32 {
    3
}

#[cached(resource = "ttl", ttl = "3600", cache = cache)]
async fn bare_seconds(cache: &Cache) -> u32 {
    4
}

#[cached(resource = "ttl", ttl = "1m250ms", cache = cache)]
async fn millis(cache: &Cache) -> u32 {
    5
}

async fn stored_ttl<F: std::future::Future<Output = u32>>(cache: &Cache, call: F) -> Duration {
    let ctx = Arc::new(RequestContext::default());
    with_request_context(ctx.clone(), call).await;
    let key = ctx
        .take_outcome()
        .expect("the call records its outcome")
        .key;
    let bytes = cache
        .get_raw(&CacheKey::from_parts_unchecked(key, "ttl"))
        .await
        .expect("stored");
    Envelope::parse(&bytes).unwrap().ttl()
}

#[tokio::test]
async fn macro_ttls_match_the_runtime_parser() {
    // Each fn has its own namespace so that their (argument-less) keys do not collide.
    let fresh = || {
        Cache::builder()
            .namespace(cache_tests::unique_namespace("ttl"))
            .build()
            .unwrap()
    };
    let c = fresh();
    assert_eq!(
        stored_ttl(&c, secs(&c)).await,
        parse_duration("90s").unwrap()
    );
    let c = fresh();
    assert_eq!(
        stored_ttl(&c, compound(&c)).await,
        parse_duration("1h30m").unwrap()
    );
    let c = fresh();
    assert_eq!(
        stored_ttl(&c, days(&c)).await,
        parse_duration("2d").unwrap()
    );
    let c = fresh();
    assert_eq!(
        stored_ttl(&c, bare_seconds(&c)).await,
        parse_duration("3600").unwrap()
    );
    let c = fresh();
    assert_eq!(
        stored_ttl(&c, millis(&c)).await,
        parse_duration("1m250ms").unwrap()
    );
}
