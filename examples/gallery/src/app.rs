//! The application state and its cached queries, writes and merged view.
//!
//! The annotations here are on **query functions** (methods of [`App`]) rather than on handlers
//! where the handler must decide something per request after loading (who may see a private
//! item), or where the key must be canonicalized first (`GET /content`). The cached value is the
//! data; authorization stays per request.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{cached, Cache, CacheStatus, Fragment, PendingInvalidation, Policy};
use serde::{Deserialize, Serialize};

use crate::db::{self, Db};
use crate::model::{
    ApiError, ContentFilter, ContentItem, NewContent, Page, WriteOutcome, GENERATION_TYPES,
};

/// Items per type and side in the merged view.
pub const FEED_ITEMS_PER_TYPE: u32 = 8;

/// The state every handler gets: the cache handle and the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    /// The cache (Redis, in-memory, or disabled).
    pub cache: Cache,
    /// The database.
    pub db: Db,
    /// Resources whose caching is turned off (`GALLERY_UNCACHED`; see [`App::cache_for`]).
    uncached: Arc<BTreeSet<String>>,
    /// A disabled cache, for those resources.
    off: Cache,
}

/// The cached resources of the service, as `GALLERY_UNCACHED` names them: one per cached read
/// of the table in the crate docs (`user_gallery` is the merged view, both its fragments).
pub const RESOURCES: [&str; 8] = [
    "generation_types",
    "tags",
    "gallery",
    "content_list",
    "content_item",
    "user_content_items",
    "user_content_items_auto",
    "user_gallery",
];

/// One generation type of the merged view: the user's own items, then the community's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedSection {
    /// The generation type.
    pub generation_type: String,
    /// The user's newest items of this type (public and private).
    pub own: Vec<ContentItem>,
    /// The community's hottest items of this type (shared by every user).
    pub community: Vec<ContentItem>,
}

/// `GET /users/{id}/gallery`: one section per requested generation type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserGallery {
    /// The user.
    pub user_id: i64,
    /// One section per generation type.
    pub sections: Vec<FeedSection>,
}

/// How the merged view was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentReport {
    /// Fragments in the request.
    pub total: usize,
    /// Fragments loaded from the database (the rest came from the cache).
    pub loaded: usize,
    /// Whether the cache was bypassed on request.
    pub bypassed: bool,
    /// Whether the cache was unavailable (or off), so every fragment came from the database
    /// unstored.
    pub skipped: bool,
}

impl App {
    /// The state of a service on `cache` and `db`, every resource cached.
    pub fn new(cache: Cache, db: Db) -> App {
        App {
            cache,
            db,
            uncached: Arc::default(),
            off: Cache::builder()
                .enabled(false)
                .build()
                .unwrap_or_else(|_| Cache::memory()),
        }
    }

