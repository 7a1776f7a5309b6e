//! Response tuples are cached whole and stay handlers: Axum's `(StatusCode, Json<T>)`,
//! `(StatusCode, HeaderMap, Json<T>)`, `(HeaderMap, Json<T>)`, `([(K, V); N], String)`, and
//! Actix's `(web::Json<T>, StatusCode)` and `(impl Responder, StatusCode)`. The functions
//! return the response the tuple turns into.
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, Response};
use axum::routing::get;
use axum::{Json, Router};
use cache_core::{cached, Cache};

#[derive(Clone)]
struct App {
    cache: Cache,
}

#[cached(ttl = "5m", cache = &app.cache)]
async fn status_json(State(app): State<App>, Path(id): Path<u32>) -> (StatusCode, Json<u32>) {
    if id == 0 {
        return (StatusCode::NOT_FOUND, Json(0));
    }
    (StatusCode::OK, Json(id))
}

#[cached(ttl = "5m", cache = &app.cache)]
async fn status_headers_json(
    State(app): State<App>,
    Path(id): Path<u32>,
) -> (StatusCode, HeaderMap, Json<u32>) {
    (StatusCode::OK, HeaderMap::new(), Json(id))
}

#[cached(ttl = "5m", cache = &app.cache)]
async fn headers_json(State(app): State<App>, Path(id): Path<u32>) -> (HeaderMap, Json<u32>) {
    (HeaderMap::new(), Json(id))
}

#[cached(ttl = "5m", cache = &app.cache)]
async fn header_array(
    State(app): State<App>,
    Path(id): Path<u32>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    ([(header::CONTENT_TYPE, "text/plain")], id.to_string())
}

#[cached(ttl = "5m", cache = &app.cache)]
async fn status_html(State(app): State<App>, Path(id): Path<u32>) -> (StatusCode, Html<String>) {
    (StatusCode::OK, Html(format!("<h1>{id}</h1>")))
}

mod actix {
    use actix_web::http::StatusCode;
    use actix_web::{web, HttpResponse, Responder};
    use cache_core::{cached, Cache};

    #[cached(ttl = "5m", cache = cache.get_ref())]
    pub async fn json_status(cache: web::Data<Cache>, id: web::Path<u32>) -> (web::Json<u32>, StatusCode) {
        (web::Json(*id), StatusCode::OK)
    }

    #[cached(ttl = "5m", cache = cache.get_ref())]
    pub async fn responder_status(
        cache: web::Data<Cache>,
        id: web::Path<u32>,
    ) -> (impl Responder, StatusCode) {
        (format!("{}", *id), StatusCode::CREATED)
    }

    pub fn routes(cfg: &mut web::ServiceConfig) {
        cfg.route("/json/{id}", web::get().to(json_status))
            .route("/responder/{id}", web::get().to(responder_status));
    }

    /// The handlers' output is the `HttpResponse` the tuple turns into.
    pub fn returns_http_response() {
        fn output<F: actix_web::Handler<Args, Output = HttpResponse>, Args>(_: F) {}
        output(json_status);
        output(responder_status);
    }
}

async fn returns_response(app: App) -> Response {
    status_json(State(app), Path(1)).await
}

fn main() {
    let app = App {
        cache: Cache::memory(),
    };
    let _ = returns_response(app.clone());
    actix::returns_http_response();
    let _ = actix_web::App::new().configure(actix::routes);
    let _: Router = Router::new()
        .route("/a/{id}", get(status_json))
        .route("/b/{id}", get(status_headers_json))
        .route("/c/{id}", get(headers_json))
        .route("/d/{id}", get(header_array))
        .route("/e/{id}", get(status_html))
        .with_state(app);
}
