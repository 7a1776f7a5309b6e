//! Circuit breaker: stop calling a backend that keeps failing.
//!
//! After `threshold` consecutive failures the breaker *opens*: calls fail at once with
//! [`CacheError::CircuitOpen`](crate::CacheError::CircuitOpen), costing an atomic load instead of a
//! deadline. After `cooldown` one call is let through as a probe (*half-open*); its success closes
//! the breaker, its failure opens it for another cooldown. The closed state is a single relaxed
//! atomic load on the hot path.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the breaker allows for the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Closed: call normally.
    Call,
    /// Half-open: this call is the probe.
    Probe,
    /// Open: do not call.
    Reject,
}

/// Breaker state, as reported by health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are rejected until the cooldown ends.
    Open,
    /// The cooldown ended; a probe decides.
    HalfOpen,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    base: Instant,
    /// Milliseconds since `base` until which the breaker is open; 0 = closed.
    open_until: AtomicU64,
    failures: AtomicU32,
    probing: AtomicBool,
    threshold: u32,
    cooldown: Duration,
}

/// A change the caller should log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Opened,
    Closed,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            base: Instant::now(),
            open_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    fn now(&self) -> u64 {
        // +1 so that "open until" is never 0 (0 means closed).
        self.base.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn permit(&self) -> Permit {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return Permit::Call;
        }
        if self.now() < until {
            return Permit::Reject;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            Permit::Probe
        } else {
            Permit::Reject
        }
    }

    pub(crate) fn success(&self) -> Transition {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            return Transition::Closed;
        }
        Transition::None
    }

    pub(crate) fn failure(&self, was_probe: bool) -> Transition {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if was_probe || failures >= self.threshold {
            let already_open = self.open_until.load(Ordering::Relaxed) != 0;
            self.open_until.store(
                self.now() + self.cooldown.as_millis() as u64,
                Ordering::Release,
            );
            self.probing.store(false, Ordering::Release);
            if !already_open {
                return Transition::Opened;
            }
        }
        Transition::None
    }

    pub(crate) fn state(&self) -> BreakerState {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            BreakerState::Closed
        } else if self.now() < until {
            BreakerState::Open
        } else {
            BreakerState::HalfOpen
        }
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_rejects() {
        let b = Breaker::new(3, Duration::from_secs(60));
        assert_eq!(b.failure(false), Transition::None);
        assert_eq!(b.failure(false), Transition::None);
        assert_eq!(b.permit(), Permit::Call);
        assert_eq!(b.failure(false), Transition::Opened);
        assert_eq!(b.permit(), Permit::Reject);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.failure(false);
        b.success();
        assert_eq!(b.failure(false), Transition::None);
        assert_eq!(b.permit(), Permit::Call);
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let b = Breaker::new(1, Duration::ZERO);
        assert_eq!(b.failure(false), Transition::Opened);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.permit(), Permit::Reject);
        assert_eq!(b.success(), Transition::Closed);
        assert_eq!(b.permit(), Permit::Call);
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(5, Duration::from_secs(60));
        for _ in 0..5 {
            b.failure(false);
        }
        // Simulate the cooldown ending.
        b.open_until.store(1, Ordering::Relaxed);
        assert_eq!(b.permit(), Permit::Probe);
        b.failure(true);
        assert_eq!(b.permit(), Permit::Reject);
    }
}
