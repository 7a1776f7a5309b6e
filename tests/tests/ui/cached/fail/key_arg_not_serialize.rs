use cache_core::cached;

struct Filter {
    min: u32,
}

#[cached(ttl = "5m")]
async fn key_arg_not_serialize(id: u32, filter: Filter) -> u32 {
    id + filter.min
}

fn main() {
    let _ = key_arg_not_serialize(1, Filter { min: 1 });
}
