//! The in-process tier (L1): a bounded in-memory copy of hot entries in front of the backend,
//! kept coherent across instances by the backend's invalidation notices.
//!
//! # What it holds
//! The envelope bytes of fresh entries ([`Bytes`](bytes::Bytes), shared with the HTTP path: a
//! hit is still zero-copy), keyed by entry key, with their parsed header and the ids of their
//! tags. An entry enters L1 when this instance reads it fresh from the backend or stores it
//! after a load, with its **remaining fresh lifetime** as its L1 lifetime: it leaves L1 no later than it stops
//! being fresh in the backend (stale windows are always served from the backend). The tier is
//! bounded in bytes (a `moka` weigher: envelope + key + tags).
//!
//! Beside the bytes, an entry can keep its **decoded value** (one type per entry), for the typed
//! reads that return `Arc<T>` ([`Cache::get_or_load_arc`](crate::Cache::get_or_load_arc),
//! [`Cache::fetch_arc`](crate::Cache::fetch_arc)): the first such hit decodes and keeps the
//! value, the next ones share it without decoding. It is part of the entry, so it leaves with
//! it: every rule below (notices, local evictions, tickets, expiry, a lost subscription) applies
//! to it exactly as to the bytes. It is not counted in the byte bound. The methods returning an
//! owned `T` decode the bytes on every hit.
//!
//! A hit in L1 costs no round trip. It goes through the same classification as a backend hit
//! (`Header::freshness`, early refresh, withheld entries), so every path (typed values,
//! `#[cached]` functions, HTTP responses, fragments) gets it from one engine.
//!
//! Over HTTP (`cargo bench -p cache-tests --bench peers_http`, 64 keep-alive clients, two runs on
//! a loaded 2-core machine), the `cache-axum` response layer with L1 served 37,218 / 46,746
//! requests/s at 1 KiB and 28,350 / 28,660 at 16 KiB, 1.41x to 1.53x the layer without it: 0.54
//! to 0.61 of a static handler, 1.41 to 1.80 times hitbox, 1.20 to 2.56 times tower-http-cache.
//! Every hit of the measured slices was an L1 hit; the rest of the cost of such a hit is the
//! layer's own work (planning, key, response headers; profile in the README).
//!
//! # Coherence: notices published by the invalidation itself
//! Every invalidation (tags, keys, pattern deletes and `clear` through the namespace generation,
//! and every replay of a queued or outboxed one) runs as one script on the backend. That script
//! `PUBLISH`es a compact notice (see [`crate::backend::notice`]) on the namespace's channel
//! `{namespace}:l1` after its deletes, atomically with them: a replay publishes too, and a
//! listener can never see the notice before the deletes it announces. On Redis Cluster each
//! bucket's script publishes the notice of its own bucket (classic Pub/Sub reaches every node).
//! Each instance with L1 keeps one subscriber connection (to one node; for a cluster, any seed)
//! and applies every notice: `k` evicts an entry key, `t` a tag (entries carrying it), `g` (a
//! generation bump) every entry.
//!
//! *Why Pub/Sub and not RESP3 `CLIENT TRACKING`:* tracking invalidates by key read on a
//! connection, so a tag invalidation would be announced only as the deletes of the entries
//! it found in the index, and a generation bump not at all (pattern deletes `UNLINK` keys this
//! instance may never have read, long after the bump); it needs RESP3 on every connection and
//! the broadcast mode, and on a cluster one tracking connection per node. A notice published by
//! the invalidation script carries exactly the engine's own vocabulary (tags, keys,
//! generation), costs one message per invalidation (per bucket on a cluster), and is atomic with
//! it.
//!
//! # Guarantees
//! * **Read your writes.** The instance that invalidates evicts its own L1 (the same notice,
//!   applied locally) before the call returns, also when the invalidation was queued because the
//!   backend did not answer.
//! * **No fill from before an invalidation.** A fill takes a *ticket* (the L1 sequence number,
//!   bumped by every eviction) before it reads the backend or the versions of its load. Its
//!   insert is dropped if any eviction happened since, and an insert that races an eviction is
//!   removed again. Tags and `g` are checked lazily: an entry remembers its ticket, and a hit
//!   is refused when a notice of one of its tags (or a `g`) came after that ticket.
//! * **Lost channel.** Until the subscription is established, and from the moment it is lost
//!   (connection closed, a check unanswered within its deadline, missed notices), L1 is cleared
//!   and bypassed: reads go to the backend. The engine subscribes again by itself with backoff
//!   (50 ms doubling to 2 s) and clears L1 once more when it is back.
//! * **Propagation window.** Another instance may serve the old value from its L1 between the
//!   moment the invalidation ran and the moment its subscriber applied the notice: a loopback
//!   round trip plus scheduling (measured by `tests/benches/l1.rs` over 1,000 invalidations on
//!   loopback, 2-core machine: p50 162 µs, p99 5.1 ms, max 12 ms while shared with other jobs;
//!   p50 408 µs, p99 3.3 ms, max 5.4 ms when quiet; see the README). A
//!   subscriber connection that dies silently (no FIN) is noticed within the heartbeat
//!   (1 s) plus the connection deadline.
//! * **Checked at random with four instances.** The randomized consistency checker
//!   (`tests/benches/support/consistency.rs`) runs four instances with L1 on one `redis-server`
//!   and classifies every stale read by instance. In one run of `cargo bench -p cache-tests
//!   --bench consistency` (100,000 operations per mix, 2-core machine shared with other jobs):
//!   0 stale reads on the invalidating instance; on the other instances 392 of 95,076 reads
//!   (5% writes) and 28 of 73,960 (30% writes), each begun before that instance had applied the
//!   invalidation's notice, p50 0.15 ms / p99 2.2 ms / max 3.1 ms and p50 0.08 ms / max 0.8 ms
//!   after the invalidation returned (a second run: 514 and 15, latest 3.6 ms). The bounded form is
//!   `with_l1_no_stale_read_on_the_invalidating_instance_others_only_while_the_notice_travels_*`
//!   in `tests/tests/consistency.rs`.
//! * **Fills under many invalidations.** A fill's ticket is the tier-wide eviction sequence: a
//!   fill during which any notice was applied, for any entry, is not inserted (correct, never
//!   stale, but under a write-heavy mix the tier fills rarely: 1.9% of reads were L1 hits in the
//!   checker's 30%-writes mix over 32 ids, 41.7% with 5% writes).
//! * An explicit [`Cache::set`](crate::Cache::set) publishes a `k` notice after its store. A
//!   refresh (stale-while-revalidate, early refresh) does not: the old value stays in other
//!   instances' L1 no longer than its own freshness.

pub use crate::cache::l1::L1Status;
