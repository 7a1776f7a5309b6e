//! The JSON types of the API, the canonical content filter, and the API error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::db::{DbError, WriteError};

/// The 4 generation types: name and description.
pub const GENERATION_TYPES: [(&str, &str); 4] = [
    ("image", "Still images generated from a prompt"),
    ("video", "Short video clips"),
    ("audio", "Music and sound"),
    ("text", "Poems, stories and lyrics"),
];

/// A content item (manual or auto-generated), with its owner's name and its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentItem {
    /// Id.
    pub id: i64,
    /// Owner's user id.
    pub owner_id: i64,
    /// Owner's display name.
    pub owner_name: String,
    /// Title.
    pub title: String,
    /// One of [`GENERATION_TYPES`].
    pub generation_type: String,
    /// `manual` (`content_items`) or `auto` (`content_items_auto`).
    pub source: String,
    /// Whether the community can see it.
    pub is_public: bool,
    /// Views.
    pub views: i64,
    /// Likes.
    pub likes: i64,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: i64,
    /// Tag names, sorted.
    pub tags: Vec<String>,
}

impl ContentItem {
    /// Whether the item has views or likes: only such items are ranked in the community gallery.
    pub fn is_engaged(&self) -> bool {
        self.views > 0 || self.likes > 0
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Page number, from 1.
    pub page: u32,
    /// Page size.
    pub limit: u32,
    /// Items over all pages.
    pub total: u64,
}

/// A generation type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationType {
    /// Id.
    pub id: i64,
    /// Name (`image`, `video`, `audio`, `text`).
    pub name: String,
    /// Description.
    pub description: String,
}

/// A tag and the number of public items carrying it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagCount {
    /// Tag name.
    pub name: String,
    /// Public items with this tag.
    pub count: u64,
}

/// The body of `POST /content`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewContent {
    /// Title (1–200 characters).
    pub title: String,
    /// One of [`GENERATION_TYPES`].
    pub generation_type: String,
    /// Tags (at most 8).
    #[serde(default)]
    pub tags: Vec<String>,
    /// `true` for an auto-generated item (`content_items_auto`).
    #[serde(default)]
    pub auto: bool,
    /// Whether the community can see it (default `true`).
    #[serde(default = "yes")]
    pub is_public: bool,
}

fn yes() -> bool {
    true
}

/// The body of `PUT /content/{id}/tags`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagUpdate {
    /// The new tags (replacing the old ones).
    pub tags: Vec<String>,
}

/// The sort order of `GET /content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Newest first (default).
    Recent,
    /// Most liked first.
    Popular,
}

/// Which of the two item tables (`content_items` or `content_items_auto` in the seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Made by hand.
    Manual,
    /// Auto-generated.
    Auto,
}

impl Source {
    /// `manual` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manual => "manual",
            Source::Auto => "auto",
        }
    }
}

/// Page parameters (`?page=&limit=`); missing values take the defaults, so `?page=1` and no
/// query share one cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageParams {
    /// Page number from 1 (default 1).
    #[serde(default = "first_page")]
    pub page: u32,
    /// Page size, 1–100 (default 24).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn first_page() -> u32 {
    1
}

fn default_limit() -> u32 {
    24
}

impl Default for PageParams {
    fn default() -> Self {
        PageParams { page: 1, limit: 24 }
    }
}

impl PageParams {
    /// Page clamped to 1..=10,000 and limit to 1..=100.
    pub fn clamped(self) -> PageParams {
        PageParams {
            page: self.page.clamp(1, 10_000),
            limit: self.limit.clamp(1, 100),
        }
    }
}

/// The raw query of `GET /content`, as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentQuery {
    /// Only items with this tag.
    pub tag: Option<String>,
    /// Only items of this generation type.
    #[serde(rename = "type")]
    pub generation_type: Option<String>,
    /// `recent` (default) or `popular`.
    pub sort: Option<String>,
    /// Only items of this owner.
    pub user: Option<String>,
    /// `manual` or `auto`.
    pub source: Option<String>,
    /// Page from 1.
    pub page: Option<String>,
    /// Page size.
    pub limit: Option<String>,
}

