//! Prometheus metrics (feature `metrics`): [`CacheMetrics`], shared by `cache-axum` and
//! `cache-actix` (each adds a route serving [`CacheMetrics::render`]).
//!
//! Each [`CacheMetrics`] owns its own [`PrometheusRecorder`] (no global recorder is installed),
//! and records through [`::metrics::with_local_recorder`], so several applications or tests in one
//! process never share series.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_histogram, histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::{Cache, CounterValues};

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Name of the request latency histogram recorded by the layers.
const DURATION: &str = "cache_request_duration_seconds";

/// Latency buckets (seconds) of `cache_request_duration_seconds`.
const BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Series for the unattributed part of a counter (e.g. deletes by pattern).
const OTHER: &str = "_other";

type Field = fn(&CounterValues) -> u64;

/// The engine counters exported with a `resource` label: name, help, field.
const COUNTERS: &[(&str, &str, Field)] = &[
    (
        "cache_hits_total",
        "Fresh values served from the cache.",
        |c| c.hits,
    ),
    (
        "cache_l1_hits_total",
        "Of the values served from the cache, those served by the in-process tier (L1).",
        |c| c.l1_hits,
    ),
    (
        "cache_misses_total",
        "Lookups that found nothing usable.",
        |c| c.misses,
    ),
    ("cache_stale_total", "Stale values served.", |c| c.stale),
    (
        "cache_bypasses_total",
        "Lookups skipped on request (bypass).",
        |c| c.bypasses,
    ),
    ("cache_sets_total", "Entries stored.", |c| c.sets),
    (
        "cache_deletes_total",
        "Entries deleted by key or pattern.",
        |c| c.deletes,
    ),
    (
        "cache_errors_total",
        "Backend errors, timeouts and undecodable entries.",
        |c| c.errors,
    ),
    (
        "cache_skips_total",
        "Values not stored (too large, or cache unavailable).",
        |c| c.skips,
    ),
    (
        "cache_rejected_fills_total",
        "Fills not stored because a tag was invalidated while they loaded.",
        |c| c.rejected_fills,
    ),
    (
        "cache_rejected_hits_total",
        "Entries found but not served (queued invalidation, or versions changed under eviction).",
        |c| c.rejected_hits,
    ),
    ("cache_loads_total", "Loader runs.", |c| c.loads),
    (
        "cache_bytes_read_total",
        "Bytes read from the backend on hits.",
        |c| c.bytes_read,
    ),
    (
        "cache_bytes_written_total",
        "Bytes written to the backend.",
        |c| c.bytes_written,
    ),
];

/// Requests per route template, recorded by the analytics layers (cached routes or not).
const ROUTE_REQUESTS: &str = "http_route_requests_total";
/// Latency per route template, recorded by the analytics layers.
const ROUTE_DURATION: &str = "http_route_duration_seconds";
/// Analytics events dropped because the recorder's channel was full.
#[cfg(feature = "analytics")]
const ANALYTICS_DROPPED: &str = "cache_analytics_dropped_total";

/// Tag invalidations are only counted in total: exported without labels.
const INVALIDATIONS: &str = "cache_invalidations_total";

struct Inner {
    cache: Cache,
    recorder: PrometheusRecorder,
    /// Last engine value seen per (metric, resource), to export monotonic counters even
    /// across `Cache::reset_stats`. The lock also serializes renders.
    last: Mutex<HashMap<(&'static str, String), u64>>,
}

/// Prometheus metrics for one [`Cache`] and the layers given this value.
///
/// At render time the engine counters of [`Cache::stats`] are exported as counters with a
/// `resource` label (`cache_hits_total`, `cache_l1_hits_total`, `cache_misses_total`, `cache_stale_total`,
/// `cache_bypasses_total`, `cache_sets_total`, `cache_deletes_total`, `cache_errors_total`,
/// `cache_skips_total`, `cache_rejected_fills_total`, `cache_rejected_hits_total`,
/// `cache_loads_total`,
/// `cache_bytes_read_total`, `cache_bytes_written_total`; a part counted in total only, such as
/// deletes by pattern, has `resource="_other"`), plus `cache_invalidations_total` without
/// labels. The exported counters only increase, as Prometheus expects: each render adds what
/// the engine counted since the previous render, and a value lower than the previous one (after
/// [`Cache::reset_stats`]) counts from zero again. Counts made between a reset and the next
/// render, up to the value before the reset, are not seen (the same limit as Prometheus's own
/// reset detection).
///
/// The adapters' layers built with `.metrics(..)` record the histogram
/// `cache_request_duration_seconds{resource, status}` (status `HIT`, `MISS`, `BYPASS`, `STALE`
/// or `SKIP`; requests the cache does not handle are not recorded) through
/// [`record_request`](CacheMetrics::record_request).
///
/// Histogram samples are buffered until the next [`render`](CacheMetrics::render) (or
/// [`upkeep`](CacheMetrics::upkeep)); scrape regularly, or call `upkeep` from a timer.
///
/// ```
/// use std::time::Duration;
/// use cache_core::metrics::CacheMetrics;
/// use cache_core::Cache;
///
/// let metrics = CacheMetrics::new(Cache::memory());
/// metrics.record_request("trig", "HIT", Duration::from_micros(300));
/// let text = metrics.render();
/// assert!(text.contains(r#"cache_request_duration_seconds_count{resource="trig",status="HIT"} 1"#));
/// ```
#[derive(Clone)]
pub struct CacheMetrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for CacheMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheMetrics").finish_non_exhaustive()
    }
}

