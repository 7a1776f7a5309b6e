//! Time series of the route aggregates, for charts: [`Analytics::timeline`].
//!
//! (The design is in the docs of that method.)

use serde::Serialize;

use super::store::{MinuteAgg, RouteKey, RouteMinutes};
use super::{hist, Analytics, Outcome, Window};
use crate::error::CacheError;

impl Window {
    /// The length of a [`Analytics::timeline`] bucket, in minutes: 1 for `5m` and `1h`, 15 for
    /// `1d`.
    pub fn bucket_minutes(self) -> u64 {
        match self {
            Window::FiveMinutes | Window::Hour => 1,
            Window::Day => 15,
        }
    }
}

/// One bucket of a route's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TimelinePoint {
    /// Start of the bucket (ms since the epoch; the window's start for a clipped first bucket).
    pub start_ms: u64,
    /// Minutes of the window the bucket covers (the bucket length, fewer for a clipped first
    /// bucket).
    pub minutes: u64,
    /// Requests.
    pub requests: u64,
    /// Requests per second over the bucket.
    pub per_second: f64,
    /// Hits, fresh and stale.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Hits over lookups (hits, stale, misses), as in
    /// [`RouteStats::hit_rate`](super::RouteStats::hit_rate); `None` without lookups.
    pub hit_rate: Option<f64>,
    /// 5xx responses.
    pub errors: u64,
    /// Response bytes.
    pub bytes: u64,
    /// Median latency over every outcome (ms, within 2 %); `None` without requests.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency (ms, within 2 %); `None` without requests.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency (ms, within 2 %); `None` without requests.
    pub p99_ms: Option<f64>,
}

/// One route's buckets over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RouteTimeline {
    /// The method.
    pub method: String,
    /// The route template.
    pub route: String,
    /// Requests over the whole window.
    pub requests: u64,
    /// Every bucket of the window, oldest first.
    pub points: Vec<TimelinePoint>,
}

/// The routes' time series over a window: [`Analytics::timeline`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Timeline {
    /// The window.
    pub window: Window,
    /// Bucket length in seconds ([`Window::bucket_minutes`] × 60).
    pub bucket_secs: u64,
    /// Start of the window (ms since the epoch, a minute boundary).
    pub from_ms: u64,
    /// End of the window (ms since the epoch: the end of the current minute).
    pub to_ms: u64,
    /// Routes with traffic in the window, most requested first (ties by template, then method).
    pub routes: Vec<RouteTimeline>,
}

impl RouteKey {
    /// Whether `filter` names this route: `METHOD template` or the template alone.
    pub(crate) fn matches(&self, filter: &str) -> bool {
        let filter = filter.trim();
        self.route == filter
            || filter.split_once(' ').is_some_and(|(m, r)| {
                m.eq_ignore_ascii_case(&self.method) && r.trim() == self.route
            })
    }
}

