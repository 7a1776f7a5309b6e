//! Redis caching for web APIs: canonical keys, TTLs, codecs, tag-based invalidation, stampede
//! protection, fail-open, statistics, and two backends (Redis and in-memory) with one semantics.
//!
//! # Quick start
//! ```
//! use std::time::Duration;
//! use cache_core::{Cache, Policy};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // `Cache::from_env()` reads REDIS_URL, CACHE_ENABLED, ...; without REDIS_URL it is in-memory.
//! let cache = Cache::builder().namespace("trigs").build()?;
//!
//! let key = cache.key("trig").id(123).param("include", "logs").build();
//! let policy = Policy::ttl(Duration::from_secs(24 * 3600)).tag("trig:123");
//! let trig: String = cache
//!     .get_or_load(&key, policy, || async { "loaded from the database".to_string() })
//!     .await;
//! assert_eq!(trig, "loaded from the database");
//!
//! // A write elsewhere invalidates by tag: every entry tagged `trig:123` is gone.
//! cache.invalidate_tags(&["trig:123"]).await?;
//! assert_eq!(cache.get::<String>(&key).await, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # What never happens
//! * A cache error reaching your user: read-through calls fall through to the loader on any
//!   backend error, timeout (every call has a deadline, 50 ms by default) or corrupt entry.
//! * A dead Redis costing a deadline per request: after consecutive failures the circuit breaker
//!   skips Redis for a cool-down, then probes it; the connection is re-made automatically.
//! * `KEYS`: tag invalidation uses per-tag indexes, pattern deletes use `SCAN` + `UNLINK`.
//! * A fill that began before an invalidation being stored after it (see [`tags`]).
//!
//! # Modules
//! | module | concern |
//! | --- | --- |
//! | [`key`] | canonical keys `namespace:v{version}:resource[:id][:user=..][:q=hash]` |
//! | [`ttl`] | human durations, jitter |
//! | [`codec`] | envelope format, JSON / MessagePack, compression |
//! | [`backend`] | the backend trait, Redis and in-memory backends |
//! | [`tags`] | invalidation design, deferred invalidation |
//! | [`fragments`] | many entries in one round trip, merged per request |
//! | [`config`] | builder options and environment variables |
//!
//! # Features
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `macros` | yes | `#[cached]` and `#[invalidates]` |
//! | `msgpack` | no | [`Codec::MessagePack`](codec::Codec) |
//! | `compression` | no | LZ4 above [`CacheBuilder::compress_above`] |
//! | `http` | no | framework-agnostic HTTP caching rules and the whole-response cache steps for the adapters (`http`, `admin` modules) |
//! | `metrics` | no | Prometheus metrics shared by the adapters (`metrics` module) |
//! | `analytics` | no | route analytics: per-request events, bounded per-route aggregates, queries (`analytics` module) |
//!
//! # Deploying
//! * **TLS**: a `rediss://` URL connects with rustls, verifying the server's certificate
//!   against the bundled Mozilla roots; a private CA, mutual TLS and (for test servers only) no
//!   verification are builder options and `REDIS_TLS_*` variables ([`config`],
//!   [`backend::RedisTls`]).
//! * **Authentication**: user and password from the URL, or from
//!   [`CacheBuilder::redis_username`] / [`CacheBuilder::redis_password`] (`REDIS_USERNAME`,
//!   `REDIS_PASSWORD`), which win. A refused TLS handshake or password is a
//!   [`CacheError::Tls`] / [`CacheError::Auth`] naming the fix; the cache falls through.
//! * **An ACL user** limited to the namespace:
//!   [`RedisBackend::acl_rules`](backend::RedisBackend::acl_rules) gives its rules.
//!
//! No password, client key or key path appears in `Debug` output, errors, logs, health reports
//! or stats.
//!
//! # Observability
//! `tracing` events, by name: `cache_hit`, `cache_miss_stored`, `cache_bypass`, `cache_skip`,
//! `cache_store_error`, `cache_invalidated`, `cache_delete_pattern`, `cache_redis_connected`,
//! `cache_redis_connection_failed` (ERROR for TLS and authentication failures),
//! `cache_redis_acl_limited` (a command the ACL user may not run, once each) and
//! `cache_redis_tls_insecure` (verification off). Each event also carries its name in an `event`
//! field, which the stock `tracing-subscriber` formatters print: `event="cache_hit"
//! key="trigs:v1:trig:123" age_ms=45` in text, and with `.json().flatten_event(true)` one JSON
//! object per line, `{"event":"cache_hit","key":"trigs:v1:trig:123","age_ms":45,...}`. Hits and
//! misses are `DEBUG`; invalidations `INFO`; failures `WARN` or `ERROR`. Counters in total and
//! per resource: [`Cache::stats`].

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "http")]
pub mod admin;
pub mod advisor;
#[cfg(feature = "analytics")]
pub mod analytics;
pub mod backend;
mod breaker;
mod cache;
#[cfg(feature = "cli")]
pub mod cli;
pub mod codec;
pub mod config;
pub mod durable;
pub mod error;
mod flight;
pub mod fragments;
mod global;
#[cfg(feature = "http")]
pub mod http;
pub mod key;
pub mod l1;
#[cfg(feature = "macros")]
pub mod macros_guide;
#[cfg(feature = "metrics")]
pub mod metrics;
mod policy;
mod stats;
pub mod tags;
pub mod ttl;
pub mod warm;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use crate::breaker::BreakerState;
pub use crate::cache::{Cache, Entry, EntryInfo, Health, HealthStatus, KeyCensus, ResourceKeys};
pub use crate::codec::Codec;
pub use crate::config::CacheBuilder;
pub use crate::error::{CacheError, ConfigError};
pub use crate::fragments::Fragment;
pub use crate::global::{default_cache, install_default, AlreadyInstalled};
pub use crate::key::{CacheKey, KeyBuilder, KeySpace};
pub use crate::l1::L1Status;
pub use crate::policy::{CacheStatus, Fetched, Policy, Tier};
pub use crate::stats::{CounterValues, StatsSnapshot};
pub use crate::tags::{CommitError, PendingInvalidation};
pub use crate::ttl::{parse_duration, IntoTtl};

#[cfg(feature = "macros")]
pub use cache_macros::{cached, invalidates};
