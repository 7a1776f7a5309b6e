//! Opaque return types that are not whole responses, and whole responses inside a `Result` or an
//! `Option`, cannot be cached.
use cache_core::cached;

struct HttpResponse;
struct Response;

/// An `impl Trait` that is neither `IntoResponse` (Axum) nor `Responder` (Actix).
#[cached(ttl = "5m")]
async fn opaque(id: u32) -> impl std::fmt::Display {
    format!("trig {id}")
}

/// A `dyn Trait`.
#[cached(ttl = "5m")]
async fn dynamic(id: u32) -> Box<dyn std::fmt::Display + Send> {
    Box::new(id)
}

#[cached(ttl = "5m")]
async fn dynamic_in_ok(id: u32) -> Result<&'static dyn std::fmt::Display, String> {
    let _ = id;
    Ok(&"trig")
}

/// A whole response is cached only as the return type itself.
#[cached(ttl = "5m")]
async fn response(id: u32) -> Result<HttpResponse, String> {
    let _ = id;
    Ok(HttpResponse)
}

#[cached(ttl = "5m")]
async fn axum_response(id: u32) -> Option<Response> {
    let _ = id;
    Some(Response)
}

fn main() {}
