#![allow(missing_docs)]
//! The admin dashboard through `cache_actix::admin_scope`, on Redis, Redis Cluster and memory:
//! the same page bytes and headers as `cache_core::admin::dashboard` (whose content
//! `dashboard.rs` checks) without the guard, and `GET timeline` behind it, equal to what
//! `Analytics::timeline` answers.

mod common;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use cache_actix::{admin_scope, AdminGuard, AnalyticsLayer, ResponseCacheLayer, RoutePolicy};
use cache_core::admin;
use cache_core::analytics::Window;
use cache_core::Cache;
use common::Ctx;
use serde_json::Value;

const TOKEN: &str = "s3cret";
const ROUTE: &str = "/secret-route-7f3a/{id}";
const TAG: &str = "secret-tag-7f3a";
const BODY: &str = "the item";

type Reply = (StatusCode, Vec<(String, String)>, Vec<u8>);

async fn service(
    cache: &Cache,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    Error = actix_web::Error,
> {
    test::init_service(
        App::new()
            .route(ROUTE, web::get().to(|| async { BODY }))
            .service(admin_scope(
                "/admin/cache",
                cache.clone(),
                AdminGuard::bearer(TOKEN),
            ))
            .wrap(
                ResponseCacheLayer::builder(cache.clone())
                    .route(ROUTE, RoutePolicy::ttl(Duration::from_secs(3600)).tag(TAG))
                    .build(),
            )
            .wrap(AnalyticsLayer::new(cache)),
    )
    .await
}

async fn call<S, B>(app: &S, uri: &str, token: Option<&str>) -> Reply
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody,
{
    let mut req = TestRequest::get().uri(uri);
    if let Some(t) = token {
        req = req.insert_header(("authorization", format!("Bearer {t}")));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    (status, headers, test::read_body(resp).await.to_vec())
}

async fn actix_serves_the_same_page_without_the_guard_and_without_data(ctx: Ctx) {
    let cache = ctx.cache();
    let app = service(&cache).await;
    for _ in 0..2 {
        let (status, _, body) = call(&app, "/secret-route-7f3a/1", None).await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, BODY.as_bytes()));
    }
    cache.analytics().flush().await;
    let page = admin::dashboard();
    for token in [None, Some("wrong"), Some(TOKEN)] {
        let (status, headers, body) = call(&app, "/admin/cache/dashboard", token).await;
        assert_eq!(status, StatusCode::OK, "token {token:?}");
        for (name, value) in &page.headers {
            let got: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(got, [value.as_str()], "{name}");
        }
        assert_eq!(body, page.body.as_bytes());
        let text = String::from_utf8(body).unwrap();
        assert!(!text.contains("secret-route-7f3a") && !text.contains(TAG));
        assert!(!text.contains(&ctx.namespace));
    }
    for uri in [
        "/admin/cache/stats",
        "/admin/cache/analytics",
        "/admin/cache/timeline",
    ] {
        assert_eq!(call(&app, uri, None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            call(&app, uri, Some("wrong")).await.0,
            StatusCode::FORBIDDEN
        );
    }
}

async fn actix_timeline_json_behind_the_guard(ctx: Ctx) {
    let cache = ctx.cache();
    let app = service(&cache).await;
    for _ in 0..2 {
        call(&app, "/secret-route-7f3a/1", None).await;
    }
    cache.analytics().flush().await;
    assert_eq!(
        call(&app, "/admin/cache/timeline?window=2w", Some(TOKEN))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // The analytics layer wraps the admin scope too (its requests are routes as well): filter on
    // the application's route so that the admin calls do not move the oracle.
    let route = Some("GET /secret-route-7f3a/{id}");
    let filter = "route=GET%20%2Fsecret-route-7f3a%2F%7Bid%7D";
    for (query, window) in [
        (format!("?{filter}"), Window::FiveMinutes),
        (format!("?window=5m&{filter}"), Window::FiveMinutes),
        (format!("?window=1h&{filter}"), Window::Hour),
        (format!("?window=1d&{filter}"), Window::Day),
    ] {
        let uri = format!("/admin/cache/timeline{query}");
        let mut checked = false;
        // A minute may tick between two reads: compare when the oracle did not change.
        for _ in 0..3 {
            let before = cache.analytics().timeline(window, route).await.unwrap();
            let (status, _, body) = call(&app, &uri, Some(TOKEN)).await;
            assert_eq!(status, StatusCode::OK);
            let after = cache.analytics().timeline(window, route).await.unwrap();
            if before != after {
                continue;
            }
            let served: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(served, serde_json::to_value(&after).unwrap(), "{uri}");
            assert_eq!(served["routes"][0]["route"], ROUTE);
            assert_eq!(served["routes"][0]["requests"], 2);
            assert_eq!(served["routes"].as_array().unwrap().len(), 1);
            checked = true;
            break;
        }
        assert!(checked, "the timeline kept changing");
    }
}

on_both_backends_actix!(
    actix_serves_the_same_page_without_the_guard_and_without_data,
    actix_timeline_json_behind_the_guard,
);