impl Analytics {
    /// Per-route time series over `window`, for charts: requests, hit rate and latency
    /// percentiles per bucket. `route` keeps only the route it names (`GET /trigs/{id}`, or the
    /// template alone for every method).
    ///
    /// A window is cut into buckets of [`Window::bucket_minutes`] (1 minute for `5m` and `1h`,
    /// 15 minutes for `1d`, so a day is at most 97 points). Buckets are aligned on multiples of
    /// their length since the Unix epoch (a chart does not reshape every minute); the first one
    /// is clipped to the window. Every bucket of the window is present, empty ones with zero
    /// requests and `null` rates and latencies, so a chart's x axis is the list itself.
    ///
    /// Both stores hand over the same per-route, per-minute counters (those of
    /// [`routes`](Self::routes)) and one function merges them into buckets: the memory store and
    /// Redis answer alike by construction. On Redis the read is the route index
    /// (`ZRANGE BYSCORE`), then one pipeline per route (one hash slot): `HGETALL` of each minute
    /// of the window, at most 1,440 per route for `1d`. No `KEYS`, no `SCAN`: the reads are
    /// bounded by the application's routes and the window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::analytics::{Event, Outcome, Window};
    /// use cache_core::Cache;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::memory();
    /// let analytics = cache.analytics();
    /// let mut event = Event::new("GET", "/trigs/{id}", analytics.now_ms());
    /// event.outcome = Outcome::Hit;
    /// event.latency = Duration::from_millis(3);
    /// analytics.record(event);
    /// analytics.flush().await;
    ///
    /// let timeline = analytics.timeline(Window::FiveMinutes, None).await.unwrap();
    /// assert_eq!(timeline.bucket_secs, 60);
    /// let route = &timeline.routes[0];
    /// assert_eq!(route.route, "/trigs/{id}");
    /// assert_eq!(route.points.len(), 5);
    /// let last = route.points.last().unwrap();
    /// assert_eq!((last.requests, last.hit_rate), (1, Some(1.0)));
    /// # });
    /// ```
    ///
    /// # Errors
    /// The store's error (Redis unreachable).
    pub async fn timeline(
        &self,
        window: Window,
        route: Option<&str>,
    ) -> Result<Timeline, CacheError> {
        let (from, to, _) = self.range(window);
        let raw = self
            .inner
            .shared
            .store
            .route_minutes(from, to, route)
            .await?;
        Ok(build(window, from, to, raw))
    }
}

/// The one aggregation rule of both stores: per-minute counters of each route (minutes outside
/// `from..=to` are ignored) into the window's buckets.
pub(crate) fn build(window: Window, from: u64, to: u64, raw: Vec<RouteMinutes>) -> Timeline {
    let len = window.bucket_minutes().max(1);
    let first = from / len * len;
    let starts: Vec<u64> = (first..=to).step_by(len as usize).collect();
    let mut routes = Vec::new();
    for (key, minutes) in raw {
        let mut buckets = vec![MinuteAgg::default(); starts.len()];
        for (minute, agg) in &minutes {
            if *minute < from || *minute > to {
                continue;
            }
            let i = ((minute - first) / len) as usize;
            buckets[i].merge(agg);
        }
        let requests: u64 = buckets.iter().map(|b| b.requests).sum();
        if requests == 0 {
            continue;
        }
        let points = starts
            .iter()
            .zip(&buckets)
            .map(|(start, agg)| {
                let lo = (*start).max(from);
                let hi = (start + len - 1).min(to);
                point(lo, hi - lo + 1, agg)
            })
            .collect();
        routes.push(RouteTimeline {
            method: key.method,
            route: key.route,
            requests,
            points,
        });
    }
    routes.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.route.cmp(&b.route))
            .then_with(|| a.method.cmp(&b.method))
    });
    Timeline {
        window,
        bucket_secs: len * 60,
        from_ms: from * 60_000,
        to_ms: (to + 1) * 60_000,
        routes,
    }
}

