//! Invalidations that are never lost: the guarantee, and the durable [`Outbox`].
//!
//! A write that cannot invalidate its cache entries leaves the old data served until the TTL
//! runs out, up to hours. So an invalidation (`Cache::invalidate_tags`, `Cache::delete`,
//! `#[invalidates]`, a layer's `invalidate_on_write`, `PendingInvalidation::commit`) is
//! handled in three layers:
//!
//! 1. **Delivered, quickly.** It waits for the backend at most
//!    [`invalidation_timeout`](crate::CacheBuilder::invalidation_timeout) (250 ms by default,
//!    never the seconds of a connection timeout), so a write request is never held up by a slow
//!    or paused Redis.
//! 2. **Queued, in this process.** One that is not delivered in time is kept in a bounded queue
//!    ([`invalidation_queue`](crate::CacheBuilder::invalidation_queue), 10,000 by default), and
//!    the call returns [`CacheError::Queued`](crate::CacheError::Queued). A background task
//!    replays the queue as soon as the backend answers (it probes every few milliseconds; up to
//!    64 invalidations per round trip: they commute, so order does not matter). Until the queue
//!    is empty, **this instance serves no entry a queued invalidation concerns**: an entry
//!    carrying a queued tag (or under a queued key) is treated as a miss; no read waits for the
//!    queue. If the queue overflows, it is dropped and, once the backend answers, every entry of
//!    the namespace is retired (`clear`): a cold cache, never a wrong one.
//! 3. **Durable, for every instance.** The queue lives in the process, and another instance
//!    connected to Redis may serve the old entries until it is delivered; a crash loses it.
//!    With an [`Outbox`] ([`CacheBuilder::outbox`](crate::CacheBuilder::outbox)), the service
//!    records each invalidation in the same database transaction as the write; **every**
//!    instance replays the undelivered records at start, as soon as the backend answers again,
//!    and every [`outbox_poll`](crate::CacheBuilder::outbox_poll) (1 s by default). So an
//!    invalidation whose transaction committed is delivered even if the instance that made it
//!    crashes, by whichever instance reaches Redis first, within one poll interval of Redis
//!    being reachable.
//!
//! What is guaranteed, precisely:
//! * On the instance that made the write: a read that begins after the invalidation call
//!   returned (delivered or queued) never gets an entry the invalidation concerns.
//! * On other instances: without an outbox, they may serve such an entry while the backend is
//!   reachable for them and not for the writer (a network partition), until the writer's queue
//!   is delivered (milliseconds after the writer reaches Redis again). With an outbox, at most
//!   one [`outbox_poll`](crate::CacheBuilder::outbox_poll) after the transaction committed and
//!   any instance reaches Redis.
//! * Invalidations are idempotent (a version bump and deletes), so a replay that runs twice,
//!   or on several instances, is harmless.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use cache_core::durable::{Outbox, OutboxEntry};
//! use cache_core::error::BoxError;
//!
//! /// An outbox in a table `cache_outbox(id INTEGER PRIMARY KEY, tags TEXT)`; here in memory.
//! #[derive(Debug, Default)]
//! struct Table(Mutex<Vec<OutboxEntry>>);
//!
//! #[async_trait::async_trait]
//! impl Outbox for Table {
//!     async fn undelivered(&self, limit: usize) -> Result<Vec<OutboxEntry>, BoxError> {
//!         Ok(self.0.lock().unwrap().iter().take(limit).cloned().collect())
//!     }
//!     async fn delivered(&self, ids: &[u64]) -> Result<(), BoxError> {
//!         self.0.lock().unwrap().retain(|e| !ids.contains(&e.id));
//!         Ok(())
//!     }
//! }
//!
//! let outbox = Arc::new(Table::default());
//! // In the write's database transaction:
//! outbox.0.lock().unwrap().push(OutboxEntry::new(1, ["trig:7"]));
//! let cache = cache_core::Cache::builder().outbox(outbox).build().unwrap();
//! # drop(cache);
//! ```

use std::fmt;

use async_trait::async_trait;

use crate::error::BoxError;

/// One recorded invalidation: the tags to invalidate (as given to
/// [`Cache::invalidate_tags`](crate::Cache::invalidate_tags)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxEntry {
    /// The record's id, unique in the outbox.
    pub id: u64,
    /// The tags to invalidate.
    pub tags: Vec<String>,
}

impl OutboxEntry {
    /// A record with this id and these tags.
    pub fn new<I, S>(id: u64, tags: I) -> OutboxEntry
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        OutboxEntry {
            id,
            tags: tags.into_iter().map(Into::into).collect(),
        }
    }
}

/// A durable record of invalidations, written by the service in the same database transaction
/// as the data they concern, and read by every instance's cache until delivered.
///
/// Implement it over a table of the service's database (the `gallery` example has one for
/// SQLite). Both methods may fail (the database is down): the cache logs the error and tries
/// again at the next poll.
#[async_trait]
pub trait Outbox: Send + Sync + fmt::Debug + 'static {
    /// Records not yet delivered, oldest first, at most `limit`.
    async fn undelivered(&self, limit: usize) -> Result<Vec<OutboxEntry>, BoxError>;

    /// Marks records delivered (they may be deleted).
    async fn delivered(&self, ids: &[u64]) -> Result<(), BoxError>;
}
