#![allow(missing_docs)]
//! Cache warming (`cache_core::warm`) on Redis, Redis Cluster and the memory backend: warmers
//! run at start, after a flush, on an interval and on demand; every warmed key holds exactly
//! what its loader returned (the origin); loads are bounded by the schedule's concurrency; a
//! failing loader fails its key only; present keys are left alone; the admin endpoint runs a
//! warmer for both frameworks.
//!
//! Runs are awaited through [`Cache::warmed`] (a signal per completed run), never by sleeping.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::warm::WarmSchedule;
use cache_core::{Cache, Policy};
use common::Ctx;

const TTL: Duration = Duration::from_secs(300);
const WAIT: Duration = Duration::from_secs(30);

/// The origin's value of trig `id`.
fn origin(id: u32) -> String {
    format!("trig {id} from the database")
}

/// Registers `name`, warming trigs `ids` through loaders that count their calls in `loads`.
fn register(
    cache: &Cache,
    name: &str,
    schedule: WarmSchedule,
    ids: Vec<u32>,
    loads: Arc<AtomicUsize>,
) {
    cache.register_warmer(name, schedule, move |warm| {
        let (ids, loads) = (ids.clone(), Arc::clone(&loads));
        async move {
            for id in ids {
                let key = warm.cache().key("trig").id(id).build();
                let loads = Arc::clone(&loads);
                warm.load(
                    key,
                    Policy::ttl(TTL).tag(format!("trig:{id}")),
                    move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        origin(id)
                    },
                )
                .await;
            }
        }
    });
}

async fn waited<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("the warmer ran in time")
}

/// What a read finds for trig `id`, without loading.
async fn cached(cache: &Cache, id: u32) -> Option<String> {
    cache.get(&cache.key("trig").id(id).build()).await
}

async fn a_warmer_runs_at_start_and_stores_each_loaders_value(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = Arc::new(AtomicUsize::new(0));
    register(
        &cache,
        "trigs",
        WarmSchedule::new(),
        (1..=20).collect(),
        Arc::clone(&loads),
    );
    let report = waited(cache.warmed("trigs", 1)).await.unwrap();
    assert_eq!((report.keys, report.loaded, report.failed), (20, 20, 0));
    for id in 1..=20 {
        assert_eq!(cached(&cache, id).await, Some(origin(id)), "trig {id}");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 20);
    // Another instance reads them as hits: no load.
    let other = ctx.cache();
    let key = other.key("trig").id(7).build();
    let v: String = other
        .get_or_load(&key, TTL, || async { panic!("warmed: a hit") })
        .await;
    assert_eq!(v, origin(7));
}

async fn a_second_run_leaves_present_keys_alone_and_loads_only_the_missing(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = Arc::new(AtomicUsize::new(0));
    register(
        &cache,
        "trigs",
        WarmSchedule::new().at_start(false),
        (1..=10).collect(),
        Arc::clone(&loads),
    );
    let first = cache.warm("trigs").await.unwrap().expect("ran");
    assert_eq!((first.loaded, first.present), (10, 0));
    cache.invalidate_tags(&["trig:3", "trig:4"]).await.unwrap();
    let second = cache.warm("trigs").await.unwrap().expect("ran");
    assert_eq!((second.keys, second.loaded, second.present), (10, 2, 8));
    assert_eq!(loads.load(Ordering::SeqCst), 12);
    assert_eq!(cached(&cache, 3).await, Some(origin(3)));
}

async fn a_warmer_runs_again_after_a_flush(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = Arc::new(AtomicUsize::new(0));
    register(
        &cache,
        "trigs",
        WarmSchedule::new(),
        (1..=5).collect(),
        Arc::clone(&loads),
    );
    waited(cache.warmed("trigs", 1)).await.unwrap();
    cache.clear().await.unwrap();
    let report = waited(cache.warmed("trigs", 2)).await.unwrap();
    assert_eq!(
        report.loaded, 5,
        "everything was flushed, everything reloaded"
    );
    for id in 1..=5 {
        assert_eq!(cached(&cache, id).await, Some(origin(id)));
    }
    // Off when asked.
    register(
        &cache,
        "quiet",
        WarmSchedule::new().after_flush(false),
        vec![9],
        Arc::new(AtomicUsize::new(0)),
    );
    waited(cache.warmed("quiet", 1)).await.unwrap();
    cache.delete_pattern("trig:*").await.unwrap();
    waited(cache.warmed("trigs", 3)).await.unwrap();
    let quiet = cache
        .warm_status()
        .into_iter()
        .find(|s| s.name == "quiet")
        .unwrap();
    assert_eq!(quiet.runs, 1, "not run after the flush");
}

