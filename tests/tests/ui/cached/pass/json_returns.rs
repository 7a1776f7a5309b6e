//! `Json<T>` returns (a tuple struct `Json(pub T)`, as in axum and actix-web) are cached as `T`.
use cache_core::{cached, invalidates, Cache};

mod web {
    pub struct Json<T>(pub T);
    pub struct Path<T>(T);
    impl<T> std::ops::Deref for Path<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }
}
use web::Json;

trait IntoResponse {}
impl IntoResponse for () {}

#[cached(ttl = "5m", cache = cache)]
async fn plain(cache: &Cache, id: u32) -> Json<Vec<u32>> {
    Json(vec![id])
}

#[cached(ttl = "5m", cache = cache)]
async fn result(cache: &Cache, id: u32) -> Result<web::Json<String>, u16> {
    if id == 0 {
        return Err(404);
    }
    Ok(web::Json(id.to_string()))
}

#[cached(ttl = "5m", cache = cache, unless = |v: &Option<Json<u32>>| v.is_none())]
async fn option(cache: &Cache, path: web::Path<(u32, String)>) -> Option<Json<u32>> {
    Some(Json(path.0))
}

#[invalidates("trig:{id}", cache = cache)]
async fn write(cache: &Cache, id: u32) -> Result<impl IntoResponse, u16> {
    let _ = id;
    Ok(())
}

fn main() {
    let cache = Cache::memory();
    let _ = plain(&cache, 1);
    let _ = result(&cache, 1);
    let _ = write(&cache, 1);
}
