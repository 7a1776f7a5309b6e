use cache_core::cached;

#[cached(ttl = "5 minutes", stale_if_error = "1.5h")]
async fn bad_ttl(id: u32) -> u32 {
    id
}

fn main() {
    let _ = bad_ttl(1);
}
