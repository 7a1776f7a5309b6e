//! The application state and its cached queries, writes and merged view.
//!
//! The annotations here are on **query functions** (methods of [`App`]) rather than on handlers
//! where the handler must decide something per request after loading (who may see a private
//! item), or where the key must be canonicalized first (`GET /content`). The cached value is the
//! data; authorization stays per request.

use std::time::Duration;

use cache_core::{cached, invalidates, Cache, CacheStatus, Fragment, PendingInvalidation, Policy};
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
}

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
        cache = &self.cache
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
        cache = &self.cache
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
                self.cache
                    .key("user_gallery")
                    .id("type")
                    .id(*t)
                    .user(user)
                    .build(),
                Policy::ttl(Duration::from_secs(600)).tag(format!("user:{user}:items")),
            ));
            out.push(Fragment::new(
                self.cache.key("community").id("type").id(*t).build(),
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
                .cache
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

    /// Creates an item. The write runs in a transaction; `#[invalidates(..., defer = pending)]`
    /// adds the route-level tags to `pending` only when it returns `Ok`, and the handler commits
    /// them (with the data-dependent [`WriteOutcome::data_tags`]) after the transaction
    /// committed, so no reader can refill an entry from the old data after the invalidation.
    ///
    /// * `content:all`: unfiltered lists gain an item;
    /// * `tags:list`: tag counts change;
    /// * `content:{result.id}`: defensive (ids are never reused: `AUTOINCREMENT`);
    /// * `user:{result.owner_id}:items`: the owner's lists, own fragments and `?user=` lists;
    /// * `type:{result.generation_type}`: `?type=` lists;
    /// * data tags: `tag:{t}` for each of its tags. Not `gallery`: a new item has no views or
    ///   likes, and the gallery ranks only engaged items, so it cannot change.
    #[invalidates(
        "content:all",
        "tags:list",
        "content:{result.id}",
        "user:{result.owner_id}:items",
        "type:{result.generation_type}",
        defer = pending
    )]
    pub async fn create_content(
        &self,
        owner: i64,
        input: NewContent,
        pending: &mut PendingInvalidation,
    ) -> Result<WriteOutcome, ApiError> {
        Ok(self
            .db
            .write(move |tx| db::create_content(tx, owner, &input))
            .await?)
    }

    /// Replaces an item's tags. Route-level tags: `content:{id}` (the item), `content:all`,
    /// `tags:list`, `user:{result.owner_id}:items`, `type:{result.generation_type}`; data tags:
    /// `tag:{t}` for the old **and** new tags (lists of a removed tag lose the item, lists of an
    /// added tag gain it), and `gallery` + `gallery:type:{g}` when the item is engaged (the
    /// gallery shows tags).
    #[invalidates(
        "content:{id}",
        "content:all",
        "tags:list",
        "user:{result.owner_id}:items",
        "type:{result.generation_type}",
        defer = pending
    )]
    pub async fn update_tags(
        &self,
        caller: i64,
        id: i64,
        tags: Vec<String>,
        pending: &mut PendingInvalidation,
    ) -> Result<WriteOutcome, ApiError> {
        Ok(self
            .db
            .write(move |tx| db::update_tags(tx, caller, id, &tags))
            .await?)
    }

    /// Deletes an item: the same tags as [`App::update_tags`], with its tags as the touched ones.
    #[invalidates(
        "content:{id}",
        "content:all",
        "tags:list",
        "user:{result.owner_id}:items",
        "type:{result.generation_type}",
        defer = pending
    )]
    pub async fn delete_content(
        &self,
        caller: i64,
        id: i64,
        pending: &mut PendingInvalidation,
    ) -> Result<WriteOutcome, ApiError> {
        Ok(self
            .db
            .write(move |tx| db::delete_content(tx, caller, id))
            .await?)
    }

    /// Commits the invalidation of a successful write: the route-level tags `#[invalidates]`
    /// deferred into `pending`, plus the outcome's data tags, in one call. A failure (Redis
    /// down) is logged and does not fail the request: the write happened, and the entries expire
    /// by TTL (the breaker makes a dead Redis cheap).
    pub async fn commit(&self, mut pending: PendingInvalidation, outcome: &WriteOutcome) {
        if !self.cache.is_enabled() {
            return; // CACHE_ENABLED=false: nothing is cached, nothing to invalidate.
        }
        for t in outcome.data_tags() {
            pending.tag(t);
        }
        let tags = pending.tags().to_vec();
        match pending.commit().await {
            Ok(n) => tracing::debug!(?tags, removed = n, "invalidated after write"),
            Err(e) => tracing::warn!(?tags, error = %e.error, "invalidation after write failed"),
        }
    }

    /// Every generation type name.
    pub fn all_types() -> Vec<&'static str> {
        GENERATION_TYPES.iter().map(|(n, _)| *n).collect()
    }
}
