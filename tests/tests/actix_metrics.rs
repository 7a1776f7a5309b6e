#![allow(missing_docs)]
//! Prometheus metrics of `cache-actix` (`CacheMetrics`, `metrics_route`), through a real `App`,
//! on Redis and memory: the cases of `axum_metrics.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use cache_actix::{
    metrics_route, CacheContextLayer, CacheMetrics, ResponseCacheLayer, RoutePolicy,
    PROMETHEUS_CONTENT_TYPE,
};
use cache_core::{cached, Cache};
use common::Ctx;

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

async fn get_text<S, B>(app: &S, uri: &str) -> (StatusCode, String, String)
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(app, TestRequest::get().uri(uri).to_request()).await;
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = test::read_body(resp).await;
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

async fn layer_app(
    cache: Cache,
    metrics: CacheMetrics,
) -> impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    test::init_service(
        App::new()
            .wrap(
                ResponseCacheLayer::builder(cache)
                    .route("/trigs/{id}", RoutePolicy::ttl(HOUR).resource("trig"))
                    .metrics(metrics.clone())
                    .build(),
            )
            .route(
                "/trigs/{id}",
                web::get().to(|id: web::Path<u32>| async move { format!("trig {}", *id) }),
            )
            .service(metrics_route("/metrics", metrics)),
    )
    .await
}

/// `cache_l1_hits_total` counts the hits served by the in-process tier (also counted in
/// `cache_hits_total`); without L1 it stays 0.
async fn l1_hits_are_exported(ctx: Ctx) {
    for (cache, l1_hits, id) in [(ctx.cache(), 0.0, 1), (ctx.l1_cache().await, 2.0, 2)] {
        let metrics = CacheMetrics::new(cache.clone());
        let app = layer_app(cache.clone(), metrics.clone()).await;
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
    let app = layer_app(cache.clone(), metrics.clone()).await;
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
    // The metrics route itself is not a cached route (it is inside the `wrap` here, unlike the
    // axum suite's nested router, so this also checks the layer ignores it): no series for it.
    assert!(!text.contains("status=\"BYPASS\""), "{text}");
    assert!(!text.contains("/metrics"), "{text}");

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
struct State {
    cache: Cache,
    loads: Arc<AtomicUsize>,
}

#[cached(resource = "trig", ttl = "1h", cache = app.cache.clone())]
async fn get_trig(app: web::Data<State>, id: web::Path<u32>) -> web::Json<String> {
    app.loads.fetch_add(1, Ordering::SeqCst);
    web::Json(format!("trig {}", *id))
}

async fn context_layer_records_by_route(ctx: Ctx) {
    let state = State {
        cache: ctx.cache(),
        loads: Arc::default(),
    };
    let metrics = CacheMetrics::new(state.cache.clone());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/trigs/{id}", web::get().to(get_trig))
            .route("/plain", web::get().to(|| async { "plain" }))
            .service(metrics_route("/metrics", metrics.clone()))
            .wrap(
                CacheContextLayer::builder()
                    .metrics(metrics.clone())
                    .build(),
            ),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(get_text(&app, "/trigs/7").await.0, StatusCode::OK);
    }
    assert_eq!(get_text(&app, "/plain").await.0, StatusCode::OK);
    assert_eq!(state.loads.load(Ordering::SeqCst), 1);
    let (_, _, text) = get_text(&app, "/metrics").await;
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
    assert!(!text.contains("/metrics"), "{text}");
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
    let app = layer_app(cache, a.clone()).await;
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

on_both_backends_actix!(
    l1_hits_are_exported,
    layer_miss_then_hit_is_exported,
    context_layer_records_by_route,
    instances_do_not_share_series,
);