fn point(start_min: u64, minutes: u64, agg: &MinuteAgg) -> TimelinePoint {
    let c = |o: Outcome| agg.outcomes[o.index()];
    let hits = c(Outcome::Hit) + c(Outcome::Stale);
    let misses = c(Outcome::Miss);
    let mut all = hist::Histogram::default();
    for h in &agg.hist {
        all.merge(h);
    }
    let q = |q: f64| all.quantile(q).map(|us| us / 1000.0);
    TimelinePoint {
        start_ms: start_min * 60_000,
        minutes,
        requests: agg.requests,
        per_second: agg.requests as f64 / (minutes * 60) as f64,
        hits,
        misses,
        hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        errors: agg.errors,
        bytes: agg.bytes,
        p50_ms: q(0.5),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::analytics::Event;

    fn agg(events: &[(Outcome, u64)]) -> MinuteAgg {
        let mut a = MinuteAgg::default();
        for (o, ms) in events {
            let mut e = Event::new("GET", "/x", 0);
            e.outcome = *o;
            e.latency = Duration::from_millis(*ms);
            e.bytes = 10;
            a.add(&e);
        }
        a
    }

    fn key(route: &str) -> RouteKey {
        RouteKey {
            method: "GET".into(),
            route: route.into(),
        }
    }

    #[test]
    fn minute_buckets_cover_the_window_and_empty_ones_are_null() {
        let raw = vec![(
            key("/x"),
            vec![
                (100, agg(&[(Outcome::Hit, 2)])),
                (
                    102,
                    agg(&[
                        (Outcome::Miss, 40),
                        (Outcome::Miss, 40),
                        (Outcome::Hit, 2),
                        (Outcome::Hit, 2),
                    ]),
                ),
                // Outside the window: ignored.
                (95, agg(&[(Outcome::Miss, 40)])),
            ],
        )];
        let t = build(Window::FiveMinutes, 100, 104, raw);
        assert_eq!(
            (t.bucket_secs, t.from_ms, t.to_ms),
            (60, 6_000_000, 6_300_000)
        );
        let p = &t.routes[0].points;
        assert_eq!(p.len(), 5);
        assert_eq!(
            p.iter().map(|p| p.requests).collect::<Vec<_>>(),
            [1, 0, 4, 0, 0]
        );
        assert_eq!(t.routes[0].requests, 5);
        assert_eq!(p[0].hit_rate, Some(1.0));
        assert_eq!(p[2].hit_rate, Some(0.5));
        assert_eq!((p[1].hit_rate, p[1].p50_ms), (None, None));
        let p99 = p[2].p99_ms.unwrap();
        assert!((p99 - 40.0).abs() <= 0.8, "{p99}");
        let p50 = p[2].p50_ms.unwrap();
        assert!((p50 - 2.0).abs() <= 0.04, "{p50}");
        assert_eq!((p[2].hits, p[2].misses, p[2].bytes), (2, 2, 40));
        assert!((p[2].per_second - 4.0 / 60.0).abs() < 1e-12);
    }

    #[test]
    fn day_buckets_are_fifteen_minutes_aligned_on_the_epoch_first_one_clipped() {
        // A day ending at minute 10_000: from 8_561, so the first bucket (8_550..8_564) is
        // clipped to 4 minutes.
        let (from, to) = (10_000 - 1439, 10_000);
        let raw = vec![(
            key("/x"),
            vec![
                (from, agg(&[(Outcome::Hit, 1)])),
                (to, agg(&[(Outcome::Hit, 1)])),
            ],
        )];
        let t = build(Window::Day, from, to, raw);
        let p = &t.routes[0].points;
        assert_eq!(t.bucket_secs, 900);
        assert!(p.len() <= 97, "{}", p.len());
        assert_eq!((p[0].start_ms, p[0].minutes), (from * 60_000, 4));
        assert!(p[1..].iter().all(|p| (p.start_ms / 60_000) % 15 == 0));
        assert_eq!(p.last().unwrap().minutes, 10_000 % 15 + 1);
        assert_eq!(p.iter().map(|p| p.minutes).sum::<u64>(), 1440);
        assert_eq!((p[0].requests, p.last().unwrap().requests), (1, 1));
    }

    #[test]
    fn routes_most_requested_first_and_idle_routes_left_out() {
        let raw = vec![
            (key("/a"), vec![(10, agg(&[(Outcome::None, 1)]))]),
            (
                key("/b"),
                vec![(10, agg(&[(Outcome::None, 1), (Outcome::None, 1)]))],
            ),
            (key("/idle"), vec![(1, agg(&[(Outcome::None, 1)]))]),
        ];
        let t = build(Window::FiveMinutes, 8, 12, raw);
        let names: Vec<&str> = t.routes.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(names, ["/b", "/a"]);
    }

    #[test]
    fn route_filter_matches_method_and_template_or_template() {
        let k = key("/trigs/{id}");
        assert!(k.matches("GET /trigs/{id}"));
        assert!(k.matches("get /trigs/{id}"));
        assert!(k.matches("/trigs/{id}"));
        assert!(!k.matches("POST /trigs/{id}"));
        assert!(!k.matches("/trigs"));
    }
}
