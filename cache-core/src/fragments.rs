//! Fragments: many entries fetched in one round trip, only the missing ones loaded, then merged.
//!
//! [`Cache::get_many_or_load`](crate::Cache::get_many_or_load) takes a list of [`Fragment`]s (a key and its policy), reads them
//! all with one `MGET`, calls the loader **once** with the indices of the missing fragments, and
//! stores the loaded values in one round trip (each guarded by its tags, as for single entries).
//!
//! # Worked example: a user's gallery, per generation type (the first seed)
//! A gallery page shows, for each of 4 generation types, the user's own items and the community's
//! items. Caching the merged page per user would store the community items once *per user*, and a
//! request for one type would drag all four along. Instead cache 8 fragments:
//!
//! * `gallery:user=42:type=t` for the user's own items of type `t` (tag `user:42:items`),
//! * `gallery:community:type=t` for the community items of type `t`, shared by every user
//!   (tag `community:type:t`).
//!
//! The community fragments are stored once, whoever asked first; a user's write invalidates only
//! that user's fragments; a new community item invalidates one type's shared fragment.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{Cache, Fragment, Policy};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::memory();
//! const TYPES: [&str; 4] = ["image", "video", "audio", "text"];
//!
//! fn fragments(cache: &Cache, user: u64) -> Vec<Fragment> {
//!     let ttl = Duration::from_secs(300);
//!     let mut out = Vec::new();
//!     for t in TYPES {
//!         out.push(Fragment::new(
//!             cache.key("gallery").user(user).param("type", t).build(),
//!             Policy::ttl(ttl).tag(format!("user:{user}:items")),
//!         ));
//!         out.push(Fragment::new(
//!             cache.key("gallery").id("community").param("type", t).build(),
//!             Policy::ttl(ttl).tag(format!("community:type:{t}")),
//!         ));
//!     }
//!     out
//! }
//!
//! // The loader gets the indices of the missing fragments and loads them in one batch.
//! async fn load(user: u64, missing: Vec<usize>) -> Result<Vec<Vec<String>>, std::io::Error> {
//!     Ok(missing
//!         .iter()
//!         .map(|&i| {
//!             let t = TYPES[i / 2];
//!             if i % 2 == 0 { vec![format!("{t} by user {user}")] } else { vec![format!("{t} by everyone")] }
//!         })
//!         .collect())
//! }
//!
//! let alice = cache.get_many_or_load(&fragments(&cache, 1), |m| load(1, m)).await.unwrap();
//! // Bob's request loads only his 4 own fragments: the 4 community ones are shared.
//! let mut loaded = 0;
//! let bob = cache
//!     .get_many_or_load(&fragments(&cache, 2), |m| { loaded = m.len(); load(2, m) })
//!     .await
//!     .unwrap();
//! assert_eq!(loaded, 4);
//! // Merge per type: own items first, then the community's.
//! let merged: Vec<String> = bob.chunks(2).flat_map(|pair| pair.concat()).collect();
//! assert_eq!(merged[0], "image by user 2");
//! assert_eq!(merged[1], "image by everyone");
//! assert_eq!(alice[1], bob[1]);
//! # });
//! ```

use crate::key::CacheKey;
use crate::policy::Policy;

/// One entry of a [`Cache::get_many_or_load`](crate::Cache::get_many_or_load) call.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// The entry's key.
    pub key: CacheKey,
    /// TTL, tags and windows used when the fragment is stored.
    pub policy: Policy,
}

impl Fragment {
    /// A fragment with this key and policy.
    pub fn new(key: CacheKey, policy: impl Into<Policy>) -> Fragment {
        Fragment {
            key,
            policy: policy.into(),
        }
    }
}
