use cache_core::invalidates;

#[invalidates("trig:{trig}", "trigs:list", defer = p, later = true)]
async fn bad_options(id: u32, p: &mut cache_core::PendingInvalidation) {
    let _ = (id, p);
}

#[invalidates(cache = None::<cache_core::Cache>)]
async fn no_tags(id: u32) {
    let _ = id;
}

fn main() {}

#[invalidates("t", defer = p, cache = cache_core::default_cache())]
async fn defer_and_cache(p: &mut cache_core::PendingInvalidation) {
    let _ = p;
}
