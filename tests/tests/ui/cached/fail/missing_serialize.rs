use cache_core::cached;

struct Trig {
    id: u32,
}

#[cached(ttl = "5m")]
async fn missing_serialize(id: u32) -> Result<Trig, String> {
    Ok(Trig { id })
}

fn main() {
    let _ = missing_serialize(1);
}