impl CacheMetrics {
    /// Metrics for `cache`, with their own recorder.
    pub fn new(cache: Cache) -> CacheMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        ::metrics::with_local_recorder(&recorder, || {
            for (name, help, _) in COUNTERS {
                describe_counter!(*name, *help);
            }
            describe_counter!(INVALIDATIONS, "Entries removed through tag invalidations.");
            describe_counter!(
                ROUTE_REQUESTS,
                "Requests per route template (cached or not), recorded by the analytics layers."
            );
            describe_histogram!(
                ROUTE_DURATION,
                Unit::Seconds,
                "Duration of requests per route template (cached or not), recorded by the analytics layers."
            );
            #[cfg(feature = "analytics")]
            describe_counter!(
                ANALYTICS_DROPPED,
                "Analytics events dropped because the recorder's channel was full."
            );
            describe_histogram!(
                DURATION,
                Unit::Seconds,
                "Duration of requests handled by the cache layers, by resource and cache status."
            );
        });
        CacheMetrics {
            inner: Arc::new(Inner {
                cache,
                recorder,
                last: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records one request handled by a layer (`status` as in `X-Cache-Status`).
    pub fn record_request(&self, resource: &str, status: &str, elapsed: Duration) {
        ::metrics::with_local_recorder(&self.inner.recorder, || {
            histogram!(DURATION, "resource" => resource.to_owned(), "status" => status.to_owned())
                .record(elapsed.as_secs_f64());
        });
    }

    /// Records one request of a route template, cached or not (the analytics layers call this):
    /// `http_route_requests_total{method, route, status}` and
    /// `http_route_duration_seconds{method, route}`. `route` must be a template (bounded), never
    /// a raw path.
    pub fn record_route(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        ::metrics::with_local_recorder(&self.inner.recorder, || {
            counter!(ROUTE_REQUESTS, "method" => method.to_owned(), "route" => route.to_owned(), "status" => status.to_string())
                .increment(1);
            histogram!(ROUTE_DURATION, "method" => method.to_owned(), "route" => route.to_owned())
                .record(elapsed.as_secs_f64());
        });
    }

    /// Drains buffered histogram samples (rendering does it too).
    pub fn upkeep(&self) {
        self.inner.recorder.handle().run_upkeep();
    }

    /// The Prometheus text exposition of the engine counters and the layers' histograms.
    pub fn render(&self) -> String {
        let snapshot = self.inner.cache.stats();
        let mut last = self
            .inner
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut bump = |name: &'static str, resource: Option<&str>, value: u64, always: bool| {
            let slot = (name, resource.unwrap_or_default().to_owned());
            if !always && value == 0 && !last.contains_key(&slot) {
                return;
            }
            let prev = last.entry(slot).or_insert(0);
            // A value below the last one means the stats were reset: count from zero again.
            let delta = if value >= *prev { value - *prev } else { value };
            *prev = value;
            match resource {
                Some(r) => counter!(name, "resource" => r.to_owned()).increment(delta),
                None => counter!(name).increment(delta),
            }
        };
        ::metrics::with_local_recorder(&self.inner.recorder, || {
            for (name, _, field) in COUNTERS {
                let mut attributed = 0u64;
                for (resource, values) in &snapshot.resources {
                    let v = field(values);
                    attributed = attributed.saturating_add(v);
                    bump(name, Some(resource), v, true);
                }
                let other = field(&snapshot.total).saturating_sub(attributed);
                bump(name, Some(OTHER), other, false);
            }
            bump(INVALIDATIONS, None, snapshot.total.invalidations, true);
            #[cfg(feature = "analytics")]
            bump(
                ANALYTICS_DROPPED,
                None,
                self.inner.cache.analytics().stats().dropped,
                true,
            );
        });
        drop(last);
        self.inner.recorder.handle().render()
    }
}
