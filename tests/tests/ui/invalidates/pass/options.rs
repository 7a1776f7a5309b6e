use cache_core::{invalidates, Cache, PendingInvalidation};

#[invalidates("trig:{trig_id}", "trigs:list")]
async fn default_cache(trig_id: i64) -> Result<(), String> {
    let _ = trig_id;
    Ok(())
}

#[invalidates("trig:{trig_id}", cache = cache, crate = "cache_core")]
async fn explicit(cache: &Cache, trig_id: i64) {
    let _ = trig_id;
}

#[invalidates("trig:{trig_id}", defer = pending)]
async fn deferred(trig_id: i64, pending: &mut PendingInvalidation) -> Result<u8, String> {
    let _ = (trig_id, pending.is_empty());
    Ok(1)
}

/// A transaction's body: a plain `fn` is accepted with `defer` (nothing is awaited).
#[invalidates("trig:{trig_id}", "log:{result}", defer = pending)]
fn deferred_sync(trig_id: i64, pending: &mut PendingInvalidation) -> Result<u8, String> {
    if trig_id < 0 {
        return Err("negative".into());
    }
    let n: u8 = "1".parse().map_err(|_| "parse".to_owned())?;
    Ok(n)
}

fn main() {
    let _ = (default_cache, explicit, deferred, deferred_sync);
}
