#![allow(missing_docs)]
//! Prometheus metrics of `cache-axum` (`CacheMetrics`, `metrics_route`), through a real `Router`,
//! on Redis and memory.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use cache_axum::{
    metrics_route, CacheContextLayer, CacheMetrics, ResponseCacheLayer, RoutePolicy,
    PROMETHEUS_CONTENT_TYPE,
};
use cache_core::{cached, Cache};
use common::Ctx;
use http_body_util::BodyExt;
use tower::ServiceExt;

const HOUR: Duration = Duration::from_secs(3600);

/// The value of the sample `name{labels}` (labels in the exporter's order), if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let body = rest.strip_suffix('}')?;
            let found: Vec<(&str, &str)> = if body.is_empty() {
                Vec::new()
            } else {
                body.split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k, v.trim_matches('"'))
                    })
                    .collect()
            };
            let matches = labels.len() == found.len() && labels.iter().all(|l| found.contains(l));
            matches.then(|| value.parse().unwrap())
        })
}

async fn get_text(app: &Router, uri: &str) -> (StatusCode, String, String) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

fn layer_app(cache: Cache, metrics: CacheMetrics) -> Router {
    Router::new()
        .route(
            "/trigs/{id}",
            get(|Path(id): Path<u32>| async move { format!("trig {id}") }),
        )
        .layer(
            ResponseCacheLayer::builder(cache)
                .route("/trigs/{id}", RoutePolicy::ttl(HOUR).resource("trig"))
                .metrics(metrics.clone())
                .build(),
        )
        .merge(metrics_route("/metrics", metrics))
}

/// `cache_l1_hits_total` counts the hits served by the in-process tier (also counted in
/// `cache_hits_total`); without L1 it stays 0.
async fn l1_hits_are_exported(ctx: Ctx) {
    for (cache, l1_hits, id) in [(ctx.cache(), 0.0, 1), (ctx.l1_cache().await, 2.0, 2)] {
        let metrics = CacheMetrics::new(cache.clone());
        let app = layer_app(cache.clone(), metrics.clone());
        for _ in 0..3 {
            let (s, _, body) = get_text(&app, &format!("/trigs/{id}")).await;
            assert_eq!((s, body), (StatusCode::OK, format!("trig {id}")));
        }
        let (_, _, text) = get_text(&app, "/metrics").await;
        let trig = [("resource", "trig")];
        assert_eq!(
            sample(&text, "cache_hits_total", &trig),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "cache_l1_hits_total", &trig).unwrap_or(0.0),
            l1_hits,
            "{text}"
        );
        assert_eq!(cache.stats().resources["trig"].l1_hits as f64, l1_hits);
    }
}

