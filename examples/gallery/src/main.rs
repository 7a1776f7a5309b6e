//! The gallery service.
//!
//! Run it with the embedded defaults (in-memory cache, SQLite file in the temp directory, seeded
//! with 50,000 items on first start):
//!
//! ```text
//! cargo run -p gallery
//! ```
//!
//! or against Redis: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p gallery` (`make redis-up`
//! starts one). `CACHE_ENABLED=false` turns caching off; `ADDR=127.0.0.1:0` picks a free port.
//! It prints one line `listening on http://HOST:PORT` to stdout (logs go to stderr). Then:
//!
//! ```text
//! curl -i localhost:3001/gallery                  # X-Cache-Status: MISS, ETag
//! curl -i localhost:3001/gallery                  # HIT, X-Cache-Age, X-Cache-TTL
//! curl -i 'localhost:3001/gallery?cache_bypass=1' # BYPASS
//! curl -i -H 'X-User-Id: 1' localhost:3001/users/1/gallery   # X-Cache-Fragments
//! curl -s -H 'Authorization: Bearer gallery-dev-token' localhost:3001/admin/cache/stats
//! ```
//!
//! The environment variables and the cache design are in the library docs (`src/lib.rs`).

use gallery::server::{self, Config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    init_logs();
    let config = Config::from_env()?;
    let cache = server::cache_builder_from_env()?;
    tracing::info!(
        db = %config.db_path.display(),
        items = config.seed.items,
        users = config.seed.users,
        "opening the database (seeded on first start)"
    );
    let running = server::start(&config, cache, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    let db = &running.db;
    if db.seeded {
        tracing::info!(
            seconds = format!("{:.2}", db.seed_time.as_secs_f64()),
            items = db.items,
            users = db.users,
            bytes = db.file_bytes,
            "seeded the database"
        );
    }
    tracing::info!(
        backend = running.cache.backend_kind(),
        cache_enabled = running.cache.is_enabled(),
        db = %db.path.display(),
        items = db.items,
        db_bytes = db.file_bytes,
        "gallery ready"
    );
    let base = format!("http://{}", running.addr);
    tracing::info!(
        "try: curl -i {base}/gallery | curl -i '{base}/content?tag=cat&sort=popular' | \
         curl -i -H 'X-User-Id: 1' {base}/users/1/gallery | curl -s {base}/metrics"
    );
    // The one line on stdout: scripts and tests wait for it.
    println!("listening on {base}");
    running.task.await??;
    Ok(())
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`; `RUST_LOG=info,cache_core=debug` adds
/// every hit and miss). `LOG_FORMAT=json` prints one JSON object per line, with the event's
/// fields at the top level: `{"event":"cache_hit","key":"...","age_ms":45,...}`; otherwise
/// text, where the same field reads `event="cache_hit"`.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,cache_core=info".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
}
