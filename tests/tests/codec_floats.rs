#![allow(missing_docs)]
//! Cached `f64` values come back bit for bit: a value read from the cache (a hit, or the value a
//! caller receives by joining another caller's load) is the loader's, with the JSON, MessagePack
//! and compact codecs, on Redis and memory; and an Axum `#[cached]` handler returning `Json<T>`
//! sends the same bytes on a miss and on a hit as the same handler without the macro.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use cache_axum::CacheContextLayer;
use cache_core::{cached, Cache, CacheStatus, Codec};
use common::Ctx;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tower::ServiceExt;

const HOUR: Duration = Duration::from_secs(3600);
/// Bound on every wait for a signal.
const WAIT: Duration = Duration::from_secs(10);

/// Floats that a lossy decimal round trip changes, and the extremes.
fn floats() -> Vec<f64> {
    vec![
        55.398430706246764,
        0.1 + 0.2,
        1e-300,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324, // the smallest subnormal
        -0.0,
        123456789.12345679,
        -2.5e-300,
        1e-7,
        2.0f64.powi(53) + 2.0,
        std::f64::consts::PI,
        1.0 / 3.0,
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    station: String,
    value: f64,
    sum: f64,
    tiny: f64,
    max: f64,
    series: Vec<f64>,
    pair: (f64, f32),
}

fn reading(station: &str) -> Reading {
    Reading {
        station: station.to_owned(),
        value: 55.398430706246764,
        sum: 0.1 + 0.2,
        tiny: 1e-300,
        max: f64::MAX,
        series: floats(),
        pair: (0.7, 0.1f32 + 0.2f32),
    }
}

/// Every float of a reading, as bits.
fn bits(r: &Reading) -> Vec<u64> {
    let mut out = vec![
        r.value.to_bits(),
        r.sum.to_bits(),
        r.tiny.to_bits(),
        r.max.to_bits(),
        r.pair.0.to_bits(),
        u64::from(r.pair.1.to_bits()),
    ];
    out.extend(r.series.iter().map(|f| f.to_bits()));
    out
}

async fn floats_come_back_bit_for_bit(ctx: &Ctx, codec: Codec) {
    let cache = ctx.builder().codec(codec).build().unwrap();
    let key = cache.key("reading").id(format!("{codec:?}")).build();
    let loaded = reading("Ben Nevis");
    let want = bits(&loaded);

    let miss = cache
        .fetch(&key, HOUR, || async { Ok::<_, ()>(loaded.clone()) })
        .await
        .unwrap();
    assert_eq!(miss.status, CacheStatus::Miss);
    assert_eq!(
        bits(&miss.value),
        want,
        "{codec:?}: the loader's value on a miss"
    );

    let hit = cache
        .fetch(&key, HOUR, || async { Err::<Reading, ()>(()) })
        .await
        .unwrap();
    assert_eq!(hit.status, CacheStatus::Hit);
    assert_eq!(
        bits(&hit.value),
        want,
        "{codec:?}: fetch hit {:?}",
        hit.value
    );

    let via_get_or_load: Reading = cache
        .get_or_load(&key, HOUR, || async { unreachable!("a hit") })
        .await;
    assert_eq!(
        bits(&via_get_or_load),
        want,
        "{codec:?}: get_or_load hit {via_get_or_load:?}"
    );
    let via_get = cache.get::<Reading>(&key).await.unwrap();
    assert_eq!(bits(&via_get), want, "{codec:?}: get {via_get:?}");
}

/// A caller that joined another caller's load decodes the leader's encoded value.
async fn a_waiting_caller_gets_the_loaders_bits(ctx: &Ctx, codec: Codec) {
    let cache = ctx.builder().codec(codec).build().unwrap();
    let key = cache.key("reading").id("joined").build();
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let leader = {
        let (cache, key, release, started) =
            (cache.clone(), key.clone(), release.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, HOUR, || async move {
                    started.notify_one();
                    release.notified().await;
                    reading("Scafell Pike")
                })
                .await
        })
    };
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the leader's loader ran");
    let follower = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, HOUR, || async { reading("never loaded") })
                .await
        })
    };
    let deadline = Instant::now() + WAIT;
    while cache.waiting_on(&key) < 1 {
        assert!(Instant::now() < deadline, "the second caller never joined");
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let led = tokio::time::timeout(WAIT, leader).await.unwrap().unwrap();
    let joined = tokio::time::timeout(WAIT, follower).await.unwrap().unwrap();
    let want = bits(&reading("Scafell Pike"));
    assert_eq!(bits(&led), want);
    assert_eq!(
        joined.station, "Scafell Pike",
        "the follower got the leader's value"
    );
    assert_eq!(bits(&joined), want, "{codec:?}: joined {joined:?}");
}

