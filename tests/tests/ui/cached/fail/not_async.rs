use cache_core::cached;

#[cached(ttl = "5m")]
fn not_async(id: u32) -> u32 {
    id
}

fn main() {
    let _ = not_async(1);
}
