//! `unless` does not apply to whole responses: the HTTP rules decide what is stored.
use axum::response::{IntoResponse, Response};
use cache_core::cached;

#[cached(ttl = "5m", unless = |r: &Response| !r.status().is_success())]
async fn axum_page(id: u32) -> Response {
    id.to_string().into_response()
}

#[cached(ttl = "5m", unless = |_| false)]
async fn axum_opaque(id: u32) -> impl IntoResponse {
    id.to_string()
}

#[cached(ttl = "5m", unless = |_| false)]
async fn actix_page(id: u32) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().body(id.to_string())
}

fn main() {}
