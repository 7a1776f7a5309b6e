//! Single-flight: concurrent misses on one key inside a process share one loader run.
//!
//! The first caller becomes the leader and loads; the others wait for the flight to *land*.
//!
//! * **Freshness.** Before landing, the leader [seals](LeaderGuard::seal) the flight: it leaves
//!   the map, so no caller can join it any more. Then the engine checks that no invalidation of
//!   the entry's tags (or key, or namespace) happened since the leader read the versions before
//!   its loader ran. Every follower joined before the seal, so an invalidation that returned
//!   before a follower began is seen by that check; if there was one, the flight lands
//!   [`Landing::Retry`] and the followers load again instead of receiving a value older than an
//!   invalidation they must observe.
//! * **Failures.** A leader's error is shared with the followers when the caller knows how
//!   ([`Landing::Error`]); otherwise the flight lands [`Landing::Failed`] and the followers load
//!   again *through a new flight*, so a failing loader still runs one at a time per key, never
//!   once per waiting caller. A cancelled leader (its future dropped) lands `Failed` too: a
//!   waiter is never left hanging.
//!
//! Followers decode the leader's encoded value (the envelope bytes) themselves, so values need
//! no `Clone`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

/// A leader's error, type-erased, for the followers of its flight.
pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

/// How a flight ended, as seen by its followers.
#[derive(Clone)]
pub(crate) enum Landing {
    /// The leader's encoded value, valid for every follower.
    Value(Bytes),
    /// The leader's error, shared.
    Error(Shared),
    /// The leader failed with an error it could not share, or was cancelled.
    Failed,
    /// The leader's value may predate an invalidation a follower must see: load again.
    Retry,
}

impl std::fmt::Debug for Landing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Landing::Value(_) => "Value",
            Landing::Error(_) => "Error",
            Landing::Failed => "Failed",
            Landing::Retry => "Retry",
        })
    }
}

#[derive(Debug)]
struct Flight {
    tx: watch::Sender<Option<Landing>>,
    waiters: AtomicUsize,
}

/// Number of stripes of the stored-value counters (a power of two).
const STRIPES: usize = 256;

#[derive(Debug)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
    /// Per key stripe, how many leaders stored a value: a caller notes its stripe's count
    /// before its lookup; if it becomes a leader after the count moved, a flight it did not
    /// join may have stored the value after its lookup missed, so it looks again before loading
    /// (1,000 concurrent cold requests load once even when some of them were slow to join).
    stored: Box<[AtomicU64]>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            map: Mutex::default(),
            stored: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

pub(crate) enum Role<'a> {
    Leader(LeaderGuard<'a>),
    Follower(Follower),
}

pub(crate) struct Follower {
    rx: watch::Receiver<Option<Landing>>,
    flight: Arc<Flight>,
}

impl Follower {
    /// Waits for the flight to land.
    pub(crate) async fn wait(mut self) -> Landing {
        match self.rx.wait_for(Option::is_some).await {
            Ok(state) => state.clone().unwrap_or(Landing::Failed),
            Err(_) => Landing::Failed,
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.flight.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
    sealed: bool,
    landed: bool,
}

impl LeaderGuard<'_> {
    /// Removes the flight from the map (no caller can join it any more) and returns how many
    /// followers wait on it.
    pub(crate) fn seal(&mut self) -> usize {
        if !self.sealed {
            self.sealed = true;
            let mut map = self
                .flights
                .map
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        self.flight.waiters.load(Ordering::Relaxed)
    }

    /// Seals the flight (if not yet) and tells the followers how it ended.
    pub(crate) fn land(mut self, landing: Landing) {
        self.finish(landing);
    }

    fn finish(&mut self, landing: Landing) {
        if self.landed {
            return;
        }
        self.landed = true;
        self.seal();
        self.flight.tx.send_replace(Some(landing));
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        self.finish(Landing::Failed);
    }
}

impl Flights {
    fn stripe(&self, key: &str) -> &AtomicU64 {
        &self.stored[xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize & (STRIPES - 1)]
    }

    /// The stored-value count of `key`'s stripe (note it before looking `key` up).
    pub(crate) fn stored_count(&self, key: &str) -> u64 {
        self.stripe(key).load(Ordering::Acquire)
    }

    /// Records that a leader stored a value under `key` (before it seals its flight).
    pub(crate) fn note_stored(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::AcqRel);
    }

    /// Joins the flight for `key`, or starts one.
    pub(crate) fn join(&self, key: &str) -> Role<'_> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = map.get(key) {
            flight.waiters.fetch_add(1, Ordering::Relaxed);
            return Role::Follower(Follower {
                rx: flight.tx.subscribe(),
                flight: flight.clone(),
            });
        }
        let (tx, _) = watch::channel(None);
        let flight = Arc::new(Flight {
            tx,
            waiters: AtomicUsize::new(0),
        });
        map.insert(key.to_owned(), flight.clone());
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.to_owned(),
            flight,
            sealed: false,
            landed: false,
        })
    }

    /// Whether a load is in flight for `key`.
    #[cfg(test)]
    pub(crate) fn in_flight(&self, key: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// How many callers wait on the load of `key` (0 if none is in flight).
    pub(crate) fn waiters(&self, key: &str) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map_or(0, |f| f.waiters.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader<'a>(flights: &'a Flights, key: &str) -> LeaderGuard<'a> {
        match flights.join(key) {
            Role::Leader(l) => l,
            Role::Follower(_) => panic!("first caller must lead"),
        }
    }

    fn follower(flights: &Flights, key: &str) -> Follower {
        match flights.join(key) {
            Role::Follower(f) => f,
            Role::Leader(_) => panic!("second caller must follow"),
        }
    }

    #[tokio::test]
    async fn followers_receive_the_leaders_bytes() {
        let flights = Flights::default();
        let leader = leader(&flights, "k");
        let f = follower(&flights, "k");
        assert_eq!(flights.waiters("k"), 1);
        leader.land(Landing::Value(Bytes::from_static(b"v")));
        assert!(matches!(f.wait().await, Landing::Value(b) if b == "v"));
        assert!(!flights.in_flight("k"));
    }

    #[tokio::test]
    async fn dropped_leader_releases_followers_with_failed() {
        let flights = Flights::default();
        let leader = leader(&flights, "k");
        let f = follower(&flights, "k");
        drop(leader);
        assert!(matches!(f.wait().await, Landing::Failed));
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_sealed_flight_takes_no_new_followers() {
        let flights = Flights::default();
        let mut first = leader(&flights, "k");
        let f = follower(&flights, "k");
        assert_eq!(first.seal(), 1);
        // A caller arriving after the seal starts a new flight instead of joining the old one.
        let second = leader(&flights, "k");
        first.land(Landing::Retry);
        assert!(matches!(f.wait().await, Landing::Retry));
        drop(second);
    }

    #[tokio::test]
    async fn dropped_followers_are_not_counted() {
        let flights = Flights::default();
        let mut leader = leader(&flights, "k");
        let f = follower(&flights, "k");
        drop(f);
        assert_eq!(leader.seal(), 0);
    }
}
