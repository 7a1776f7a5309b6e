//! Return types behind type aliases are cached by their shape, not their name: a `Result` alias
//! caches `Ok` only, an `Option` alias `Some` only, an alias of a plain type the whole value.
use std::sync::Arc;

use cache_core::{cached, Cache};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Item {
    id: u32,
}

/// Not `Serialize`: only a `Result` shape (which never stores `Err`) accepts it.
#[derive(Debug)]
struct ApiError;

type ApiResult<T> = Result<T, ApiError>;
type Maybe<T> = Option<T>;
type Items = Vec<Item>;
type IoResult<T> = std::io::Result<T>;

#[cached(ttl = "5m")]
async fn result_alias(id: u32) -> ApiResult<Item> {
    if id == 0 {
        return Err(ApiError);
    }
    Ok(Item { id })
}

#[cached(ttl = "5m", unless = |r: &ApiResult<Item>| r.is_err())]
async fn result_alias_unless(id: u32) -> ApiResult<Item> {
    Ok(Item { id })
}

#[cached(ttl = "5m")]
async fn nested_alias(id: u32) -> IoResult<Maybe<Item>> {
    Ok((id > 0).then_some(Item { id }))
}

#[cached(ttl = "5m")]
async fn option_alias(id: u32) -> Maybe<Item> {
    (id > 0).then_some(Item { id })
}

#[cached(ttl = "5m")]
async fn plain_alias(id: u32) -> Items {
    vec![Item { id }]
}

/// A `Result` without generic arguments: the shape comes from the type, not the written name.
type Fixed = Result<u32, ApiError>;

struct Service {
    cache: Arc<Cache>,
}

impl Service {
    #[cached(ttl = "5m", cache = &self.cache)]
    async fn fixed(&self, id: u32) -> Fixed {
        Ok(id)
    }
}

fn main() {
    let _ = (result_alias(1), result_alias_unless(1), nested_alias(1));
    let _ = (option_alias(1), plain_alias(1));
    let svc = Service {
        cache: Arc::new(Cache::memory()),
    };
    let _ = svc.fixed(1);
}
