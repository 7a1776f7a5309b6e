//! The process-wide default cache used by the macros.

use std::sync::OnceLock;

use crate::Cache;

static DEFAULT: OnceLock<Cache> = OnceLock::new();

/// Installs the process-wide default cache (used by `#[cached]` and `#[invalidates]` without a
/// `cache = ...` option). Call it once, at start, before serving requests; until then such
/// functions run uncached and invalidate nothing (logged once as `cache_no_default_cache`).
///
/// # Errors
/// [`AlreadyInstalled`] if a default is already installed; it is a normal error type, so `?`
/// converts it (to `Box<dyn Error>`, `anyhow::Error`, ...), and it hands the refused cache back
/// with [`AlreadyInstalled::into_cache`].
///
/// ```
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     cache_core::install_default(cache_core::Cache::memory())?;
///     assert!(cache_core::default_cache().is_some());
///
///     let again = cache_core::install_default(cache_core::Cache::memory());
///     let refused = again.unwrap_err();
///     assert_eq!(refused.to_string(), "a default cache is already installed");
///     let _cache_back: cache_core::Cache = refused.into_cache();
///     Ok(())
/// }
/// ```
pub fn install_default(cache: Cache) -> Result<(), AlreadyInstalled> {
    DEFAULT
        .set(cache)
        .map_err(|cache| AlreadyInstalled { cache })
}

/// [`install_default`] was called when a default cache was already installed. The first one
/// stays; this one is handed back by [`AlreadyInstalled::into_cache`].
#[derive(Debug, thiserror::Error)]
#[error("a default cache is already installed")]
pub struct AlreadyInstalled {
    cache: Cache,
}

impl AlreadyInstalled {
    /// The cache that was not installed.
    pub fn into_cache(self) -> Cache {
        self.cache
    }
}

/// The process-wide default cache, if one was installed.
pub fn default_cache() -> Option<&'static Cache> {
    DEFAULT.get()
}
