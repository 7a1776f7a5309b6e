//! The cache advisor: which routes to cache, with which TTL and scope, ranked by the time
//! caching would save per byte of cache.
//!
//! # The question, and the well-known answers
//! "Is there a general algorithm, well accepted, for choosing what to cache?" There is a family
//! of them, from the web-proxy and CDN literature, each answering "which objects are worth their
//! space":
//!
//! * **LRU / LFU** keep what was used recently / often; they ignore what a miss costs and how big
//!   an object is.
//! * **GreedyDual-Size** (Cao and Irani, 1997) and **GreedyDual-Size-Frequency (GDSF)**
//!   (Cherkasova, 1998) give each object the value `frequency x cost / size` (plus an ageing
//!   term) and evict the lowest: an object is worth its bytes when it is asked often and is
//!   expensive to fetch again. Cost-aware LRU variants (LRU-SP, GD-Wheel) apply the same idea.
//! * **TinyLFU / W-TinyLFU** (Einziger, Friedman and Manes, 2015; Caffeine, moka) decide
//!   *admission*: a new object gets in only if its estimated frequency beats the victim's.
//!
//! These run per object inside a cache. Choosing what to *annotate* is the same trade-off one
//! level up, per route: this advisor applies the GDSF value function to routes, with the cost of
//! a miss measured (the route's latency without the cache minus its latency on a hit) and the
//! frequency discounted by the hits the route's writes leave possible.
//!
//! # What the advisor computes, per route
//! From a [`RouteObservation`] (the analytics of a window):
//!
//! * request rate `λ` (requests/s) and the keys it spreads over `K` (distinct path+query, or
//!   distinct users for per-user routes), so each key is asked at `λ/K`;
//! * the rate `μ` at which one of its keys is invalidated (the keys its tags' invalidations
//!   reached, over its keys and the time; see
//!   [`Analytics::observations`](crate::analytics::Analytics::observations));
//! * the suggested TTL `T`: the mean interval between invalidations of an entry, `1/μ` (entries
//!   rarely outlive it anyway, and it bounds the staleness of writes that bypass invalidation),
//!   clamped to [30 s, 24 h]; 1 h when no invalidation was seen or the route's writes are
//!   unknown (a route not cached yet: its tags are learnt once the cache serves it);
//! * the expected hit ratio: with requests and invalidations as Poisson processes, an entry is
//!   filled by a miss and lives `min(T, invalidation)`, so a key sees on average
//!   `H = (λ/K) (1 - e^{-μT}) / μ` hits per fill (`(λ/K) T` without writes); a fill whose
//!   load (the miss latency `L`) is outlived by an invalidation is not stored (the race guard
//!   of [`crate::tags`]), so only `e^{-μL}` of the fills count, and the hit ratio is
//!   `H' / (1 + H')` with `H' = e^{-μL} H`: a route invalidated more often than it loads
//!   (`μL` large) gets almost no hits, however often it is read;
//! * cold misses bound it: each of the `K` keys misses at least once per TTL, so over the
//!   window `W` the `N` requests give at most `1 - K max(1, W/T) / N` hits (a long tail of keys
//!   asked once each is all misses); the expected hit ratio is the smaller of the two;
//! * the time saved per second `λ x hit ratio x (miss latency - hit latency)`, and the score:
//!   that saving per KiB of cache the route would hold (`K x` its mean response size, capped at
//!   the keys a TTL's worth of requests can fill): GDSF's `frequency x cost / size`. For a
//!   route the cache serves already, the saving counts only the hit ratio above the one
//!   observed (`λ x (expected - observed) x gain`, nothing within 5 points of the expected
//!   ratio): what the suggestion would add, so routes cached well already rank last.
//!
//! Routes are ranked by score; each [`Suggestion`] says its TTL, its scope (per-user when the
//! responses differ per user, else shared) and why, in one line.
//!
//! # Assumptions (and when they fail)
//! * Requests and writes are roughly Poisson over the window, and key popularity is uniform
//!   within a route, except for the cold-miss bound, which takes the keys seen in the window as
//!   they were seen: over a short window, a skewed route with a long tail is bounded by its
//!   tail (every key asked once is a miss); over a window as long as the TTL, the bound is what
//!   a warm cache would see.
//! * Latency without the cache is the route's miss (or uncached) latency; the hit latency, when
//!   no hit was observed, is [`AdvisorSettings::assumed_hit_ms`] (a Redis round trip).
//! * The window is representative: a route with too few requests ([`AdvisorSettings::min_requests`])
//!   is not ranked.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::advisor::{advise, AdvisorSettings, RouteObservation, Scope};
//!
//! let obs = RouteObservation {
//!     route: "GET /trigs/{id}".into(),
//!     requests: 6_000,
//!     window: Duration::from_secs(600),
//!     miss_latency_ms: 48.0,
//!     hit_latency_ms: None,
//!     distinct_keys: 200,
//!     mean_bytes: 1_200.0,
//!     key_invalidations_per_s: Some(1.0 / 1_200.0),
//!     differs_per_user: false,
//!     observed_hit_rate: None,
//! };
//! let s = &advise(&[obs], &AdvisorSettings::default())[0];
//! assert_eq!(s.scope, Scope::Shared);
//! assert_eq!(s.ttl, Duration::from_secs(1_200));
//! assert!(s.expected_hit_ratio > 0.9);
//! ```

