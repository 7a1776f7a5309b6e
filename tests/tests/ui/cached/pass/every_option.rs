use std::sync::Arc;

use cache_core::{cached, Cache};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Trig {
    id: i64,
}

struct Path<T>(T);
struct State<T>(T);
struct PgPool;

#[cached(
    resource = "trig",
    ttl = "24h",
    key = "{trig_id}:{page}",
    tags = ["trig:{trig_id}", "trigs:list", "{{literal}}"],
    user = user_id,
    version = 2,
    unless = |r: &Result<Trig, String>| r.is_err(),
    stale_while_revalidate = "1m",
    stale_if_error = "10m",
    lease = true,
    cache = cache,
    skip = [user_id, _pool],
    crate = "cache_core",
)]
async fn every_option(
    cache: Arc<Cache>,
    _pool: &PgPool,
    Path(trig_id): Path<i64>,
    page: u32,
    user_id: u64,
) -> Result<Trig, String> {
    let _ = (page, user_id);
    Ok(Trig { id: trig_id })
}

#[cached]
async fn no_options(State(_app): State<()>, q: Option<String>) -> Vec<String> {
    q.into_iter().collect()
}

#[cached(ttl = "90s", key = [a])]
async fn unit_and_list(a: u8, b: u8) {
    let _ = b;
}

struct Service {
    cache: Cache,
}

impl Service {
    #[cached(ttl = "3600", cache = &self.cache)]
    pub async fn method(&self, id: u32) -> Option<u32> {
        Some(id)
    }
}

#[derive(Debug)]
struct AppError;

impl From<std::num::ParseIntError> for AppError {
    fn from(_: std::num::ParseIntError) -> Self {
        AppError
    }
}

/// `?` converts errors with `From` and `return` leaves early, as without the attribute.
#[cached(ttl = "5m")]
async fn question_mark(text: String) -> Result<u32, AppError> {
    let n: u32 = text.parse()?;
    if n == 0 {
        return Err(AppError);
    }
    Ok(n)
}

fn main() {
    let _ = question_mark;
    let _ = (every_option, no_options, unit_and_list, Service::method);
}