async fn layer_miss_then_hit_is_exported(ctx: Ctx) {
    let cache = ctx.cache();
    let metrics = CacheMetrics::new(cache.clone());
    let app = layer_app(cache.clone(), metrics.clone());
    let (s, _, body) = get_text(&app, "/trigs/1").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "trig 1"));
    let (s, _, body) = get_text(&app, "/trigs/1").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "trig 1"));

    let (status, content_type, text) = get_text(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, PROMETHEUS_CONTENT_TYPE);
    assert_eq!(content_type, "text/plain; version=0.0.4");
    let trig = [("resource", "trig")];
    assert_eq!(
        sample(&text, "cache_hits_total", &trig),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "cache_misses_total", &trig),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "cache_sets_total", &trig),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "cache_bytes_read_total", &trig).unwrap() > 0.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "cache_invalidations_total", &[]),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE cache_request_duration_seconds histogram"),
        "{text}"
    );
    for st in ["HIT", "MISS"] {
        let labels = [("resource", "trig"), ("status", st)];
        assert_eq!(
            sample(&text, "cache_request_duration_seconds_count", &labels),
            Some(1.0),
            "{st}: {text}"
        );
        let inf = [("resource", "trig"), ("status", st), ("le", "+Inf")];
        assert_eq!(
            sample(&text, "cache_request_duration_seconds_bucket", &inf),
            Some(1.0),
            "{st}: {text}"
        );
        assert!(sample(&text, "cache_request_duration_seconds_sum", &labels).unwrap() >= 0.0);
    }
    // The metrics route itself is not a cached route: no series for it.
    assert!(!text.contains("status=\"BYPASS\""), "{text}");

    // Rendering again does not double the counters; a reset keeps them monotonic.
    let text = metrics.render();
    assert_eq!(
        sample(&text, "cache_hits_total", &trig),
        Some(1.0),
        "{text}"
    );
    // A reset is seen by the next render (a lower value): the exported counter stays at 1.
    cache.reset_stats();
    let text = metrics.render();
    assert_eq!(
        sample(&text, "cache_hits_total", &trig),
        Some(1.0),
        "{text}"
    );
    get_text(&app, "/trigs/1").await;
    let text = metrics.render();
    assert_eq!(
        sample(&text, "cache_hits_total", &trig),
        Some(2.0),
        "{text}"
    );
    let hit = [("resource", "trig"), ("status", "HIT")];
    assert_eq!(
        sample(&text, "cache_request_duration_seconds_count", &hit),
        Some(2.0),
        "{text}"
    );
}

#[derive(Clone)]
struct App {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

#[cached(resource = "trig", ttl = "1h", cache = app.cache.clone())]
async fn get_trig(State(app): State<App>, Path(id): Path<u32>) -> Json<String> {
    app.loads.fetch_add(1, Ordering::SeqCst);
    Json(format!("trig {id}"))
}

async fn context_layer_records_by_route(ctx: Ctx) {
    let app = App {
        cache: ctx.cache(),
        loads: Arc::default(),
    };
    let metrics = CacheMetrics::new(app.cache.clone());
    let router = Router::new()
        .route("/trigs/{id}", get(get_trig))
        .route("/plain", get(|| async { "plain" }))
        .with_state(app.clone())
        .layer(
            CacheContextLayer::builder()
                .metrics(metrics.clone())
                .build(),
        )
        .merge(metrics_route("/metrics", metrics.clone()));
    for _ in 0..2 {
        assert_eq!(get_text(&router, "/trigs/7").await.0, StatusCode::OK);
    }
    assert_eq!(get_text(&router, "/plain").await.0, StatusCode::OK);
    assert_eq!(app.loads.load(Ordering::SeqCst), 1);
    let (_, _, text) = get_text(&router, "/metrics").await;
    for st in ["HIT", "MISS"] {
        let labels = [("resource", "/trigs/{id}"), ("status", st)];
        assert_eq!(
            sample(&text, "cache_request_duration_seconds_count", &labels),
            Some(1.0),
            "{st}: {text}"
        );
    }
    // Handlers without a #[cached] call are not recorded.
    assert!(!text.contains("/plain"), "{text}");
    let trig = [("resource", "trig")];
    assert_eq!(
        sample(&text, "cache_hits_total", &trig),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "cache_misses_total", &trig),
        Some(1.0),
        "{text}"
    );
}

/// Two `CacheMetrics` in one process keep separate series.
async fn instances_do_not_share_series(ctx: Ctx) {
    let cache = ctx.cache();
    let a = CacheMetrics::new(cache.clone());
    let b = CacheMetrics::new(cache.clone());
    let app = layer_app(cache, a.clone());
    get_text(&app, "/trigs/2").await;
    let miss = [("resource", "trig"), ("status", "MISS")];
    assert_eq!(
        sample(&a.render(), "cache_request_duration_seconds_count", &miss),
        Some(1.0)
    );
    assert_eq!(
        sample(&b.render(), "cache_request_duration_seconds_count", &miss),
        None
    );
}

on_both_backends!(
    l1_hits_are_exported,
    layer_miss_then_hit_is_exported,
    context_layer_records_by_route,
    instances_do_not_share_series,
);
