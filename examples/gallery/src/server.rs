//! Configuration from the environment, and starting the service.

use cache_core::warm::WarmSchedule;
use cache_core::{Cache, CacheBuilder};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::app::App;
use crate::db::{Db, OpenReport, SeedConfig};
use crate::outbox::SqliteOutbox;
use crate::routes;

/// The admin token used when `ADMIN_TOKEN` is unset. For local use only.
pub const DEFAULT_ADMIN_TOKEN: &str = "gallery-dev-token";

/// The address used when `ADDR` is unset.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3001";

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address (`ADDR`, default `127.0.0.1:3001`; port 0 picks a free port).
    pub addr: String,
    /// Database file (`GALLERY_DB`, default `$TMPDIR/annocache-gallery.sqlite3`).
    pub db_path: PathBuf,
    /// Seed volume (`GALLERY_SEED_USERS`, default 500; `GALLERY_SEED_ITEMS`, default 50,000).
    pub seed: SeedConfig,
    /// Bearer token of `/admin/cache` (`ADMIN_TOKEN`, default [`DEFAULT_ADMIN_TOKEN`]).
    pub admin_token: String,
    /// Reader connections (`GALLERY_DB_READERS`, default: the number of CPUs). SQLite queries
    /// are CPU-bound, so more readers than cores only make cache misses steal CPU from hits.
    pub readers: usize,
    /// Resources whose caching is turned off (`GALLERY_UNCACHED`, comma-separated names of
    /// [`crate::app::RESOURCES`]; default none): the advisor experiment.
    pub uncached: Vec<String>,
    /// Warming from analytics (`GALLERY_WARM=1`; default off, so that the demo walk's
    /// `X-Cache-Status` sequence is not changed by background replays): see [`register_warmer`].
    pub warm: bool,
}

/// The default database path: `$TMPDIR/annocache-gallery.sqlite3`.
pub fn default_db_path() -> PathBuf {
    std::env::temp_dir().join("annocache-gallery.sqlite3")
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?}: expected a whole number")),
        _ => Ok(default),
    }
}

impl Config {
    /// Reads the environment.
    ///
    /// # Errors
    /// A message naming a variable with a bad value.
    pub fn from_env() -> Result<Config, String> {
        let defaults = SeedConfig::default();
        Ok(Config {
            addr: std::env::var("ADDR")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_ADDR.to_owned()),
            db_path: std::env::var_os("GALLERY_DB")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(default_db_path),
            seed: SeedConfig {
                users: env_num("GALLERY_SEED_USERS", defaults.users)?.max(2),
                items: env_num("GALLERY_SEED_ITEMS", defaults.items)?.max(10),
                seed: env_num("GALLERY_SEED", defaults.seed)?,
            },
            admin_token: std::env::var("ADMIN_TOKEN")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_ADMIN_TOKEN.to_owned()),
            readers: env_num(
                "GALLERY_DB_READERS",
                std::thread::available_parallelism().map_or(2, usize::from),
            )?
            .clamp(1, 64),
            uncached: std::env::var("GALLERY_UNCACHED")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            warm: std::env::var("GALLERY_WARM").is_ok_and(|v| v.trim() == "1"),
        })
    }
}

/// The cache's configuration from the environment (`REDIS_URL`, `CACHE_ENABLED`,
/// `CACHE_NAMESPACE`, ...; see `cache_core::config`), with the namespace `gallery` unless
/// `CACHE_NAMESPACE` says otherwise, and 10% TTL jitter so entries filled together do not expire
/// together. [`start`] adds the database's invalidation outbox and builds it.
///
/// # Errors
/// A message naming the bad variable.
pub fn cache_builder_from_env() -> Result<CacheBuilder, String> {
    let mut builder = CacheBuilder::from_env().map_err(|e| e.to_string())?;
    if std::env::var("CACHE_NAMESPACE").is_err() {
        builder = builder.namespace("gallery");
    }
    Ok(builder.ttl_jitter(0.1))
}

/// Targets replayed per cached route by the warmer.
pub const WARM_PER_ROUTE: usize = 200;

/// Registers the warmer `from-analytics`: at start and then every minute, it replays the
/// [`WARM_PER_ROUTE`] most requested targets of each cached route of the last hour through
/// `router` ([`cache_axum::warm_from_analytics`]), 4 at a time. On Redis the route analytics
/// outlive a restart, so a restarted service starts with its hot entries cached; on the
/// in-memory cache the first run finds no traffic yet. After a flush it runs again.
pub fn register_warmer(cache: &Cache, router: axum::Router) {
    cache.register_warmer(
        "from-analytics",
        WarmSchedule::new()
            .every(Duration::from_secs(60))
            .concurrency(4),
        move |warm| {
            let router = router.clone();
            async move {
                let _ = cache_axum::warm_from_analytics(
                    &warm,
                    router,
                    cache_core::analytics::Window::Hour,
                    WARM_PER_ROUTE,
                )
                .await;
            }
        },
    );
}

/// A started service.
#[derive(Debug)]
pub struct Running {
    /// The bound address (the real port when `ADDR` asked for port 0).
    pub addr: SocketAddr,
    /// What opening the database did.
    pub db: OpenReport,
    /// The cache.
    pub cache: Cache,
    /// The server task; it ends when the shutdown future completes.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Opens (seeding on first use) the database, builds the cache from `cache` with the database's
/// invalidation outbox ([`SqliteOutbox`]: every write's invalidation survives a Redis outage and
/// a crash of this instance), binds `config.addr` and serves until `shutdown` completes.
///
/// # Errors
/// Database or bind errors.
pub async fn start(
    config: &Config,
    cache: CacheBuilder,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Running, Box<dyn std::error::Error + Send + Sync>> {
    let (path, seed, readers) = (config.db_path.clone(), config.seed, config.readers);
    let (db, report) =
        tokio::task::spawn_blocking(move || Db::open(&path, seed, readers)).await??;
    let cache = cache
        .outbox(Arc::new(SqliteOutbox::new(db.clone())?))
        .build()?;
    let app = App::new(cache.clone(), db).with_uncached(&config.uncached)?;
    let router = routes::router(app, &config.admin_token);
    if config.warm {
        register_warmer(&cache, router.clone());
    }
    let listener = TcpListener::bind(&config.addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok(Running {
        addr,
        db: report,
        cache,
        task,
    })
}
