//! Actix-web integration for `cache-core`.
//!
//! **Status:** placeholder. This crate will hold the same capabilities as `cache-axum`, with the
//! same builder and option names, as Actix `Transform`/`Service` middleware (without requiring
//! `Send`) and an admin `Scope`: request context for `#[cached]` handlers, whole-response
//! caching, ETag / `304`, bypass, admin endpoints and Prometheus metrics.

pub use cache_core;
