//! Single-flight: concurrent misses on one key inside a process share one loader run.
//!
//! The first caller becomes the leader and loads; the others wait for the leader's encoded value
//! (the envelope bytes) and decode it themselves, so `T` needs no `Clone`. If the leader fails,
//! or is cancelled (its future dropped), the followers are told at once and each falls back to
//! running its own loader: a waiter is never left hanging.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub(crate) enum FlightState {
    Pending,
    Done(Bytes),
    Failed,
}

#[derive(Debug)]
struct Flight {
    tx: watch::Sender<FlightState>,
    waiters: AtomicUsize,
}

#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

pub(crate) enum Role<'a> {
    Leader(LeaderGuard<'a>),
    Follower(Follower),
}

pub(crate) struct Follower {
    rx: watch::Receiver<FlightState>,
    flight: Arc<Flight>,
}

impl Follower {
    /// Waits for the leader; `None` if it failed or was cancelled.
    pub(crate) async fn wait(mut self) -> Option<Bytes> {
        let result = match self
            .rx
            .wait_for(|s| !matches!(s, FlightState::Pending))
            .await
        {
            Ok(state) => match &*state {
                FlightState::Done(bytes) => Some(bytes.clone()),
                _ => None,
            },
            Err(_) => None,
        };
        self.flight.waiters.fetch_sub(1, Ordering::Relaxed);
        result
    }
}

pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
    done: bool,
}

impl LeaderGuard<'_> {
    /// Publishes the value to the followers and ends the flight.
    pub(crate) fn complete(mut self, bytes: Bytes) {
        self.finish(FlightState::Done(bytes));
    }

    fn finish(&mut self, state: FlightState) {
        if self.done {
            return;
        }
        self.done = true;
        {
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
        self.flight.tx.send_replace(state);
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        self.finish(FlightState::Failed);
    }
}

impl Flights {
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
        let (tx, _) = watch::channel(FlightState::Pending);
        let flight = Arc::new(Flight {
            tx,
            waiters: AtomicUsize::new(0),
        });
        map.insert(key.to_owned(), flight.clone());
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.to_owned(),
            flight,
            done: false,
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

    #[tokio::test]
    async fn followers_receive_the_leaders_bytes() {
        let flights = Flights::default();
        let Role::Leader(leader) = flights.join("k") else {
            panic!("first caller must lead")
        };
        let Role::Follower(f) = flights.join("k") else {
            panic!("second caller must follow")
        };
        assert_eq!(flights.waiters("k"), 1);
        leader.complete(Bytes::from_static(b"v"));
        assert_eq!(f.wait().await.as_deref(), Some(&b"v"[..]));
        assert!(!flights.in_flight("k"));
    }

    #[tokio::test]
    async fn dropped_leader_releases_followers_with_none() {
        let flights = Flights::default();
        let leader = flights.join("k");
        let Role::Follower(f) = flights.join("k") else {
            panic!("second caller must follow")
        };
        drop(leader);
        assert_eq!(f.wait().await, None);
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }
}
