//! A database handle, a client or any other argument that is not a `State<T>`, `Data<T>` or
//! `Extension<T>` extractor (nor the `cache = <argument>`) is part of the key: when it is not
//! `Serialize`, the error says to `skip` it.
use std::sync::Arc;

use cache_core::cached;

struct Db;
struct HttpClient;

#[cached(ttl = "5m")]
async fn trig(db: &Db, client: Arc<HttpClient>, id: u32) -> u32 {
    let _ = (db, client);
    id
}

fn main() {}