async fn a_warmer_with_an_interval_runs_repeatedly(ctx: Ctx) {
    let cache = ctx.cache();
    let loads = Arc::new(AtomicUsize::new(0));
    register(
        &cache,
        "trigs",
        WarmSchedule::new().every(Duration::from_millis(20)),
        vec![1, 2],
        Arc::clone(&loads),
    );
    let report = waited(cache.warmed("trigs", 4)).await.unwrap();
    assert_eq!(report.present, 2, "later runs find the keys present");
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

async fn loads_in_flight_never_exceed_the_concurrency(ctx: Ctx) {
    let cache = ctx.cache();
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (Arc::clone(&now), Arc::clone(&max));
    cache.register_warmer(
        "slow",
        WarmSchedule::new().at_start(false).concurrency(3),
        move |warm| {
            let (now, max) = (Arc::clone(&n), Arc::clone(&m));
            async move {
                for id in 0..24u32 {
                    let key = warm.cache().key("slow").id(id).build();
                    let (now, max) = (Arc::clone(&now), Arc::clone(&max));
                    warm.load(key, TTL, move || async move {
                        let inside = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(inside, Ordering::SeqCst);
                        // Long enough for the others to queue up behind the permits.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        id
                    })
                    .await;
                }
            }
        },
    );
    let report = cache.warm("slow").await.unwrap().expect("ran");
    assert_eq!(report.loaded, 24);
    assert_eq!(
        max.load(Ordering::SeqCst),
        3,
        "three loads at a time, never more"
    );
    for id in 0..24u32 {
        assert_eq!(
            cache.get::<u32>(&cache.key("slow").id(id).build()).await,
            Some(id)
        );
    }
}

async fn a_failing_loader_fails_its_key_only(ctx: Ctx) {
    let cache = ctx.cache();
    cache.register_warmer(
        "mixed",
        WarmSchedule::new().at_start(false),
        |warm| async move {
            for id in 1..=6u32 {
                let key = warm.cache().key("trig").id(id).build();
                warm.try_load(key, TTL, move || async move {
                    if id % 3 == 0 {
                        Err(format!("database refused trig {id}"))
                    } else {
                        Ok(origin(id))
                    }
                })
                .await;
            }
        },
    );
    let report = cache.warm("mixed").await.unwrap().expect("ran");
    assert_eq!((report.keys, report.loaded, report.failed), (6, 4, 2));
    for id in 1..=6 {
        let expected = (id % 3 != 0).then(|| origin(id));
        assert_eq!(cached(&cache, id).await, expected, "trig {id}");
    }
    let status = cache.warm_status();
    assert_eq!(status[0].runs, 1);
    assert_eq!(status[0].last.as_ref().unwrap().failed, 2);
}

async fn an_unknown_warmer_is_an_error_and_a_running_one_is_not_run_twice(ctx: Ctx) {
    let cache = ctx.cache();
    assert!(cache.warm("nope").await.is_err());
    let gate = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(tokio::sync::Notify::new());
    let (g, e) = (Arc::clone(&gate), Arc::clone(&entered));
    cache.register_warmer("gated", WarmSchedule::new().at_start(false), move |_warm| {
        let (g, e) = (Arc::clone(&g), Arc::clone(&e));
        async move {
            e.notify_one();
            g.notified().await;
        }
    });
    let running = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.warm("gated").await })
    };
    entered.notified().await;
    assert_eq!(
        cache.warm("gated").await.unwrap(),
        None,
        "skipped while running"
    );
    assert!(cache.warm_status()[0].running);
    gate.notify_one();
    assert!(running.await.unwrap().unwrap().is_some());
    assert_eq!(cache.warm_status()[0].skipped, 1);
}

on_both_backends!(
    a_warmer_runs_at_start_and_stores_each_loaders_value,
    a_second_run_leaves_present_keys_alone_and_loads_only_the_missing,
    a_warmer_runs_again_after_a_flush,
    a_warmer_with_an_interval_runs_repeatedly,
    loads_in_flight_never_exceed_the_concurrency,
    a_failing_loader_fails_its_key_only,
    an_unknown_warmer_is_an_error_and_a_running_one_is_not_run_twice,
);

/// The admin endpoint runs a warmer and answers its report, for both frameworks.
mod admin {
    use super::*;
    use actix_web::test as atest;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn warmed_cache() -> Cache {
        let cache = Cache::memory();
        register(
            &cache,
            "trigs",
            WarmSchedule::new().at_start(false),
            vec![1, 2, 3],
            Arc::new(AtomicUsize::new(0)),
        );
        cache
    }

    #[tokio::test]
    async fn axum_post_warm_runs_the_warmer_and_answers_its_report() {
        let cache = warmed_cache();
        let app = cache_axum::admin_router(cache.clone(), cache_axum::AdminGuard::bearer("t"));
        let req = |path: &str, token: &str| {
            axum::http::Request::post(path)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap()
        };
        let resp = app.clone().oneshot(req("/warm/trigs", "t")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(
            (body["keys"].as_u64(), body["loaded"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(cached(&cache, 2).await, Some(origin(2)));
        let resp = app.clone().oneshot(req("/warm/nope", "t")).await.unwrap();
        assert_eq!(resp.status(), 404);
        let resp = app
            .clone()
            .oneshot(req("/warm/trigs", "wrong"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
    }

    #[actix_web::test]
    async fn actix_post_warm_runs_the_warmer_and_answers_its_report() {
        let cache = warmed_cache();
        let app = atest::init_service(actix_web::App::new().service(cache_actix::admin_scope(
            "/admin",
            cache.clone(),
            cache_actix::AdminGuard::bearer("t"),
        )))
        .await;
        let req = |path: &str, token: &str| {
            atest::TestRequest::post()
                .uri(path)
                .insert_header(("authorization", format!("Bearer {token}")))
                .to_request()
        };
        let resp = atest::call_service(&app, req("/admin/warm/trigs", "t")).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = atest::read_body_json(resp).await;
        assert_eq!(
            (body["keys"].as_u64(), body["loaded"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(cached(&cache, 3).await, Some(origin(3)));
        let resp = atest::call_service(&app, req("/admin/warm/nope", "t")).await;
        assert_eq!(resp.status(), 404);
        let resp = atest::call_service(&app, req("/admin/warm/trigs", "wrong")).await;
        assert_eq!(resp.status(), 403);
        // The stats list the warmer.
        let resp = atest::call_service(
            &app,
            atest::TestRequest::get()
                .uri("/admin/stats")
                .insert_header(("authorization", "Bearer t"))
                .to_request(),
        )
        .await;
        let body: serde_json::Value = atest::read_body_json(resp).await;
        assert_eq!(body["warmers"][0]["name"], "trigs");
        assert_eq!(body["warmers"][0]["runs"], 1);
    }
}