    /// Turns caching off for `resources` (names of [`RESOURCES`]): their reads go to the
    /// database every time, as on a service that does not cache them. The advisor experiment
    /// of `gallery-load --advisor` uses it; everything else is unchanged (writes still
    /// invalidate).
    ///
    /// # Errors
    /// The first name that is not one of [`RESOURCES`].
    pub fn with_uncached<I, S>(mut self, resources: I) -> Result<App, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for r in resources {
            let r = r.as_ref().trim();
            if r.is_empty() {
                continue;
            }
            if !RESOURCES.contains(&r) {
                return Err(format!(
                    "GALLERY_UNCACHED: {r:?} is not one of {}",
                    RESOURCES.join(", ")
                ));
            }
            set.insert(r.to_owned());
        }
        self.uncached = Arc::new(set);
        Ok(self)
    }

    /// Whether `resource` is cached (not turned off with [`App::with_uncached`], and the cache
    /// is enabled).
    pub fn caches(&self, resource: &str) -> bool {
        self.cache_for(resource).is_enabled()
    }

    /// The cache of `resource`: the service's, or a disabled one when it is turned off.
    pub fn cache_for(&self, resource: &str) -> &Cache {
        if self.uncached.contains(resource) {
            &self.off
        } else {
            &self.cache
        }
    }

    // -------------------------------------------------------------------------- cached reads

    /// The canonical `GET /content` query (the seed's `get_unified_content_paginated`).
    ///
    /// `#[cached]` is here, on the query function, not on the handler: the handler first turns
    /// the raw query string into a [`ContentFilter`] (sorted, defaulted, lowercased), and the
    /// key is that canonical filter (`key = [filter]`), so `?tag=Cats&page=1` and `?tag=cats`
    /// share one entry. `scope` is the entry's one invalidation tag (see
    /// [`ContentFilter::invalidation_tag`]); it is derived from the filter, so it is left out of
    /// the key. 5 minutes is the seed's recommended TTL; writes make entries fresh sooner.
    #[cached(
        resource = "content_list",
        ttl = "5m",
        key = [filter],
        tags = ["{scope}"],
        cache = self.cache_for("content_list")
    )]
    pub async fn content_page(
        &self,
        filter: ContentFilter,
        scope: String,
    ) -> Result<Page<ContentItem>, ApiError> {
        let _ = &scope;
        Ok(self
            .db
            .read(move |conn| db::content_page(conn, &filter))
            .await?)
    }

    /// One item, public or private, shared by every viewer (`GET /content/{id}` decides who may
    /// see it after this returns: the cached value is the data, not the authorization).
    ///
    /// Key `content_item:{id}`, tag `content:{id}` (every write to the item invalidates it).
    /// `Err(NotFound)` is not cached, so an id created later is found at once. An hour: items
    /// change only through the writes below.
    #[cached(
        resource = "content_item",
        ttl = "1h",
        key = "{id}",
        tags = ["content:{id}"],
        cache = self.cache_for("content_item")
    )]
    pub async fn content_item(&self, id: i64) -> Result<ContentItem, ApiError> {
        self.db
            .read(move |conn| db::content_item(conn, id))
            .await?
            .ok_or(ApiError::NotFound)
    }

    /// The community gallery of one generation type: a **shared fragment** of the merged view
    /// (see [`App::user_gallery`]); not annotated, because fragments are read many at once with
    /// [`Cache::get_many_or_load`].
    async fn load_fragments(
        &self,
        user: i64,
        wanted: Vec<(usize, &'static str, bool)>,
    ) -> Result<Vec<Vec<ContentItem>>, ApiError> {
        Ok(self
            .db
            .read(move |conn| {
                let mut out = Vec::with_capacity(wanted.len());
                for (_, gt, own) in wanted {
                    out.push(if own {
                        db::user_items_of_type(conn, user, gt, FEED_ITEMS_PER_TYPE)?
                    } else {
                        db::gallery_page(conn, Some(gt), 1, FEED_ITEMS_PER_TYPE)?.items
                    });
                }
                Ok(out)
            })
            .await?)
    }

    /// The fragments of the merged view for `user` and `types`: per type, the user's own items
    /// (key `user_gallery:type:{t}:user={user}`, tag `user:{user}:items`, 10 minutes) and the
    /// community's (key `community:type:{t}`, tag `gallery:type:{t}`, 5 minutes), in that order.
    pub fn fragments(&self, user: i64, types: &[&'static str]) -> Vec<Fragment> {
        let mut out = Vec::with_capacity(types.len() * 2);
        for t in types {
            out.push(Fragment::new(
                self.cache_for("user_gallery")
                    .key("user_gallery")
                    .id("type")
                    .id(*t)
                    .user(user)
                    .build(),
                Policy::ttl(Duration::from_secs(600)).tag(format!("user:{user}:items")),
            ));
            out.push(Fragment::new(
                self.cache_for("user_gallery")
                    .key("community")
                    .id("type")
                    .id(*t)
                    .build(),
                Policy::ttl(Duration::from_secs(300)).tag(format!("gallery:type:{t}")),
            ));
        }
        out
    }

    /// The merged view of `GET /users/{id}/gallery` (the first seed's design): for each of the
    /// requested generation types, the user's own items and the community's items are cached as
    /// **separate fragments** and merged per request.
    ///
    /// Why not cache the merged page per user: the community part would be stored once per user,
    /// and a request for one type would drag all four along. With fragments the 4 community
    /// fragments are stored once for everybody, a user's write invalidates only that user's
    /// fragments (`user:{id}:items`), and a write to an engaged item of type `t` only the shared
    /// fragment of `t` (`gallery:type:{t}`). [`Cache::fetch_many`] reads every fragment in
    /// one round trip (`MGET`) and calls the loader once with the missing ones, which we load
    /// with one database job.
    ///
    /// With `bypass`, everything is loaded from the database and nothing is read or stored.
    ///
    /// # Errors
    /// A database error.
    pub async fn user_gallery(
        &self,
        user: i64,
        types: &[&'static str],
        bypass: bool,
    ) -> Result<(UserGallery, FragmentReport), ApiError> {
        let fragments = self.fragments(user, types);
        let plan = |missing: &[usize]| -> Vec<(usize, &'static str, bool)> {
            missing
                .iter()
                .map(|&i| (i, types[i / 2], i % 2 == 0))
                .collect()
        };
        let (values, loaded, skipped) = if bypass {
            let all: Vec<usize> = (0..fragments.len()).collect();
            (
                self.load_fragments(user, plan(&all)).await?,
                fragments.len(),
                false,
            )
        } else {
            let mut loaded = 0;
            let fetched = self
                .cache_for("user_gallery")
                .fetch_many(&fragments, |missing| {
                    loaded = missing.len();
                    self.load_fragments(user, plan(&missing))
                })
                .await?;
            let skipped = fetched.iter().any(|f| f.status == CacheStatus::Skip);
            (
                fetched.into_iter().map(|f| f.value).collect::<Vec<_>>(),
                loaded,
                skipped,
            )
        };
        let mut values = values.into_iter();
        let sections = types
            .iter()
            .map(|t| FeedSection {
                generation_type: (*t).to_owned(),
                own: values.next().unwrap_or_default(),
                community: values.next().unwrap_or_default(),
            })
            .collect();
        Ok((
            UserGallery {
                user_id: user,
                sections,
            },
            FragmentReport {
                total: fragments.len(),
                loaded,
                bypassed: bypass,
                skipped,
            },
        ))
    }

    // -------------------------------------------------------------------------- writes

    /// Creates an item: [`db::create_content`] (its doc lists the tags it invalidates), through
    /// `App::write` (delivered or recorded: never lost).
    pub async fn create_content(
        &self,
        owner: i64,
        input: NewContent,
    ) -> Result<WriteOutcome, ApiError> {
        self.write(move |tx, pending| db::create_content(tx, owner, &input, pending))
            .await
    }

    /// Replaces an item's tags: [`db::update_tags`], through `App::write` (delivered or recorded: never lost).
    pub async fn update_tags(
        &self,
        caller: i64,
        id: i64,
        tags: Vec<String>,
    ) -> Result<WriteOutcome, ApiError> {
        self.write(move |tx, pending| db::update_tags(tx, caller, id, &tags, pending))
            .await
    }

    /// Deletes an item: [`db::delete_content`], through `App::write` (delivered or recorded: never lost).
    pub async fn delete_content(&self, caller: i64, id: i64) -> Result<WriteOutcome, ApiError> {
        self.write(move |tx, pending| db::delete_content(tx, caller, id, pending))
            .await
    }

    /// Runs a write and its invalidation, so that no invalidation is lost:
    ///
    /// 1. `f` runs in a database transaction. Its `#[invalidates(.., defer = pending)]` adds the
    ///    route-level tags to the [`PendingInvalidation`] only when it returns `Ok`, and the
    ///    data-dependent [`WriteOutcome::data_tags`] are added next.
    /// 2. The tags are recorded in the `cache_outbox` table **in the same transaction**
    ///    ([`Db::write_recorded`]); the transaction commits.
    /// 3. The invalidation is delivered after the commit, so no reader can refill an entry from
    ///    the old data after it ([`PendingInvalidation::commit_recorded`], which deletes the
    ///    record). If Redis does not take it within the invalidation deadline, it is queued on
    ///    this instance (which serves none of the entries concerned meanwhile), and the record
    ///    stays for every instance's outbox task: nothing is lost if this instance then crashes.
    ///
    /// A failed write (an error from `f`) rolls back and invalidates nothing.
    async fn write<F>(&self, f: F) -> Result<WriteOutcome, ApiError>
    where
        F: FnOnce(
                &rusqlite::Transaction<'_>,
                &mut PendingInvalidation,
            ) -> Result<WriteOutcome, db::WriteError>
            + Send
            + 'static,
    {
        let enabled = self.cache.is_enabled();
        let (outcome, pending, record) = self
            .db
            .write_recorded(
                self.cache.defer(),
                self.cache.has_outbox(),
                move |tx, pending| {
                    let outcome = f(tx, pending)?;
                    for t in outcome.data_tags() {
                        pending.tag(t);
                    }
                    Ok(outcome)
                },
            )
            .await?;
        if enabled {
            let tags = pending.tags().to_vec();
            let result = match record {
                Some(id) => pending.commit_recorded(id).await,
                None => pending.commit().await,
            };
            match result {
                Ok(n) => tracing::debug!(?tags, removed = n, "invalidated after write"),
                Err(e) => {
                    tracing::warn!(?tags, error = %e.error, "invalidation after write failed")
                }
            }
        }
        Ok(outcome)
    }

    /// Every generation type name.
    pub fn all_types() -> Vec<&'static str> {
        GENERATION_TYPES.iter().map(|(n, _)| *n).collect()
    }
}
