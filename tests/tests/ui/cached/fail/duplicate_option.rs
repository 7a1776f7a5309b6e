use cache_core::cached;

#[cached(ttl = "5m", resource = "a", ttl = "10m")]
async fn twice(id: u32) -> u32 {
    id
}

fn main() {
    let _ = twice(1);
}
