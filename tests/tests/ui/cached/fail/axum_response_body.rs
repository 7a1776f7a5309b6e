//! A whole Axum response is rebuilt as `Response<Body>`: another body type is an error on the
//! return type.
use axum::http::Response;
use cache_core::cached;

#[cached(ttl = "5m")]
async fn page(id: u32) -> Response<String> {
    Response::new(id.to_string())
}

fn main() {}
