//! `annocache`: the operator CLI of the cache (see `cache_core::cli`).

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    std::process::exit(runtime.block_on(cache_core::cli::main()));
}
