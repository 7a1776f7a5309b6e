use cache_core::cached;

#[cached(tll = "5m")]
async fn typo(id: u32) -> u32 {
    id
}

fn main() {
    let _ = typo(1);
}
