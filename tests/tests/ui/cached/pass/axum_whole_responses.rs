//! Axum handlers returning `impl IntoResponse` or `Response` are cached whole, and stay handlers.
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cache_core::{cached, Cache};

#[derive(Clone)]
struct App {
    cache: Arc<Cache>,
}

#[cached(ttl = "5m", tags = ["page:{id}"], cache = &app.cache)]
async fn tuple(State(app): State<App>, Path(id): Path<u32>) -> impl IntoResponse {
    if id == 0 {
        return (StatusCode::NOT_FOUND, [("x-served-by", "tuple")], String::new());
    }
    (StatusCode::OK, [("x-served-by", "tuple")], format!("page {id}"))
}

#[cached(ttl = "5m", cache = &app.cache)]
async fn html(State(app): State<App>, Path(id): Path<u32>) -> impl IntoResponse + Send {
    Html(format!("<h1>{id}</h1>"))
}

#[cached(ttl = "5m", cache = &app.cache)]
async fn response(State(app): State<App>, Path(id): Path<u32>) -> Response {
    if id == 0 {
        return StatusCode::NOT_FOUND.into_response();
    }
    format!("page {id}").into_response()
}

#[cached(ttl = "5m", cache = &app.cache)]
async fn response_body(State(app): State<App>, Path(id): Path<u32>) -> axum::http::Response<Body> {
    Response::new(Body::from(format!("page {id}")))
}

/// `?` and `return` work as without the attribute.
#[cached(ttl = "5m", cache = &app.cache)]
async fn fallible(State(app): State<App>, Path(text): Path<String>) -> Response {
    let n: u32 = match text.parse() {
        Ok(n) => n,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    n.to_string().into_response()
}

/// With the default cache (no `cache = ...`).
#[cached(ttl = "5m")]
async fn default_cache(Path(id): Path<u32>) -> impl IntoResponse {
    format!("page {id}")
}

fn main() {
    let app = App {
        cache: Arc::new(Cache::memory()),
    };
    let _: Router = Router::new()
        .route("/tuple/{id}", get(tuple))
        .route("/html/{id}", get(html))
        .route("/response/{id}", get(response))
        .route("/body/{id}", get(response_body))
        .route("/fallible/{text}", get(fallible))
        .route("/default/{id}", get(default_cache))
        .with_state(app);
}