use std::time::Duration;

use serde::Serialize;

/// What the analytics observed of one route over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteObservation {
    /// Method and route template, e.g. `GET /trigs/{id}`.
    pub route: String,
    /// Requests in the window.
    pub requests: u64,
    /// The window's length.
    pub window: Duration,
    /// Latency of a request served by the handler (a miss, or any request of an uncached
    /// route), p50, in milliseconds.
    pub miss_latency_ms: f64,
    /// Latency of a hit, p50, in milliseconds, when hits were observed.
    pub hit_latency_ms: Option<f64>,
    /// Distinct keys the requests spread over (path and query; users for per-user routes), at
    /// least 1.
    pub distinct_keys: u64,
    /// Mean response size in bytes.
    pub mean_bytes: f64,
    /// How often one entry of the route is invalidated, per second: `Some(0.0)` when none was
    /// seen, `None` when unknown (the route's tags are not known: it is not cached yet).
    pub key_invalidations_per_s: Option<f64>,
    /// Whether the responses are per user (marked private or cached per user).
    pub differs_per_user: bool,
    /// The hit rate observed, when the route is cached already.
    pub observed_hit_rate: Option<f64>,
}

/// Shared or per-user entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One entry per request, for every user.
    Shared,
    /// One entry per request and user (`scope = "user"`, `Cache-Control: private`).
    PerUser,
}

/// One route's suggestion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// The route.
    pub route: String,
    /// Rank score: milliseconds saved per second per KiB of cache.
    pub score: f64,
    /// Suggested TTL.
    #[serde(serialize_with = "as_secs")]
    pub ttl: Duration,
    /// Suggested scope.
    pub scope: Scope,
    /// Expected hit ratio with that TTL under the observed writes.
    pub expected_hit_ratio: f64,
    /// Expected time saved, in milliseconds per second of traffic (beyond the hits observed,
    /// for a route cached already).
    pub saved_ms_per_s: f64,
    /// Expected cache size, in bytes.
    pub cache_bytes: f64,
    /// The hit rate observed, when the route is cached already.
    pub observed_hit_rate: Option<f64>,
    /// The suggestion in one line.
    pub why: String,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// The advisor's knobs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AdvisorSettings {
    /// Hit latency assumed when no hit was observed, in milliseconds (default 1.0).
    pub assumed_hit_ms: f64,
    /// Routes with fewer requests in the window are not ranked (default 20).
    pub min_requests: u64,
    /// Shortest suggested TTL (default 30 s).
    pub min_ttl: Duration,
    /// Longest suggested TTL (default 24 h).
    pub max_ttl: Duration,
    /// TTL when no invalidation was observed (default 1 h).
    pub default_ttl: Duration,
}

