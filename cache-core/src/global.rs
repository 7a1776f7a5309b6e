//! The process-wide default cache used by the macros.

use std::sync::OnceLock;

use crate::Cache;

static DEFAULT: OnceLock<Cache> = OnceLock::new();

/// Installs the process-wide default cache (used by `#[cached]` without a `cache = ...` option).
///
/// # Errors
/// Hands `cache` back if a default is already installed.
///
/// ```
/// let cache = cache_core::Cache::memory();
/// cache_core::install_default(cache).unwrap();
/// assert!(cache_core::default_cache().is_some());
/// assert!(cache_core::install_default(cache_core::Cache::memory()).is_err());
/// ```
pub fn install_default(cache: Cache) -> Result<(), Cache> {
    DEFAULT.set(cache)
}

/// The process-wide default cache, if one was installed.
pub fn default_cache() -> Option<&'static Cache> {
    DEFAULT.get()
}
