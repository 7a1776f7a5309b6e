//! `tracing` setup for tests.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Installs a global `tracing` subscriber for tests; safe to call many times.
///
/// Output goes through the test harness's captured writer (shown only for
/// failing tests, or with `--nocapture`), filtered by `RUST_LOG`
/// (e.g. `RUST_LOG=cache_core=debug`); without `RUST_LOG` only warnings and
/// errors are shown. If another subscriber was already installed it is kept.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        // `try_init` fails only when a global subscriber already exists,
        // which is fine: keep that one.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
