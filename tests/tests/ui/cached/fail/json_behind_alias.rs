//! A `Json<T>` is cached as `T` only where the return type writes it out; behind a type alias
//! the `Json` itself would be the cached value, which is not `Deserialize`.
use cache_core::cached;
use serde::{Deserialize, Serialize};

pub struct Json<T>(pub T); // as `axum::Json` or `actix_web::web::Json`

#[derive(Serialize, Deserialize)]
struct Trig {
    id: u32,
}

type JsonResult<T> = Result<Json<T>, u16>;
type TrigJson = Json<Trig>;

#[cached(ttl = "5m")]
async fn in_a_result(id: u32) -> JsonResult<Trig> {
    Ok(Json(Trig { id }))
}

#[cached(ttl = "5m")]
async fn alone(id: u32) -> TrigJson {
    Json(Trig { id })
}

fn main() {}