async fn json_codec_returns_the_loaders_f64_bits_on_a_hit(ctx: Ctx) {
    floats_come_back_bit_for_bit(&ctx, Codec::Json).await;
}

async fn messagepack_codec_returns_the_loaders_f64_bits_on_a_hit(ctx: Ctx) {
    floats_come_back_bit_for_bit(&ctx, Codec::MessagePack).await;
}

async fn compact_codec_returns_the_loaders_f64_bits_on_a_hit(ctx: Ctx) {
    floats_come_back_bit_for_bit(&ctx, Codec::Compact).await;
}

async fn json_codec_hands_a_waiting_caller_the_loaders_f64_bits(ctx: Ctx) {
    a_waiting_caller_gets_the_loaders_bits(&ctx, Codec::Json).await;
}

async fn messagepack_codec_hands_a_waiting_caller_the_loaders_f64_bits(ctx: Ctx) {
    a_waiting_caller_gets_the_loaders_bits(&ctx, Codec::MessagePack).await;
}

async fn compact_codec_hands_a_waiting_caller_the_loaders_f64_bits(ctx: Ctx) {
    a_waiting_caller_gets_the_loaders_bits(&ctx, Codec::Compact).await;
}

// ------------------------------------------------------------------ #[cached] Json<T>

#[derive(Clone)]
struct App {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

async fn load_reading(app: &App, id: u32) -> Reading {
    app.loads.fetch_add(1, Ordering::SeqCst);
    let mut r = reading(&format!("station {id}"));
    r.value *= f64::from(id);
    r
}

#[cached(resource = "reading", ttl = "1h", cache = &app.cache)]
async fn cached_reading(State(app): State<App>, Path(id): Path<u32>) -> Json<Reading> {
    Json(load_reading(&app, id).await)
}

async fn plain_reading(State(app): State<App>, Path(id): Path<u32>) -> Json<Reading> {
    Json(load_reading(&app, id).await)
}

async fn body_of(router: &Router, uri: &str) -> (StatusCode, String, bytes::Bytes) {
    let req = Request::get(uri).body(Body::empty()).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let label = resp
        .headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        status,
        label,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn json_handler_body_is_byte_identical(ctx: &Ctx, codec: Codec) {
    let app = App {
        cache: ctx.builder().codec(codec).build().unwrap(),
        loads: Arc::default(),
    };
    let router = Router::new()
        .route("/cached/{id}", get(cached_reading))
        .route("/plain/{id}", get(plain_reading))
        .with_state(app.clone())
        .layer(CacheContextLayer::builder().build());
    let (status, _, origin) = body_of(&router, "/plain/3").await;
    assert_eq!(status, StatusCode::OK);
    let (status, label, miss) = body_of(&router, "/cached/3").await;
    assert_eq!((status, label.as_str()), (StatusCode::OK, "MISS"));
    let (status, label, hit) = body_of(&router, "/cached/3").await;
    assert_eq!((status, label.as_str()), (StatusCode::OK, "HIT"));
    assert_eq!(
        app.loads.load(Ordering::SeqCst),
        2,
        "plain + one cached load"
    );
    assert_eq!(
        String::from_utf8_lossy(&miss),
        String::from_utf8_lossy(&origin),
        "{codec:?}: MISS body vs the handler without #[cached]"
    );
    assert_eq!(
        String::from_utf8_lossy(&hit),
        String::from_utf8_lossy(&origin),
        "{codec:?}: HIT body vs the handler without #[cached]"
    );
}

async fn a_cached_json_handler_sends_the_same_float_bytes_on_miss_and_hit_json(ctx: Ctx) {
    json_handler_body_is_byte_identical(&ctx, Codec::Json).await;
}

async fn a_cached_json_handler_sends_the_same_float_bytes_on_miss_and_hit_messagepack(ctx: Ctx) {
    json_handler_body_is_byte_identical(&ctx, Codec::MessagePack).await;
}

async fn a_cached_json_handler_sends_the_same_float_bytes_on_miss_and_hit_compact(ctx: Ctx) {
    json_handler_body_is_byte_identical(&ctx, Codec::Compact).await;
}

on_both_backends!(
    json_codec_returns_the_loaders_f64_bits_on_a_hit,
    messagepack_codec_returns_the_loaders_f64_bits_on_a_hit,
    compact_codec_returns_the_loaders_f64_bits_on_a_hit,
    json_codec_hands_a_waiting_caller_the_loaders_f64_bits,
    messagepack_codec_hands_a_waiting_caller_the_loaders_f64_bits,
    compact_codec_hands_a_waiting_caller_the_loaders_f64_bits,
    a_cached_json_handler_sends_the_same_float_bytes_on_miss_and_hit_json,
    a_cached_json_handler_sends_the_same_float_bytes_on_miss_and_hit_messagepack,
    a_cached_json_handler_sends_the_same_float_bytes_on_miss_and_hit_compact,
);
