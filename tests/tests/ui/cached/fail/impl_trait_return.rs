use cache_core::cached;

trait IntoResponse {}
impl IntoResponse for String {}
struct HttpResponse;

#[cached(ttl = "5m")]
async fn opaque(id: u32) -> impl IntoResponse {
    format!("trig {id}")
}

#[cached(ttl = "5m")]
async fn response(id: u32) -> Result<HttpResponse, String> {
    let _ = id;
    Ok(HttpResponse)
}

fn main() {}