/// The canonical form of a [`ContentQuery`]: the cache key of `GET /content` is derived from
/// this value, so equivalent queries (`?tag=Cats&page=1` and `?tag=cats`) share one entry.
/// Empty values are dropped, the tag is trimmed and lowercased, defaults are filled in and the
/// page size clamped. The field order is fixed, so its JSON (hashed into the key) is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentFilter {
    /// Tag, lowercase.
    pub tag: Option<String>,
    /// Generation type.
    pub generation_type: Option<String>,
    /// Owner.
    pub user: Option<i64>,
    /// Source table.
    pub source: Option<Source>,
    /// Sort order.
    pub sort: Sort,
    /// Page from 1.
    pub page: u32,
    /// Page size 1–100.
    pub limit: u32,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl ContentFilter {
    /// Canonicalizes `q`.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] naming the bad parameter.
    pub fn from_query(q: &ContentQuery) -> Result<ContentFilter, ApiError> {
        let bad = |name: &str, v: &str, expected: &str| {
            ApiError::BadRequest(format!("{name}={v:?}: expected {expected}"))
        };
        let generation_type = match non_empty(&q.generation_type) {
            Some(t) if GENERATION_TYPES.iter().any(|(n, _)| *n == t) => Some(t),
            Some(t) => return Err(bad("type", &t, "image, video, audio or text")),
            None => None,
        };
        let sort = match non_empty(&q.sort).as_deref() {
            None | Some("recent") => Sort::Recent,
            Some("popular") => Sort::Popular,
            Some(s) => return Err(bad("sort", s, "recent or popular")),
        };
        let source = match non_empty(&q.source).as_deref() {
            None => None,
            Some("manual") => Some(Source::Manual),
            Some("auto") => Some(Source::Auto),
            Some(s) => return Err(bad("source", s, "manual or auto")),
        };
        let user = match non_empty(&q.user) {
            None => None,
            Some(u) => Some(u.parse::<i64>().map_err(|_| bad("user", &u, "a user id"))?),
        };
        let number = |name: &str, v: &Option<String>, default: u32| match non_empty(v) {
            None => Ok(default),
            Some(s) => s
                .parse::<u32>()
                .map_err(|_| bad(name, &s, "a positive whole number")),
        };
        let paging = PageParams {
            page: number("page", &q.page, 1)?,
            limit: number("limit", &q.limit, 24)?,
        }
        .clamped();
        Ok(ContentFilter {
            tag: non_empty(&q.tag).map(|t| t.to_lowercase()),
            generation_type,
            user,
            source,
            sort,
            page: paging.page,
            limit: paging.limit,
        })
    }

    /// The one invalidation tag of this list. Every item the list can contain has the filter's
    /// tag, owner and type, so any write that changes the list writes an item with them (before
    /// or after the write): tagging the entry with the most selective one is enough, and writes
    /// invalidate all of `tag:{t}` (old and new tags), `user:{owner}:items`, `type:{g}` and
    /// `content:all`.
    pub fn invalidation_tag(&self) -> String {
        if let Some(t) = &self.tag {
            format!("tag:{t}")
        } else if let Some(u) = self.user {
            format!("user:{u}:items")
        } else if let Some(g) = &self.generation_type {
            format!("type:{g}")
        } else {
            "content:all".to_owned()
        }
    }
}

/// What a write changed; the data-dependent part of its invalidation is derived from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// The item's id.
    pub id: i64,
    /// Its owner.
    pub owner_id: i64,
    /// Its generation type.
    pub generation_type: String,
    /// The item after the write (`None` after a delete).
    pub item: Option<ContentItem>,
    /// Tags whose lists changed: old and new tags of the item.
    pub touched_tags: Vec<String>,
    /// Whether the item can be on the community gallery (it has views or likes).
    pub engaged: bool,
}

impl WriteOutcome {
    /// The outcome for `item` after a write touching `touched_tags`; `before` is the item before
    /// the write (none for a create).
    pub fn new(item: ContentItem, touched_tags: Vec<String>, before: Option<&ContentItem>) -> Self {
        WriteOutcome {
            id: item.id,
            owner_id: item.owner_id,
            generation_type: item.generation_type.clone(),
            engaged: item.is_engaged() || before.is_some_and(ContentItem::is_engaged),
            item: Some(item),
            touched_tags,
        }
    }

    /// The tags that depend on the data, not only on the route's arguments: `tag:{t}` for each
    /// touched tag, and the gallery tags when the item can be ranked there.
    pub fn data_tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = self
            .touched_tags
            .iter()
            .map(|t| format!("tag:{t}"))
            .collect();
        if self.engaged {
            tags.push("gallery".to_owned());
            tags.push(format!("gallery:type:{}", self.generation_type));
        }
        tags
    }
}

/// An API error, answered as `{ "error": ... }` with its status. Errors are never cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400.
    BadRequest(String),
    /// 401: no `X-User-Id`.
    Unauthorized,
    /// 403: not the owner.
    Forbidden,
    /// 404.
    NotFound,
    /// 500.
    Internal(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::BadRequest(m) => write!(f, "{m}"),
            ApiError::Unauthorized => f.write_str("X-User-Id header required"),
            ApiError::Forbidden => f.write_str("only the owner may do this"),
            ApiError::NotFound => f.write_str("not found"),
            ApiError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        tracing::error!(error = %e, "database error");
        ApiError::Internal(e.0)
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotFound => ApiError::NotFound,
            WriteError::Forbidden => ApiError::Forbidden,
            WriteError::Invalid(m) => ApiError::BadRequest(m),
            WriteError::Db(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> ContentQuery {
        let s: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        serde_json::from_value(serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
                .collect(),
        ))
        .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn equivalent_queries_have_one_canonical_filter() {
        let a = ContentFilter::from_query(&q(&[("tag", " Cats "), ("page", "1")])).unwrap();
        let b = ContentFilter::from_query(&q(&[("tag", "cats"), ("sort", "recent"), ("user", "")]))
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.invalidation_tag(), "tag:cats");
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = ContentFilter::from_query(&q(&[("sort", "best")])).unwrap_err();
        assert!(e.to_string().contains("sort"), "{e}");
        let e = ContentFilter::from_query(&q(&[("type", "hologram")])).unwrap_err();
        assert!(e.to_string().contains("type"), "{e}");
    }

    #[test]
    fn the_most_selective_filter_is_the_invalidation_tag() {
        let f = ContentFilter::from_query(&q(&[("user", "7"), ("type", "image")])).unwrap();
        assert_eq!(f.invalidation_tag(), "user:7:items");
        let f = ContentFilter::from_query(&q(&[("type", "image")])).unwrap();
        assert_eq!(f.invalidation_tag(), "type:image");
        let f = ContentFilter::from_query(&q(&[])).unwrap();
        assert_eq!(f.invalidation_tag(), "content:all");
    }
}
