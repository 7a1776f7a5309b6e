use cache_core::invalidates;

#[invalidates("trig:{id}")]
fn not_async(id: u32) {
    let _ = id;
}

fn main() {
    not_async(1);
}
