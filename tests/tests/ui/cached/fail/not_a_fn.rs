use cache_core::cached;

#[cached(ttl = "5m")]
struct NotAFn;

fn main() {}