impl Default for AdvisorSettings {
    fn default() -> Self {
        AdvisorSettings {
            assumed_hit_ms: 1.0,
            min_requests: 20,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(3600),
        }
    }
}

/// The suggested TTL: the mean interval between invalidations of an entry (`1/mu`), clamped;
/// the default without any.
fn suggested_ttl(mu: f64, s: &AdvisorSettings) -> Duration {
    if mu <= f64::EPSILON {
        return s.default_ttl;
    }
    Duration::from_secs_f64((1.0 / mu).min(s.max_ttl.as_secs_f64())).clamp(s.min_ttl, s.max_ttl)
}

/// Expected hits per fill of one key asked at `rate` (1/s), invalidated at `mu` (1/s), with
/// TTL `ttl` (s): `rate (1 - e^{-mu ttl}) / mu`, or `rate ttl` without invalidations.
fn hits_per_fill(rate: f64, mu: f64, ttl: f64) -> f64 {
    if mu <= f64::EPSILON {
        rate * ttl
    } else {
        rate * (1.0 - (-mu * ttl).exp()) / mu
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Ranks `routes` by the time caching would save per byte (see the module docs), best first.
/// Routes below [`AdvisorSettings::min_requests`], or whose handler is not slower than a hit,
/// are left out.
pub fn advise(routes: &[RouteObservation], settings: &AdvisorSettings) -> Vec<Suggestion> {
    let mut out: Vec<Suggestion> = routes
        .iter()
        .filter(|r| r.requests >= settings.min_requests && !r.window.is_zero())
        .filter_map(|r| {
            let window = r.window.as_secs_f64();
            let rate = r.requests as f64 / window;
            let keys = r.distinct_keys.max(1) as f64;
            let hit_ms = r.hit_latency_ms.unwrap_or(settings.assumed_hit_ms);
            let gain_ms = r.miss_latency_ms - hit_ms;
            if gain_ms <= 0.0 {
                return None;
            }
            let mu = r.key_invalidations_per_s.unwrap_or(0.0).max(0.0);
            let ttl = suggested_ttl(mu, settings);
            // A fill outlived by an invalidation is not stored (the race guard): with the
            // handler taking `miss latency`, a fill survives with probability e^{-mu L}.
            let survives = (-mu * r.miss_latency_ms / 1000.0).exp();
            let h = survives * hits_per_fill(rate / keys, mu, ttl.as_secs_f64());
            let cold = 1.0 - keys * (window / ttl.as_secs_f64()).max(1.0) / r.requests as f64;
            let hit_ratio = (h / (1.0 + h)).min(cold.max(0.0));
            // A route served by the cache already saves only what its hit ratio can still gain.
            // Within 5 points of the expected ratio, a cached route is as cached as it gets
            // (the difference is within what a window's counts can tell).
            let more = match r.observed_hit_rate {
                Some(seen) if hit_ratio - seen < 0.05 => 0.0,
                seen => hit_ratio - seen.unwrap_or(0.0),
            };
            let saved = rate * more * gain_ms;
            // Entries alive at once: every key, or as many as a TTL's worth of misses can fill.
            let live = keys.min((rate * ttl.as_secs_f64()).max(1.0));
            let bytes = live * r.mean_bytes.max(1.0);
            let score = saved / (bytes / 1024.0);
            let scope = if r.differs_per_user {
                Scope::PerUser
            } else {
                Scope::Shared
            };
            let writes = match r.key_invalidations_per_s {
                Some(_) if mu > 0.0 => format!(
                    "an entry is invalidated every ~{}",
                    human(Duration::from_secs_f64((1.0 / mu).min(1e9).round()))
                ),
                Some(_) => "no invalidation seen".to_owned(),
                None => "writes unknown until cached".to_owned(),
            };
            let now = match r.observed_hit_rate {
                Some(h) => format!(" (now {:.0}%)", h * 100.0),
                None => String::new(),
            };
            let why = format!(
                "{}: {:.1} req/s over {} keys, handler {:.0} ms vs hit {:.1} ms, {writes}: cache {} \
                 for {}, expect {:.0}% hits{now}, saving {:.0} ms/s for {:.0} KiB",
                r.route,
                rate,
                r.distinct_keys.max(1),
                r.miss_latency_ms,
                hit_ms,
                match scope {
                    Scope::Shared => "shared",
                    Scope::PerUser => "per user",
                },
                human(ttl),
                hit_ratio * 100.0,
                saved,
                bytes / 1024.0,
            );
            Some(Suggestion {
                route: r.route.clone(),
                score,
                ttl,
                scope,
                expected_hit_ratio: hit_ratio,
                saved_ms_per_s: saved,
                cache_bytes: bytes,
                observed_hit_rate: r.observed_hit_rate,
                why,
            })
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(route: &str, requests: u64, miss_ms: f64, keys: u64, bytes: f64) -> RouteObservation {
        RouteObservation {
            route: route.into(),
            requests,
            window: Duration::from_secs(300),
            miss_latency_ms: miss_ms,
            hit_latency_ms: None,
            distinct_keys: keys,
            mean_bytes: bytes,
            key_invalidations_per_s: Some(0.0),
            differs_per_user: false,
            observed_hit_rate: None,
        }
    }

    #[test]
    fn frequent_slow_small_routes_rank_first() {
        let routes = [
            obs("GET /cheap", 3_000, 2.0, 10, 1_000.0),
            obs("GET /slow-rare", 30, 200.0, 3, 1_000.0),
            // Slow and frequent, but every request for another key: all cold misses.
            obs("GET /slow-tail", 3_000, 200.0, 3_000, 1_000.0),
            obs("GET /slow-hot", 3_000, 80.0, 10, 1_000.0),
            obs("GET /slow-hot-huge", 3_000, 80.0, 10, 1_000_000.0),
        ];
        let ranked: Vec<String> = advise(&routes, &AdvisorSettings::default())
            .into_iter()
            .map(|s| s.route)
            .collect();
        // Frequent and slow first; the same route with 1000x the bytes per entry after the
        // others (its saving costs 1000x the memory); rare or fast routes in between; a route
        // that never asks for a key twice saves nothing.
        assert_eq!(
            ranked,
            [
                "GET /slow-hot",
                "GET /slow-rare",
                "GET /cheap",
                "GET /slow-hot-huge",
                "GET /slow-tail"
            ]
        );
    }

    #[test]
    fn frequent_invalidation_lowers_the_expected_hit_ratio_and_sets_the_ttl() {
        let quiet = obs("GET /a", 3_000, 50.0, 100, 500.0);
        let mut busy = quiet.clone();
        busy.route = "GET /b".into();
        busy.key_invalidations_per_s = Some(1.0 / 40.0);
        let s = advise(&[quiet, busy], &AdvisorSettings::default());
        let (a, b) = (&s[0], &s[1]);
        assert_eq!((a.route.as_str(), b.route.as_str()), ("GET /a", "GET /b"));
        assert!(a.expected_hit_ratio > b.expected_hit_ratio);
        assert_eq!(a.ttl, Duration::from_secs(3600));
        assert_eq!(b.ttl, Duration::from_secs(40));
        assert!(b.why.contains("invalidated every ~40s"), "{}", b.why);
        // 0.1 req/s per key, invalidated every 40 s, TTL 40 s: H = 0.1 (1 - e^-1) / (1/40),
        // and a 50 ms load survives with e^{-0.05/40}.
        let h = (-0.05f64 / 40.0).exp() * 0.1 * (1.0 - (-1.0f64).exp()) * 40.0;
        assert!((b.expected_hit_ratio - h / (1.0 + h)).abs() < 1e-9);
    }

    #[test]
    fn already_cached_routes_rank_by_what_more_caching_would_save() {
        let uncached = obs("GET /uncached", 3_000, 50.0, 100, 500.0);
        let mut cached_well = obs("GET /cached-well", 3_000, 50.0, 100, 500.0);
        cached_well.observed_hit_rate = Some(0.96);
        let mut cached_poorly = obs("GET /cached-poorly", 3_000, 50.0, 100, 500.0);
        cached_poorly.observed_hit_rate = Some(0.5);
        let s = advise(
            &[cached_well, cached_poorly, uncached],
            &AdvisorSettings::default(),
        );
        let order: Vec<&str> = s.iter().map(|s| s.route.as_str()).collect();
        assert_eq!(
            order,
            ["GET /uncached", "GET /cached-poorly", "GET /cached-well"]
        );
        let full = s[0].saved_ms_per_s;
        let ratio = s[0].expected_hit_ratio;
        assert!((s[1].saved_ms_per_s - full * (ratio - 0.5) / ratio).abs() < 1e-6);
        assert_eq!(s[2].saved_ms_per_s, 0.0);
        assert!(s[2].why.contains("(now 96%)"), "{}", s[2].why);
    }

    #[test]
    fn a_route_invalidated_faster_than_it_loads_expects_almost_no_hits() {
        // Read 10 times a second per key, invalidated 15 times a second, loading in 1.2 s:
        // nearly every fill is outlived by an invalidation and rejected.
        let mut r = obs("GET /tag-counts", 3_000, 1_200.0, 1, 10_000.0);
        r.key_invalidations_per_s = Some(15.0);
        let s = advise(&[r], &AdvisorSettings::default());
        assert!(s[0].expected_hit_ratio < 1e-6, "{:?}", s[0]);
        assert!(s[0].why.contains("expect 0% hits"), "{}", s[0].why);
    }

    #[test]
    fn every_key_misses_once_a_long_tail_bounds_the_hit_ratio() {
        // 1000 requests over 600 keys in 5 minutes, TTL 1 h: at most 400 hits.
        let tail = obs("GET /items/{id}", 1_000, 100.0, 600, 1_000.0);
        let s = advise(&[tail], &AdvisorSettings::default());
        assert!((s[0].expected_hit_ratio - 0.4).abs() < 1e-9, "{:?}", s[0]);
        // Invalidated every 40 s (TTL 40 s): over 300 s each key misses 7.5 times.
        let mut busy = obs("GET /lists", 10_000, 100.0, 100, 1_000.0);
        busy.key_invalidations_per_s = Some(1.0 / 40.0);
        let s = advise(&[busy], &AdvisorSettings::default());
        assert!(s[0].expected_hit_ratio <= 1.0 - 100.0 * 7.5 / 10_000.0 + 1e-9);
    }

    #[test]
    fn the_expected_hit_ratio_follows_the_poisson_model() {
        // One key at 1 req/s, no writes, TTL 1 h: 3600 hits per fill.
        assert!((hits_per_fill(1.0, 0.0, 3600.0) - 3600.0).abs() < 1e-9);
        // Invalidated every 10 s on average with a long TTL: about 10 hits per fill.
        assert!((hits_per_fill(1.0, 0.1, 1e9) - 10.0).abs() < 1e-6);
    }

    #[test]
    fn per_user_responses_are_suggested_per_user_and_no_gain_is_left_out() {
        let mut r = obs("GET /me", 600, 30.0, 50, 800.0);
        r.differs_per_user = true;
        let fast = obs("GET /fast", 600, 0.5, 5, 100.0);
        let few = obs("GET /few", 3, 500.0, 1, 100.0);
        let s = advise(&[r, fast, few], &AdvisorSettings::default());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].scope, Scope::PerUser);
        assert!(s[0].why.contains("per user"));
    }
}
