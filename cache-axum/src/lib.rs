//! Axum integration for `cache-core`.
//!
//! **Status:** placeholder. This crate will hold, as tower `Layer`s and an admin `Router`:
//! the request-context layer that `#[cached]` handlers use (bypass flag, user scope,
//! `X-Cache-*` headers), a whole-response cache layer following RFC 9111's rules for a
//! server-side cache (GET/HEAD only, cacheable statuses, `Vary`, no `Set-Cookie`/`private`),
//! ETag / `304 Not Modified` answers from cache, admin endpoints (stats, flush, invalidate,
//! health) behind a guard, and Prometheus metrics.

pub use cache_core;
