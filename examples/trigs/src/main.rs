//! The trigs example service: a trigpointing API cached by annotation.
//!
//! ```text
//! cargo run -p trigs                                        # in-memory cache, no Redis needed
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p trigs       # Redis
//! CACHE_ENABLED=false cargo run -p trigs                    # no caching at all
//! ADDR=127.0.0.1:0 cargo run -p trigs                       # any free port
//! ```
//!
//! It prints one line on stdout, `listening on http://127.0.0.1:PORT`, then logs (stderr) the
//! backend, the database path and URLs to try. The first start creates and seeds the SQLite
//! database (`TRIGS_DB`); see the crate docs (`src/lib.rs`) for every variable and the
//! read/write tag tables.

use std::io::Write;
use std::sync::Arc;

use actix_web::HttpServer;
use cache_actix::{CacheContextLayer, CacheMetrics};
use trigs::{App, Db, Settings};

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    init_logs();
    let settings = Settings::from_env();
    let cache = trigs::cache_from_env()?;
    let started = std::time::Instant::now();
    let (path, seed) = (settings.db_path.clone(), settings.seed);
    let db = actix_web::web::block(move || Db::open(path, seed, 4)).await??;
    tracing::info!(
        path = %db.path().display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "database ready"
    );
    let app = App {
        cache: cache.clone(),
        db: Arc::new(db),
    };

    // Built once, cloned into each worker's App: the metrics registry and the middleware that
    // gives `#[cached]` handlers their bypass and `X-Cache-*` headers.
    let metrics = CacheMetrics::new(cache.clone());
    let context = CacheContextLayer::builder()
        .metrics(metrics.clone())
        .build();
    let token = settings.admin_token.clone();
    let server = HttpServer::new({
        let app = app.clone();
        move || {
            actix_web::App::new()
                .wrap(context.clone())
                .configure(|cfg| trigs::configure(cfg, &app, &metrics, &token))
        }
    })
    .workers(2)
    .bind(&settings.addr)?;

    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or("the server is bound to no address")?;
    let base = format!("http://{addr}");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {base}")?;
        out.flush()?;
    }
    tracing::info!(
        backend = cache.backend_kind(),
        enabled = cache.is_enabled(),
        database = %app.db.path().display(),
        "trigs is up"
    );
    tracing::info!(
        "admin token: {} (Authorization: Bearer ...)",
        settings.admin_token
    );
    let json = "-H 'content-type: application/json'";
    let body = r#"{"user_id":3,"text":"Found it","condition":"Good"}"#;
    for try_this in [
        format!("curl -i {base}/v1/trigs/1              # twice: MISS, then HIT"),
        format!("curl -i '{base}/v1/trigs/1?cache_bypass=1'   # BYPASS"),
        format!("curl -i -X POST {base}/v1/trigs/1/logs {json} -d '{body}'   # invalidates by tag"),
        format!("curl -s {base}/v1/stats/site"),
        format!(
            "curl -s -H 'Authorization: Bearer {}' {base}/admin/cache/stats",
            settings.admin_token
        ),
        format!("curl -s {base}/metrics"),
    ] {
        tracing::info!("try: {try_this}");
    }
    server.run().await?;
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
