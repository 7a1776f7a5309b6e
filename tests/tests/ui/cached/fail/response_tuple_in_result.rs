//! A response tuple is cached whole only as the return type itself: inside a `Result` or an
//! `Option` it is one error on it that says what to return instead.
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use cache_core::cached;

#[cached(ttl = "5m")]
async fn created(id: u32) -> Result<(StatusCode, Json<u32>), String> {
    Ok((StatusCode::CREATED, Json(id)))
}

#[cached(ttl = "5m")]
async fn maybe(id: u32) -> Option<(StatusCode, HeaderMap, Json<u32>)> {
    Some((StatusCode::OK, HeaderMap::new(), Json(id)))
}

#[cached(ttl = "5m")]
async fn opaque(id: u32) -> Result<impl IntoResponse, String> {
    Ok(Json(id))
}

fn main() {}
