//! Canonical cache keys.
//!
//! Every cache entry lives under a key built by a [`KeySpace`]: the same logical request always
//! produces the same key, and two requests that may see different data never share one.
//!
//! ```
//! use cache_core::key::KeySpace;
//!
//! let space = KeySpace::new("shop", 3, 256)?.with_resource_version("products", 2)?;
//! let key = space
//!     .key("products")
//!     .id(42)
//!     .user("alice smith")
//!     .param("sort", "price")
//!     .param("page", 2)
//!     .param("q", "red shoes")
//!     .build();
//! assert_eq!(
//!     key.as_str(),
//!     "shop:v3:products#v2:42:user=alice%20smith:q=d1b83d9335a5f6b36b40584dd628b37c"
//! );
//! assert_eq!(key.resource(), "products");
//! assert!(key.as_str().starts_with(&space.prefix()));
//! # Ok::<(), String>(())
//! ```
//!
//! # Key format
//!
//! ```text
//! {ns}:v{G}:{resource}[#v{R}]{:id}*[:user={user}][:q={hash32}][:x={hash32}]
//! ```
//!
//! | part | content |
//! | --- | --- |
//! | `{ns}` | the namespace: 1 to 64 characters of `[A-Za-z0-9_.-]` |
//! | `v{G}` | the global schema version (decimal `u32`); bumping it orphans every entry at once |
//! | `{resource}` | the resource name, 1 to 64 characters of `[A-Za-z0-9_.-]` (see *Resource names*) |
//! | `#v{R}` | the resource schema version: present only when one is configured with [`KeySpace::with_resource_version`] or set for the key with [`KeyBuilder::version`] |
//! | `:{id}` | zero or more id segments, in call order, each passed through [`sanitize_segment`] |
//! | `:user={user}` | the user scope: [`sanitize_segment`] of [`KeyBuilder::user`], or the first 32 lowercase hex characters of the SHA-256 of [`KeyBuilder::user_secret`] |
//! | `:q={hash32}` | present only when at least one parameter remains: [`stable_hash_hex`] of [`canonical_query`] |
//! | `:x={hash32}` | present only with [`KeyBuilder::exact_query`] (HTTP request keys): the raw query, only its parameter order canonicalised |
//!
//! Id segments never contain `:` or `=`, so `:user=`, `:q=`, `:x=` and `:h=` cannot be confused with ids
//! and the format is unambiguous.
//!
//! ## Segments
//!
//! [`sanitize_segment`] percent-encodes (`%XX`, uppercase hex, one escape per UTF-8 byte) every
//! character that is a control character ([`char::is_control`]), whitespace
//! ([`char::is_whitespace`]) or one of `` % : = # * ? [ ] \ { } " ``. Every other character,
//! including non-ASCII letters, is kept as is. Because `%` itself is always encoded, the mapping is
//! injective: distinct ids (or users) always give distinct segments. (A lossy mapping such as
//! `' '` → `'_'` could hand one user another user's data.) `{` and `}` are encoded because Redis
//! Cluster reads them as hash tags; `* ? [ ] \` because they are glob metacharacters.
//!
//! Ids and users are formatted with [`Display`](std::fmt::Display) first, so `42`, `"42"` and
//! `42u8` give the same segment.
//!
//! ## Parameters
//!
//! Parameters ([`KeyBuilder::param`], [`KeyBuilder::params`], [`KeyBuilder::query`], ...) are
//! never written into the key; they are hashed:
//!
//! 1. parameters with an empty value are dropped (so `?page=` and no `page` are the same key), as
//!    are parameters named with [`KeyBuilder::exclude`];
//! 2. the remaining pairs are stable-sorted by name in byte order: the order of distinct names does
//!    not matter, but **repeated names keep their order of appearance**, so `tag=b&tag=a` and
//!    `tag=a&tag=b` are different keys. Callers that want set semantics use
//!    [`KeyBuilder::param_set`], which sorts and de-duplicates the values;
//! 3. each pair is written `enc(name)=enc(value)` and the pairs are joined with `&`, where `enc` is
//!    RFC 3986 percent-encoding of the UTF-8 bytes that keeps only the unreserved characters
//!    `A-Z a-z 0-9 - . _ ~` and uses uppercase hex (this is [`canonical_query`]);
//! 4. `{hash32}` is the XXH3-128 (seed 0) of that string, as 32 lowercase hex digits
//!    ([`stable_hash_hex`]).
//!
//! With no parameters left there is no `:q=` segment.
//!
//! ## Length limit
//!
//! A key longer than the keyspace's `max_len` bytes keeps its head `{ns}:v{G}:{resource}[#v{R}]`
//! and replaces everything after it with `:h={hash32}`, the [`stable_hash_hex`] of the complete
//! long key. The head is at most `prefix + 64 + 12` bytes, so the result always fits:
//! [`KeySpace::new`] checks that `max_len` leaves room for it (see [`KeySpace::min_max_len`]).
//!
//! ## Resource names
//!
//! A resource name that is not 1 to 64 characters of `[A-Za-z0-9_.-]` does not panic: it is passed
//! through [`sanitize_segment`], with `~` also encoded as `%7E`. If that is longer than 64 bytes, it
//! is cut to at most 48 bytes (at a character boundary, never inside an escape) followed by `~` and
//! the first 8 hex digits of [`stable_hash_hex`] of the original name. Valid names never contain
//! `%` or `~`, so such names cannot collide with valid ones.
//!
//! ## Prefixes
//!
//! Every key starts with [`KeySpace::prefix`] (`{ns}:v{G}:`), so `prefix() + "*"` matches every
//! entry of the keyspace. Tag bookkeeping keys use [`KeySpace::tag_prefix`] (`{ns}:t:`), outside
//! the versioned prefix so that a global version bump does not orphan them.
//!
//! # Worked example
//!
//! The key of the example above, step by step:
//!
//! * head: `shop:v3:products#v2` (namespace `shop`, global version 3, resource version 2);
//! * id `42` → `:42`; user `alice smith` → `:user=alice%20smith`;
//! * parameters `sort=price`, `page=2`, `q=red shoes` → canonical query
//!   `page=2&q=red%20shoes&sort=price`, whose XXH3-128 is `d1b83d9335a5f6b36b40584dd628b37c`;
//! * key: `shop:v3:products#v2:42:user=alice%20smith:q=d1b83d9335a5f6b36b40584dd628b37c`.
//!
//! Test vectors: `stable_hash_hex(b"")` is `99aa06d3014798d86001c324468d497f`, and
//! `stable_hash_hex(b"a=1")` is `20f106841ad9acc5bb39e74e05494829`.
//!
//! The same key in Python (`pip install xxhash`):
//!
//! ```text
//! import hashlib, unicodedata
//! from urllib.parse import quote
//! import xxhash
//!
//! FORBIDDEN = '%:=#*?[]\\{}"'
//!
//! def segment(s):  # sanitize_segment
//!     return "".join(
//!         "".join(f"%{b:02X}" for b in ch.encode())
//!         if unicodedata.category(ch) == "Cc" or ch.isspace() or ch in FORBIDDEN
//!         else ch
//!         for ch in s)
//!
//! def secret(value: bytes):  # KeyBuilder::secret / user_secret
//!     return hashlib.sha256(value).hexdigest()[:32]
//!
//! def canonical_query(pairs):
//!     pairs = sorted((p for p in pairs if p[1] != ""), key=lambda p: p[0].encode())
//!     return "&".join(quote(n, safe="") + "=" + quote(v, safe="") for n, v in pairs)
//!
//! def cache_key(ns, g, resource, ids=(), user=None, params=(), version=None, max_len=256):
//!     head = f"{ns}:v{g}:{resource}" + (f"#v{version}" if version is not None else "")
//!     key = head + "".join(":" + segment(str(i)) for i in ids)
//!     if user is not None:
//!         key += ":user=" + segment(user)
//!     q = canonical_query(params)
//!     if q:
//!         key += ":q=" + xxhash.xxh3_128_hexdigest(q.encode())
//!     if len(key.encode()) > max_len:
//!         key = head + ":h=" + xxhash.xxh3_128_hexdigest(key.encode())
//!     return key
//!
//! assert cache_key("shop", 3, "products", ids=[42], user="alice smith", version=2,
//!                  params=[("sort", "price"), ("page", "2"), ("q", "red shoes")]) \
//!     == "shop:v3:products#v2:42:user=alice%20smith:q=d1b83d9335a5f6b36b40584dd628b37c"
//! ```

use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128;

/// The smallest `max_len` any keyspace accepts.
pub const MIN_MAX_LEN: usize = 128;

/// The longest namespace or resource name, in characters (they are ASCII, so also bytes).
pub const MAX_NAME_LEN: usize = 64;

/// Where an over-long or invalid resource name is cut before its hash suffix.
const RESOURCE_CUT: usize = 48;

/// Characters [`sanitize_segment`] encodes besides control characters and whitespace.
const SEGMENT_SPECIAL: &[char] = &['%', ':', '=', '#', '*', '?', '[', ']', '\\', '{', '}', '"'];

/// Longest part of a hashed (over-long) key after the prefix: a 64-byte resource, `#v` and a
/// 10-digit `u32`, then `:h=` and 32 hex digits.
const HASHED_TAIL_MAX: usize = MAX_NAME_LEN + 2 + 10 + 3 + 32;

/// A cache keyspace: namespace, global schema version, per-resource versions and maximum key
/// length.
///
/// Cheap to clone: the configuration is shared behind an [`Arc`].
#[derive(Clone, Debug)]
pub struct KeySpace {
    inner: Arc<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    namespace: String,
    global_version: u32,
    max_len: usize,
    prefix: String,
    resource_versions: BTreeMap<String, u32>,
}

impl KeySpace {
    /// Creates a keyspace.
    ///
    /// `namespace` must be 1 to 64 characters of `[A-Za-z0-9_.-]`. `max_len` (in bytes) must be at
    /// least [`MIN_MAX_LEN`] and at least [`KeySpace::min_max_len`] for this namespace and version,
    /// so that a hashed over-long key always fits (any `max_len >= 188` is always enough).
    ///
    /// # Errors
    ///
    /// A human-readable message naming the bad value and the expected form.
    ///
    /// ```
    /// use cache_core::key::KeySpace;
    ///
    /// let space = KeySpace::new("shop", 1, 512)?;
    /// assert_eq!(space.prefix(), "shop:v1:");
    /// assert!(KeySpace::new("my shop", 1, 512).is_err());
    /// assert!(KeySpace::new("shop", 1, 64).is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn new(namespace: &str, global_version: u32, max_len: usize) -> Result<KeySpace, String> {
        validate_name("namespace", namespace)?;
        let needed = Self::min_max_len(namespace, global_version);
        if max_len < needed {
            return Err(format!(
                "invalid max_len {max_len}: expected at least {needed} for namespace \
                 {namespace:?} at version {global_version} (never less than {MIN_MAX_LEN}; \
                 {needed} bytes leave room for a hashed over-long key)"
            ));
        }
        let prefix = format!("{namespace}:v{global_version}:");
        Ok(KeySpace {
            inner: Arc::new(Inner {
                namespace: namespace.to_owned(),
                global_version,
                max_len,
                prefix,
                resource_versions: BTreeMap::new(),
            }),
        })
    }

    /// The smallest `max_len` that [`KeySpace::new`] accepts for this namespace and global
    /// version: the larger of [`MIN_MAX_LEN`] and the longest possible hashed key,
    /// `prefix + 64 (resource) + 12 (#v + u32) + 35 (:h= + hash)`.
    ///
    /// ```
    /// use cache_core::key::KeySpace;
    ///
    /// assert_eq!(KeySpace::min_max_len("shop", 1), 128);
    /// assert_eq!(KeySpace::min_max_len(&"n".repeat(64), u32::MAX), 188);
    /// ```
    pub fn min_max_len(namespace: &str, global_version: u32) -> usize {
        let prefix_len = namespace.len() + 2 + decimal_len(global_version) + 1;
        (prefix_len + HASHED_TAIL_MAX).max(MIN_MAX_LEN)
    }

    /// Sets the schema version of one resource (consuming setter): its keys get a `#v{version}`
    /// suffix after the resource name, so bumping it orphans only that resource's entries.
    ///
    /// # Errors
    ///
    /// `resource` must follow the namespace rule: 1 to 64 characters of `[A-Za-z0-9_.-]`.
    ///
    /// ```
    /// use cache_core::key::KeySpace;
    ///
    /// let space = KeySpace::new("shop", 1, 512)?.with_resource_version("users", 4)?;
    /// assert_eq!(space.key("users").id(7).build().as_str(), "shop:v1:users#v4:7");
    /// assert_eq!(space.key("orders").id(7).build().as_str(), "shop:v1:orders:7");
    /// # Ok::<(), String>(())
    /// ```
    pub fn with_resource_version(self, resource: &str, version: u32) -> Result<KeySpace, String> {
        validate_name("resource name", resource)?;
        let mut inner = self.inner;
        Arc::make_mut(&mut inner)
            .resource_versions
            .insert(resource.to_owned(), version);
        Ok(KeySpace { inner })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The global schema version.
    pub fn global_version(&self) -> u32 {
        self.inner.global_version
    }

    /// The maximum key length in bytes.
    pub fn max_len(&self) -> usize {
        self.inner.max_len
    }

    /// The schema version configured for `resource`, if any.
    pub fn resource_version(&self, resource: &str) -> Option<u32> {
        self.inner.resource_versions.get(resource).copied()
    }

    /// Starts a key for `resource`.
    ///
    /// A resource name that is not 1 to 64 characters of `[A-Za-z0-9_.-]` does not panic: it is
    /// sanitised and, if needed, shortened with a hash (see the module docs), so the key still
    /// respects every invariant.
    pub fn key(&self, resource: &str) -> KeyBuilder<'_> {
        KeyBuilder {
            space: self,
            resource: resource_segment(resource).into_owned(),
            version: self.resource_version(resource),
            ids: Vec::new(),
            user: None,
            params: Vec::new(),
            excluded: Vec::new(),
            exact: None,
        }
    }

    /// The prefix every key of this keyspace starts with: `{ns}:v{G}:`.
    ///
    /// `prefix() + "*"` is the Redis pattern of every entry (for "delete all").
    pub fn prefix(&self) -> String {
        self.inner.prefix.clone()
    }

    /// The prefix of tag bookkeeping keys: `{ns}:t:`.
    ///
    /// It is outside the versioned [`prefix`](KeySpace::prefix) so that a global version bump
    /// does not orphan the tag index.
    pub fn tag_prefix(&self) -> String {
        format!("{}:t:", self.inner.namespace)
    }

    /// An operator pattern (Redis glob) scoped to this keyspace: [`prefix`](KeySpace::prefix)
    /// followed by `pattern`.
    ///
    /// The pattern is not escaped (operators write globs on purpose), but patterns containing
    /// control characters or whitespace, which no key contains, are rejected.
    ///
    /// # Errors
    ///
    /// A message quoting the pattern and the offending character.
    ///
    /// ```
    /// use cache_core::key::KeySpace;
    ///
    /// let space = KeySpace::new("shop", 2, 512)?;
    /// assert_eq!(space.pattern("users:*")?, "shop:v2:users:*");
    /// assert!(space.pattern("users *").is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn pattern(&self, pattern: &str) -> Result<String, String> {
        if let Some(c) = pattern
            .chars()
            .find(|c| c.is_control() || c.is_whitespace())
        {
            return Err(format!(
                "invalid key pattern {}: character {c:?} is not allowed; expected a Redis glob \
                 without whitespace or control characters, like \"users:*\"",
                quoted(pattern)
            ));
        }
        Ok(format!("{}{pattern}", self.inner.prefix))
    }
}

/// Builds one [`CacheKey`]; created by [`KeySpace::key`].
///
/// ```
/// use cache_core::key::KeySpace;
///
/// let space = KeySpace::new("api", 1, 512)?;
/// let a = space.key("search").query("b=2&a=1&cache_bypass=1").exclude("cache_bypass").build();
/// let b = space.key("search").param("a", 1).param("b", 2).build();
/// assert_eq!(a, b);
/// # Ok::<(), String>(())
/// ```
#[must_use = "a KeyBuilder does nothing until `build` is called"]
#[derive(Debug)]
pub struct KeyBuilder<'a> {
    space: &'a KeySpace,
    /// Sanitised resource segment.
    resource: String,
    version: Option<u32>,
    /// Sanitised id segments.
    ids: Vec<String>,
    /// Sanitised or hashed user segment.
    user: Option<String>,
    /// Raw (name, value) pairs with non-empty values, in order of appearance.
    params: Vec<(String, String)>,
    excluded: Vec<String>,
    /// A raw query string taken exactly ([`KeyBuilder::exact_query`]).
    exact: Option<String>,
}

impl KeyBuilder<'_> {
    /// Appends an id segment (its [`Display`](fmt::Display) form, sanitised). May be called
    /// several times; segments keep their call order.
    pub fn id(mut self, id: impl fmt::Display) -> Self {
        self.ids
            .push(sanitize_segment(&id.to_string()).into_owned());
        self
    }

    /// Adds a parameter. A value whose [`Display`](fmt::Display) form is empty is dropped.
    pub fn param(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.push_param(name, value.to_string());
        self
    }

    /// Adds a parameter if `value` is `Some`; `None` is dropped, like an empty value.
    pub fn param_opt<V: fmt::Display>(self, name: &str, value: Option<V>) -> Self {
        match value {
            Some(value) => self.param(name, value),
            None => self,
        }
    }

    /// Adds several parameters, in order (pairs with an empty value are dropped).
    pub fn params<I, K, V>(mut self, pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (name, value) in pairs {
            self.push_param(name.as_ref(), value.as_ref().to_owned());
        }
        self
    }

    /// Adds a repeated parameter with set semantics: the values are sorted and de-duplicated, so
    /// their order and repetitions do not change the key (empty values are dropped).
    ///
    /// ```
    /// use cache_core::key::KeySpace;
    ///
    /// let space = KeySpace::new("api", 1, 512)?;
    /// let a = space.key("items").param_set("tag", ["b", "a", "b"]).build();
    /// let b = space.key("items").param("tag", "a").param("tag", "b").build();
    /// assert_eq!(a, b);
    /// # Ok::<(), String>(())
    /// ```
    pub fn param_set<I>(mut self, name: &str, values: I) -> Self
    where
        I: IntoIterator,
        I::Item: fmt::Display,
    {
        let mut values: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
        values.sort_unstable();
        values.dedup();
        for value in values {
            self.push_param(name, value);
        }
        self
    }

    /// Adds the parameters of a raw URL query string such as `a=1&b=&c=x%20y&flag`.
    ///
    /// A leading `?` is ignored. Names and values are percent-decoded, with `+` meaning a space.
    /// Pairs with an empty value and valueless flags (`flag`) are dropped, like empty values
    /// everywhere. Invalid percent escapes are kept literally and invalid UTF-8 is decoded lossily
    /// ([`String::from_utf8_lossy`]): this never panics, but two requests differing only in
    /// invalid bytes may share a key.
    pub fn query(mut self, raw: &str) -> Self {
        let raw = raw.strip_prefix('?').unwrap_or(raw);
        for pair in raw.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                self.push_param(&percent_decode(name), percent_decode(value));
            }
        }
        self
    }

    /// Adds a raw URL query string **exactly**, for keys of HTTP requests whose handler may read
    /// the query in any way: the only canonicalisation is a stable sort of the `&`-separated
    /// pieces by their raw name (the part before the first `=`), so `b=2&a=1` and `a=1&b=2` share
    /// a key while repeated names keep their order. Nothing is decoded or dropped: `page=`,
    /// `page`, `%70age=` and an empty piece (`a=1&&b=2`) are each different from one another and
    /// from no `page` at all, and `?` alone differs from no query. Pieces named with
    /// [`exclude`](KeyBuilder::exclude) are removed (a query left empty by that counts as none).
    /// Written into the key as `:x={hash32}`, the [`stable_hash_hex`] of `?` followed by the
    /// sorted pieces joined with `&`.
    ///
    /// ```
    /// use cache_core::key::KeySpace;
    ///
    /// let space = KeySpace::new("api", 1, 512)?;
    /// let key = |q: Option<&str>| space.key("items").exact_query(q).exclude("cache_bypass").build();
    /// assert_eq!(key(Some("b=2&a=1")), key(Some("a=1&b=2")));
    /// assert_ne!(key(Some("page=")), key(None));
    /// assert_ne!(key(Some("page=")), key(Some("page")));
    /// assert_ne!(key(Some("tag=a&tag=b")), key(Some("tag=b&tag=a")));
    /// assert_eq!(key(Some("cache_bypass=true")), key(None));
    /// # Ok::<(), String>(())
    /// ```
    pub fn exact_query(mut self, raw: Option<&str>) -> Self {
        self.exact = raw.map(str::to_owned);
        self
    }

    /// Drops every parameter with this name, whether added before or after (for example a
    /// `cache_bypass` flag).
    pub fn exclude(mut self, name: &str) -> Self {
        self.excluded.push(name.to_owned());
        self
    }

    /// Adds a parameter whose value is secret (an API key, a token): only the first 32 hex
    /// digits of its SHA-256 are kept. An empty value is dropped.
    pub fn secret(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        if !value.is_empty() {
            self.push_param(name, secret_hex(value));
        }
        self
    }

    /// Scopes the key to a user: `:user={user}`, sanitised. The last call to `user` or
    /// [`user_secret`](KeyBuilder::user_secret) wins.
    pub fn user(mut self, user: impl fmt::Display) -> Self {
        self.user = Some(sanitize_segment(&user.to_string()).into_owned());
        self
    }

    /// Scopes the key to the holder of a secret (a session token): `:user=` followed by the first
    /// 32 hex digits of its SHA-256. The last call to [`user`](KeyBuilder::user) or `user_secret`
    /// wins.
    pub fn user_secret(mut self, token: impl AsRef<[u8]>) -> Self {
        self.user = Some(secret_hex(token.as_ref()));
        self
    }

    /// Sets the resource version of this key (`#v{v}`), overriding the keyspace's.
    pub fn version(mut self, v: u32) -> Self {
        self.version = Some(v);
        self
    }

    /// Builds the key.
    pub fn build(self) -> CacheKey {
        let space = &*self.space.inner;
        let mut key = String::with_capacity(128);
        key.push_str(&space.prefix);
        let start = key.len();
        key.push_str(&self.resource);
        let end = key.len();
        if let Some(v) = self.version {
            key.push_str("#v");
            key.push_str(&v.to_string());
        }
        let head_len = key.len();
        for id in &self.ids {
            key.push(':');
            key.push_str(id);
        }
        if let Some(user) = &self.user {
            key.push_str(":user=");
            key.push_str(user);
        }
        let excluded = &self.excluded;
        let query = canonical_query(
            self.params
                .iter()
                .filter(|(name, _)| !excluded.iter().any(|e| e == name))
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        if !query.is_empty() {
            key.push_str(":q=");
            key.push_str(&stable_hash_hex(query.as_bytes()));
        }
        if let Some(exact) = self
            .exact
            .as_deref()
            .and_then(|q| exact_canonical(q, excluded))
        {
            key.push_str(":x=");
            key.push_str(&stable_hash_hex(exact.as_bytes()));
        }
        if key.len() > space.max_len {
            let hash = stable_hash_hex(key.as_bytes());
            key.truncate(head_len);
            key.push_str(":h=");
            key.push_str(&hash);
        }
        CacheKey {
            full: key,
            resource: ResourceSpan::Range { start, end },
            per_user: self.user.is_some(),
        }
    }

    fn push_param(&mut self, name: &str, value: String) {
        if !value.is_empty() {
            self.params.push((name.to_owned(), value));
        }
    }
}

/// A finished cache key: the full key string plus where its resource name is (for statistics).
///
/// Equality, ordering and hashing use the key string only, and `CacheKey` implements
/// [`Borrow<str>`](Borrow), so a `HashMap<CacheKey, _>` can be queried with a `&str`.
#[derive(Clone)]
pub struct CacheKey {
    full: String,
    resource: ResourceSpan,
    /// Built with a user scope ([`KeyBuilder::user`] / [`KeyBuilder::user_secret`]).
    per_user: bool,
}

#[derive(Clone)]
enum ResourceSpan {
    /// Byte range of the resource inside `full`.
    Range { start: usize, end: usize },
    /// A resource name that does not occur in `full` (only from `from_parts_unchecked`).
    Detached(Box<str>),
}

impl CacheKey {
    /// Whether the key is scoped to a user (built with [`KeyBuilder::user`] or
    /// [`KeyBuilder::user_secret`]): such an entry holds one user's data and is never sent to
    /// other clients as shareable (`Cache-Control: private`).
    pub fn is_per_user(&self) -> bool {
        self.per_user
    }

    /// The key string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The resource name (sanitised as in the key), for statistics.
    pub fn resource(&self) -> &str {
        match &self.resource {
            ResourceSpan::Range { start, end } => self.full.get(*start..*end).unwrap_or(""),
            ResourceSpan::Detached(resource) => resource,
        }
    }

    /// The key string, by value.
    pub fn into_string(self) -> String {
        self.full
    }

    /// The length of the key in bytes.
    pub fn len(&self) -> usize {
        self.full.len()
    }

    /// Whether the key string is empty (never true for built keys).
    pub fn is_empty(&self) -> bool {
        self.full.is_empty()
    }

    /// Wraps a key that was not built from parts (already canonical, for example read back from
    /// a tag index). `resource` is kept for statistics. Nothing is validated; this never panics.
    ///
    /// ```
    /// use cache_core::key::CacheKey;
    ///
    /// let key = CacheKey::from_parts_unchecked("shop:v1:users:7".to_owned(), "users");
    /// assert_eq!(key.resource(), "users");
    /// ```
    pub fn from_parts_unchecked(full: String, resource: &str) -> CacheKey {
        let resource = match full.find(resource) {
            Some(start) => ResourceSpan::Range {
                start,
                end: start + resource.len(),
            },
            None => ResourceSpan::Detached(resource.into()),
        };
        let per_user = full.contains(":user=");
        CacheKey {
            full,
            resource,
            per_user,
        }
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKey")
            .field("key", &self.full)
            .field("resource", &self.resource())
            .finish()
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.full == other.full
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.full.hash(state);
    }
}

impl PartialOrd for CacheKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CacheKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.full.cmp(&other.full)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl AsRef<str> for CacheKey {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

impl Borrow<str> for CacheKey {
    fn borrow(&self) -> &str {
        &self.full
    }
}

impl From<CacheKey> for String {
    fn from(key: CacheKey) -> String {
        key.full
    }
}

/// The resource name of a rendered key (`{ns}:v{G}:{resource}[#v{R}]...`, see *Key format*),
/// for example the value of an `X-Cache-Key` header; `None` when `key` is not in that format.
///
/// ```
/// use cache_core::key::resource_of;
///
/// assert_eq!(resource_of("shop:v3:products#v2:42:q=d1b8"), Some("products"));
/// assert_eq!(resource_of("gallery:v1:tags:GET:/tags"), Some("tags"));
/// assert_eq!(resource_of("not a key"), None);
/// ```
pub fn resource_of(key: &str) -> Option<&str> {
    let mut parts = key.splitn(4, ':');
    let (_ns, version, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() < 2
        || !version.starts_with('v')
        || !version[1..].bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let resource = rest.split('#').next().unwrap_or(rest);
    let valid = (1..=64).contains(&resource.len())
        && resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    valid.then_some(resource)
}

/// Percent-encodes the characters that are not allowed in a key segment: control characters,
/// whitespace and `` % : = # * ? [ ] \ { } " `` become `%XX` (uppercase hex, one escape per UTF-8
/// byte); everything else is kept. Injective; borrows when nothing needs encoding.
///
/// ```
/// use cache_core::key::sanitize_segment;
///
/// assert_eq!(sanitize_segment("café"), "café");
/// assert_eq!(sanitize_segment("a b:c%"), "a%20b%3Ac%25");
/// assert_eq!(sanitize_segment("{tag}"), "%7Btag%7D");
/// ```
pub fn sanitize_segment(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_encoding) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut buf = [0u8; 4];
    for c in s.chars() {
        if needs_encoding(c) {
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                push_escape(&mut out, b);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The stable hash used in keys: XXH3-128 (seed 0) of `bytes`, as 32 lowercase hex digits.
///
/// ```
/// use cache_core::key::stable_hash_hex;
///
/// assert_eq!(stable_hash_hex(b""), "99aa06d3014798d86001c324468d497f");
/// ```
pub fn stable_hash_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxh3_128(bytes))
}

/// The canonical query string hashed into `:q=`: pairs with an empty value dropped, stable-sorted
/// by name (byte order; repeated names keep their order), each written `enc(name)=enc(value)`
/// with RFC 3986 percent-encoding (only `A-Z a-z 0-9 - . _ ~` kept, uppercase hex), joined by
/// `&`. Empty when no pair remains.
///
/// ```
/// use cache_core::key::canonical_query;
///
/// let q = canonical_query([("sort", "price"), ("page", "2"), ("q", "red shoes"), ("x", "")]);
/// assert_eq!(q, "page=2&q=red%20shoes&sort=price");
/// ```
pub fn canonical_query<I, K, V>(pairs: I) -> String
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut pairs: Vec<(K, V)> = pairs
        .into_iter()
        .filter(|(_, value)| !value.as_ref().is_empty())
        .collect();
    pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(&mut out, name.as_ref());
        out.push('=');
        encode_component(&mut out, value.as_ref());
    }
    out
}

fn needs_encoding(c: char) -> bool {
    c.is_control() || c.is_whitespace() || SEGMENT_SPECIAL.contains(&c)
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xF)]));
}

/// The canonical form of an exact query (see [`KeyBuilder::exact_query`]); `None` when only
/// excluded pieces were present.
fn exact_canonical(raw: &str, excluded: &[String]) -> Option<String> {
    let name = |piece: &str| piece.split('=').next().unwrap_or_default().to_owned();
    let mut pieces: Vec<&str> = raw
        .split('&')
        .filter(|p| !excluded.iter().any(|e| *e == name(p)))
        .collect();
    if pieces.is_empty() || (pieces == [""] && !raw.is_empty()) {
        return None;
    }
    pieces.sort_by(|a, b| {
        let (na, nb) = (a.split('=').next(), b.split('=').next());
        na.cmp(&nb)
    });
    let mut out = String::with_capacity(raw.len() + 1);
    out.push('?');
    out.push_str(&pieces.join("&"));
    Some(out)
}

/// RFC 3986 percent-encoding keeping only unreserved characters.
fn encode_component(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            push_escape(out, b);
        }
    }
}

/// Decodes `%XX` escapes and `+`; invalid escapes stay literal, invalid UTF-8 is replaced.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let decoded = bytes
                    .get(i + 1)
                    .and_then(|&h| hex(h))
                    .zip(bytes.get(i + 2).and_then(|&l| hex(l)));
                match decoded {
                    Some((h, l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn secret_hex(value: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(value);
    let mut out = String::with_capacity(32);
    for &b in &digest[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    out
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if is_valid_name(name) {
        return Ok(());
    }
    let problem = if name.is_empty() {
        "it is empty".to_owned()
    } else if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        format!("character {c:?} is not allowed")
    } else {
        format!("it is {} characters long", name.chars().count())
    };
    Err(format!(
        "invalid {what} {}: {problem}; expected 1 to {MAX_NAME_LEN} characters of A-Z, a-z, \
         0-9, '_', '.' or '-'",
        quoted(name)
    ))
}

/// `s` quoted for an error message, shortened if very long.
fn quoted(s: &str) -> String {
    const SHOWN: usize = 80;
    match s.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// The key segment of a resource name: the name itself when valid, else sanitised (with `~`
/// encoded too) and, when longer than 64 bytes, cut to 48 bytes plus `~` and 8 hash digits.
fn resource_segment(resource: &str) -> Cow<'_, str> {
    if is_valid_name(resource) {
        return Cow::Borrowed(resource);
    }
    let sanitized = sanitize_segment(resource).replace('~', "%7E");
    if sanitized.len() <= MAX_NAME_LEN {
        return Cow::Owned(sanitized);
    }
    let mut cut = RESOURCE_CUT;
    while !sanitized.is_char_boundary(cut) {
        cut -= 1;
    }
    // Never split a `%XX` escape (every '%' in sanitised text starts one).
    let bytes = sanitized.as_bytes();
    if bytes[cut - 1] == b'%' {
        cut -= 1;
    } else if bytes[cut - 2] == b'%' {
        cut -= 2;
    }
    let hash = stable_hash_hex(resource.as_bytes());
    Cow::Owned(format!("{}~{}", &sanitized[..cut], &hash[..8]))
}

fn decimal_len(mut n: u32) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashSet};

    fn space() -> KeySpace {
        KeySpace::new("app", 1, 256).unwrap()
    }

    /// Inverse of `sanitize_segment`, to prove it is injective.
    fn unsanitize(s: &str) -> String {
        percent_decode(&s.replace('+', "%2B"))
    }

    fn assert_key_invariants(key: &CacheKey, space: &KeySpace) {
        let s = key.as_str();
        assert!(
            s.len() <= space.max_len(),
            "{} > {}: {s}",
            s.len(),
            space.max_len()
        );
        assert!(
            !s.chars().any(|c| c.is_control() || c.is_whitespace()),
            "bad char in {s:?}"
        );
        assert!(s.starts_with(&space.prefix()), "{s}");
        assert!(
            !s.contains(['{', '}', '*', '?', '[', ']', '\\', '"']),
            "{s}"
        );
    }

    // ---- KeySpace ----

    #[test]
    fn namespace_accepts_letters_digits_underscore_dot_dash() {
        for ns in ["a", "my-app_v2.prod", &"x".repeat(64)] {
            assert!(KeySpace::new(ns, 0, 256).is_ok(), "{ns}");
        }
    }

    #[test]
    fn namespace_rejects_empty_long_and_special_with_a_message_naming_it() {
        let err = KeySpace::new("my app", 1, 256).unwrap_err();
        assert!(err.contains("\"my app\""), "{err}");
        assert!(err.contains("' '"), "{err}");
        assert!(err.contains("expected 1 to 64 characters"), "{err}");
        assert!(KeySpace::new("", 1, 256).unwrap_err().contains("empty"));
        let long = KeySpace::new(&"x".repeat(65), 1, 256).unwrap_err();
        assert!(long.contains("65 characters long"), "{long}");
        for bad in ["a:b", "a{b}", "é", "a/b", "a*"] {
            assert!(KeySpace::new(bad, 1, 256).is_err(), "{bad}");
        }
    }

    #[test]
    fn max_len_below_128_is_rejected() {
        let err = KeySpace::new("app", 1, 127).unwrap_err();
        assert!(err.contains("127") && err.contains("128"), "{err}");
        assert!(KeySpace::new("app", 1, 128).is_ok());
    }

    #[test]
    fn max_len_must_leave_room_for_a_hashed_key() {
        let ns = "n".repeat(64);
        assert_eq!(KeySpace::min_max_len(&ns, u32::MAX), 188);
        assert!(KeySpace::new(&ns, u32::MAX, 187).is_err());
        assert!(KeySpace::new(&ns, u32::MAX, 188).is_ok());
    }

    #[test]
    fn prefix_is_namespace_and_global_version() {
        let space = KeySpace::new("shop", 7, 256).unwrap();
        assert_eq!(space.prefix(), "shop:v7:");
        assert_eq!(space.namespace(), "shop");
        assert_eq!(space.global_version(), 7);
        assert_eq!(space.max_len(), 256);
    }

    #[test]
    fn tag_prefix_is_outside_the_versioned_prefix() {
        let space = KeySpace::new("shop", 7, 256).unwrap();
        assert_eq!(space.tag_prefix(), "shop:t:");
        assert!(!space.tag_prefix().starts_with(&space.prefix()));
    }

    #[test]
    fn pattern_is_prefixed_and_not_escaped() {
        let space = space();
        assert_eq!(space.pattern("users:*").unwrap(), "app:v1:users:*");
        assert_eq!(space.pattern("*").unwrap(), "app:v1:*");
        assert_eq!(space.pattern("u[ab]?").unwrap(), "app:v1:u[ab]?");
    }

    #[test]
    fn pattern_rejects_whitespace_and_control_characters() {
        let space = space();
        for bad in ["a b", "a\tb", "a\nb", "a\u{0}b", "a\u{3000}b", "\u{7f}"] {
            let err = space.pattern(bad).unwrap_err();
            assert!(err.contains("not allowed"), "{err}");
        }
    }

    #[test]
    fn with_resource_version_rejects_invalid_names() {
        let err = space().with_resource_version("a b", 2).unwrap_err();
        assert!(
            err.contains("resource name") && err.contains("\"a b\""),
            "{err}"
        );
        assert!(space().with_resource_version("", 2).is_err());
        assert!(space().with_resource_version(&"r".repeat(65), 2).is_err());
    }

    #[test]
    fn with_resource_version_does_not_change_other_clones() {
        let base = space();
        let versioned = base.clone().with_resource_version("users", 3).unwrap();
        assert_eq!(base.resource_version("users"), None);
        assert_eq!(versioned.resource_version("users"), Some(3));
        assert_eq!(base.key("users").build().as_str(), "app:v1:users");
        assert_eq!(versioned.key("users").build().as_str(), "app:v1:users#v3");
    }

    // ---- key layout ----

    #[test]
    fn key_with_only_a_resource_is_prefix_and_resource() {
        let key = space().key("users").build();
        assert_eq!(key.as_str(), "app:v1:users");
        assert_eq!(key.resource(), "users");
    }

    #[test]
    fn worked_example_from_the_module_docs() {
        let space = KeySpace::new("shop", 3, 256)
            .unwrap()
            .with_resource_version("products", 2)
            .unwrap();
        assert_eq!(
            canonical_query([("sort", "price"), ("page", "2"), ("q", "red shoes")]),
            "page=2&q=red%20shoes&sort=price"
        );
        assert_eq!(
            stable_hash_hex(b"page=2&q=red%20shoes&sort=price"),
            "d1b83d9335a5f6b36b40584dd628b37c"
        );
        let key = space
            .key("products")
            .id(42)
            .user("alice smith")
            .param("sort", "price")
            .param("page", 2)
            .param("q", "red shoes")
            .build();
        assert_eq!(
            key.as_str(),
            "shop:v3:products#v2:42:user=alice%20smith:q=d1b83d9335a5f6b36b40584dd628b37c"
        );
    }

    #[test]
    fn stable_hash_matches_published_xxh3_128_vectors() {
        assert_eq!(stable_hash_hex(b""), "99aa06d3014798d86001c324468d497f");
        assert_eq!(stable_hash_hex(b"a=1"), "20f106841ad9acc5bb39e74e05494829");
        assert_eq!(stable_hash_hex(b"x").len(), 32);
    }

    #[test]
    fn ids_are_appended_in_call_order() {
        let key = space().key("orders").id(7).id("items").id(3u8).build();
        assert_eq!(key.as_str(), "app:v1:orders:7:items:3");
        let swapped = space().key("orders").id("items").id(7).id(3).build();
        assert_ne!(key, swapped);
    }

    #[test]
    fn ids_are_sanitised_not_replaced() {
        let key = space().key("files").id("a b:c").build();
        assert_eq!(key.as_str(), "app:v1:files:a%20b%3Ac");
        assert_ne!(
            space().key("files").id("a b").build(),
            space().key("files").id("a_b").build()
        );
    }

    #[test]
    fn empty_id_is_a_distinct_segment() {
        let none = space().key("r").build();
        let empty = space().key("r").id("").build();
        assert_eq!(empty.as_str(), "app:v1:r:");
        assert_ne!(none, empty);
    }

    #[test]
    fn configured_resource_version_is_appended_to_the_resource() {
        let space = space().with_resource_version("users", 5).unwrap();
        let key = space.key("users").id(1).build();
        assert_eq!(key.as_str(), "app:v1:users#v5:1");
        assert_eq!(key.resource(), "users");
    }

    #[test]
    fn per_key_version_overrides_the_resource_version() {
        let space = space().with_resource_version("users", 5).unwrap();
        assert_eq!(
            space.key("users").version(9).build().as_str(),
            "app:v1:users#v9"
        );
        assert_eq!(
            space.key("posts").version(2).build().as_str(),
            "app:v1:posts#v2"
        );
    }

    #[test]
    fn user_scope_is_sanitised() {
        let key = space().key("me").user("Jane Doe").build();
        assert_eq!(key.as_str(), "app:v1:me:user=Jane%20Doe");
    }

    #[test]
    fn user_secret_scope_is_a_sha256_prefix() {
        let key = space().key("me").user_secret("tok").build();
        let expected = "app:v1:me:user=1a7674eb4ee78df7e1ac439a93c3fa8e";
        assert_eq!(key.as_str(), expected);
        assert!(!key.as_str().contains("tok"));
    }

    #[test]
    fn last_user_call_wins() {
        let key = space().key("me").user("a").user("b").build();
        assert_eq!(key.as_str(), "app:v1:me:user=b");
    }

    #[test]
    fn user_segment_comes_after_ids_and_before_params() {
        let key = space().key("r").user("u").id(1).param("a", 1).build();
        let q = stable_hash_hex(b"a=1");
        assert_eq!(key.as_str(), format!("app:v1:r:1:user=u:q={q}"));
    }

    // ---- params ----

    #[test]
    fn no_params_means_no_q_segment() {
        assert!(!space()
            .key("r")
            .param("a", "")
            .build()
            .as_str()
            .contains(":q="));
    }

    #[test]
    fn param_order_of_distinct_names_does_not_matter() {
        let a = space().key("r").param("a", 1).param("b", 2).build();
        let b = space().key("r").param("b", 2).param("a", 1).build();
        assert_eq!(a, b);
    }

    #[test]
    fn repeated_params_are_order_significant() {
        let a = space().key("r").param("tag", "a").param("tag", "b").build();
        let b = space().key("r").param("tag", "b").param("tag", "a").build();
        assert_ne!(a, b);
        assert_eq!(
            canonical_query([("tag", "b"), ("x", "1"), ("tag", "a")]),
            "tag=b&tag=a&x=1"
        );
    }

    #[test]
    fn param_set_sorts_and_dedups_values() {
        let a = space()
            .key("r")
            .param_set("tag", ["b", "a", "b", ""])
            .build();
        let b = space().key("r").param_set("tag", vec![1, 1]).build();
        let c = space().key("r").param("tag", "a").param("tag", "b").build();
        assert_eq!(a, c);
        assert_eq!(b, space().key("r").param("tag", 1).build());
    }

    #[test]
    fn empty_values_and_none_are_dropped() {
        let plain = space().key("r").param("a", 1).build();
        let with_empty = space()
            .key("r")
            .param("a", 1)
            .param("b", "")
            .param_opt::<u32>("c", None)
            .params([("d", "")])
            .build();
        assert_eq!(plain, with_empty);
        let some = space().key("r").param_opt("a", Some(1)).build();
        assert_eq!(plain, some);
    }

    #[test]
    fn params_takes_pairs_in_order() {
        let a = space()
            .key("r")
            .params(vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".into(), "2".into()),
            ])
            .build();
        assert_eq!(a, space().key("r").param("a", 1).param("b", 2).build());
    }

    #[test]
    fn canonical_query_keeps_only_unreserved_characters() {
        assert_eq!(
            canonical_query([("k y", "a&b=c/é~-._")]),
            "k%20y=a%26b%3Dc%2F%C3%A9~-._"
        );
        assert_eq!(canonical_query(Vec::<(&str, &str)>::new()), "");
    }

    #[test]
    fn canonical_query_sorts_by_bytes() {
        assert_eq!(
            canonical_query([("b", "1"), ("B", "2"), ("a", "3"), ("é", "4")]),
            "B=2&a=3&b=1&%C3%A9=4"
        );
    }

    #[test]
    fn query_string_gives_the_same_key_as_params() {
        let a = space().key("r").query("b=2&a=x+y&c=%41%20").build();
        let b = space()
            .key("r")
            .param("a", "x y")
            .param("b", 2)
            .param("c", "A ")
            .build();
        assert_eq!(a, b);
    }

    #[test]
    fn query_drops_empty_values_and_valueless_flags() {
        let a = space().key("r").query("?a=1&b=&flag&&").build();
        assert_eq!(a, space().key("r").param("a", 1).build());
    }

    #[test]
    fn query_keeps_invalid_escapes_literally_and_decodes_bad_utf8_lossily() {
        let a = space().key("r").query("a=%zz&b=%4&c=%&d=%FF").build();
        let b = space()
            .key("r")
            .param("a", "%zz")
            .param("b", "%4")
            .param("c", "%")
            .param("d", "\u{FFFD}")
            .build();
        assert_eq!(a, b);
    }

    #[test]
    fn query_plus_and_encoded_plus_differ() {
        let plus = space().key("r").query("a=x+y").build();
        let encoded = space().key("r").query("a=x%2By").build();
        assert_ne!(plus, encoded);
    }

    #[test]
    fn exclude_applies_to_params_added_before_and_after() {
        let expected = space().key("r").param("a", 1).build();
        let before = space()
            .key("r")
            .param("cache_bypass", 1)
            .exclude("cache_bypass")
            .param("a", 1)
            .build();
        let after = space()
            .key("r")
            .exclude("cache_bypass")
            .query("a=1&cache_bypass=true")
            .build();
        assert_eq!(before, expected);
        assert_eq!(after, expected);
    }

    #[test]
    fn secret_values_are_replaced_by_a_sha256_prefix() {
        let key = space().key("r").secret("api_key", "hunter2").build();
        let hash = secret_hex(b"hunter2");
        assert_eq!(hash, "f52fbd32b2b3b86ff88ef6c490628285");
        let expected = space().key("r").param("api_key", &hash).build();
        assert_eq!(key, expected);
        assert!(!key.as_str().contains("hunter2"));
    }

    #[test]
    fn empty_secret_is_dropped() {
        assert_eq!(
            space().key("r").secret("k", "").build().as_str(),
            "app:v1:r"
        );
    }

    // ---- length limit ----

    #[test]
    fn over_long_key_is_replaced_by_head_and_hash() {
        let space = KeySpace::new("app", 1, 128).unwrap();
        let long_id = "x".repeat(200);
        let full = format!("app:v1:users#v2:{long_id}");
        let key = space.key("users").version(2).id(&long_id).build();
        assert_eq!(
            key.as_str(),
            format!("app:v1:users#v2:h={}", stable_hash_hex(full.as_bytes()))
        );
        assert_eq!(key.resource(), "users");
        assert!(key.len() <= 128);
    }

    #[test]
    fn key_of_exactly_max_len_is_kept() {
        let space = KeySpace::new("app", 1, 128).unwrap();
        let id = "x".repeat(128 - "app:v1:r:".len());
        let key = space.key("r").id(&id).build();
        assert_eq!(key.len(), 128);
        assert!(key.as_str().ends_with(&id));
    }

    #[test]
    fn distinct_long_keys_stay_distinct() {
        let space = KeySpace::new("app", 1, 128).unwrap();
        let a = space.key("r").id("a".repeat(300)).build();
        let b = space.key("r").id("b".repeat(300)).build();
        assert_ne!(a, b);
    }

    #[test]
    fn worst_case_key_fits_the_minimum_max_len() {
        let ns = "n".repeat(64);
        let space = KeySpace::new(&ns, u32::MAX, 188).unwrap();
        let key = space
            .key(&"r".repeat(64))
            .version(u32::MAX)
            .id("i".repeat(1000))
            .build();
        assert_eq!(key.len(), 188);
        let weird = space.key(&"é ".repeat(500)).version(u32::MAX).id(1).build();
        assert!(weird.len() <= 188);
    }

    // ---- resource names ----

    #[test]
    fn invalid_resource_is_sanitised_without_panicking() {
        let key = space().key("users list").id(1).build();
        assert_eq!(key.as_str(), "app:v1:users%20list:1");
        assert_eq!(key.resource(), "users%20list");
        assert_eq!(space().key("a/b").build().resource(), "a/b");
        assert_eq!(space().key("a~b").build().resource(), "a%7Eb");
        assert_eq!(space().key("").build().as_str(), "app:v1:");
        assert_eq!(space().key("a#v2").build().resource(), "a%23v2");
    }

    #[test]
    fn over_long_resource_is_cut_with_a_hash_suffix() {
        let name = "r".repeat(100);
        let key = space().key(&name).build();
        let expected = format!(
            "{}~{}",
            "r".repeat(48),
            &stable_hash_hex(name.as_bytes())[..8]
        );
        assert_eq!(key.resource(), expected);
        assert_eq!(key.resource().len(), 57);
        let other = space().key(&"r".repeat(101)).build();
        assert_ne!(key, other);
    }

    #[test]
    fn resource_cut_never_splits_an_escape_or_a_char() {
        for pad in 0..4 {
            let name = format!("{}{}", "a".repeat(pad), " ".repeat(40));
            let seg = resource_segment(&name);
            let body = seg.split('~').next().unwrap();
            assert!(body.len() <= RESOURCE_CUT);
            assert_eq!(unsanitize(body), name[..unsanitize(body).len()]);
            let name = "é".repeat(40);
            let seg = resource_segment(&name);
            assert!(seg.starts_with(&"é".repeat(24)), "{seg}");
        }
    }

    // ---- sanitize_segment ----

    #[test]
    fn sanitize_borrows_clean_segments() {
        assert!(matches!(sanitize_segment("abc-é_1.~/"), Cow::Borrowed(_)));
    }

    #[test]
    fn sanitize_encodes_every_special_character() {
        assert_eq!(
            sanitize_segment("%:=#*?[]\\{}\""),
            "%25%3A%3D%23%2A%3F%5B%5D%5C%7B%7D%22"
        );
        assert_eq!(sanitize_segment("\t\n\u{0}\u{7f}"), "%09%0A%00%7F");
    }

    #[test]
    fn sanitize_encodes_unicode_whitespace_per_utf8_byte() {
        assert_eq!(sanitize_segment("a\u{3000}b"), "a%E3%80%80b");
        assert_eq!(sanitize_segment("\u{85}"), "%C2%85");
        assert_eq!(sanitize_segment("\u{a0}"), "%C2%A0");
    }

    // ---- CacheKey ----

    #[test]
    fn cache_key_accessors() {
        let key = space().key("users").id(1).build();
        assert_eq!(key.to_string(), "app:v1:users:1");
        assert_eq!(key.as_ref() as &str, "app:v1:users:1");
        assert_eq!(key.len(), 14);
        assert!(!key.is_empty());
        assert_eq!(String::from(key.clone()), "app:v1:users:1");
        assert_eq!(key.into_string(), "app:v1:users:1");
    }

    #[test]
    fn from_parts_unchecked_finds_or_keeps_the_resource() {
        let built = space().key("users").id(1).build();
        let parsed = CacheKey::from_parts_unchecked("app:v1:users:1".to_owned(), "users");
        assert_eq!(parsed, built);
        assert_eq!(parsed.resource(), "users");
        let detached = CacheKey::from_parts_unchecked("opaque".to_owned(), "users");
        assert_eq!(detached.resource(), "users");
        assert_eq!(detached.as_str(), "opaque");
        let empty = CacheKey::from_parts_unchecked(String::new(), "");
        assert!(empty.is_empty());
        assert_eq!(empty.resource(), "");
    }

    #[test]
    fn cache_keys_compare_and_hash_by_string() {
        let a = space().key("users").id(1).build();
        let mut set = HashSet::new();
        set.insert(a.clone());
        assert!(set.contains("app:v1:users:1"));
        assert!(set.contains(&CacheKey::from_parts_unchecked(
            "app:v1:users:1".into(),
            "zzz"
        )));
        let b = space().key("users").id(2).build();
        assert!(a < b);
        assert!(format!("{a:?}").contains("app:v1:users:1"));
    }

    #[test]
    fn keyspace_errors_quote_long_values_briefly() {
        let err = KeySpace::new(&" ".repeat(10_000), 1, 256).unwrap_err();
        assert!(err.len() < 400, "{}", err.len());
    }

    // ---- properties ----

    fn name() -> impl Strategy<Value = String> {
        "[a-z_]{1,8}"
    }

    fn any_text(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..max).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn prop_param_order_never_changes_the_key(
            (pairs, shuffled) in prop::collection::btree_map(name(), any_text(12), 0..8)
                .prop_flat_map(|m| {
                    let v: Vec<(String, String)> = m.into_iter().collect();
                    (Just(v.clone()), Just(v).prop_shuffle())
                })
        ) {
            let a = space().key("r").params(pairs).build();
            let b = space().key("r").params(shuffled).build();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn prop_distinct_param_sets_give_distinct_keys(
            a in prop::collection::btree_map(any_text(6), any_text(6), 0..5),
            b in prop::collection::btree_map(any_text(6), any_text(6), 0..5),
        ) {
            let a: BTreeMap<_, _> = a.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            let b: BTreeMap<_, _> = b.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            prop_assume!(a != b);
            let ka = space().key("r").params(&a).build();
            let kb = space().key("r").params(&b).build();
            prop_assert_ne!(ka, kb);
        }

        #[test]
        fn prop_keys_have_no_whitespace_or_controls_and_respect_max_len(
            ns in "[A-Za-z0-9_.-]{1,64}",
            global in any::<u32>(),
            extra in 0usize..300,
            resource in prop_oneof![any_text(20), any_text(400), "[a-z]{1,64}"],
            ids in prop::collection::vec(any_text(200), 0..4),
            user in prop::option::of(any_text(300)),
            params in prop::collection::vec((any_text(30), any_text(300)), 0..4),
            version in prop::option::of(any::<u32>()),
            huge in prop::option::of(5_000usize..20_000),
        ) {
            let max_len = KeySpace::min_max_len(&ns, global) + extra;
            let space = KeySpace::new(&ns, global, max_len).unwrap();
            let mut b = space.key(&resource);
            for id in &ids {
                b = b.id(id);
            }
            if let Some(n) = huge {
                b = b.id("\u{2003}".repeat(n));
            }
            if let Some(user) = &user {
                b = b.user(user);
            }
            if let Some(v) = version {
                b = b.version(v);
            }
            let key = b.params(params.iter().map(|(k, v)| (k, v))).build();
            assert_key_invariants(&key, &space);
            prop_assert!(key.resource().len() <= MAX_NAME_LEN);
            prop_assert!(key.as_str()[space.prefix().len()..].starts_with(key.resource()));
        }

        #[test]
        fn prop_sanitize_is_injective_and_clean(a in any_text(40), b in any_text(40)) {
            let sa = sanitize_segment(&a);
            let sb = sanitize_segment(&b);
            prop_assert_eq!(unsanitize(&sa), a.clone());
            if a != b {
                prop_assert_ne!(&sa, &sb);
            }
            prop_assert!(!sa.chars().any(needs_encoding_except_percent));
        }

        #[test]
        fn prop_secret_values_never_appear_in_the_key(
            secret in "[A-Za-z0-9 ]{12,40}",
            token in "[A-Za-z0-9]{12,40}",
        ) {
            let key = space().key("r").secret("k", &secret).user_secret(&token).build();
            let s = key.as_str();
            prop_assert!(!s.contains(&secret));
            prop_assert!(!s.contains(&*sanitize_segment(&secret)));
            prop_assert!(!s.contains(&token));
        }

        #[test]
        fn prop_query_parsing_never_panics(raw in any_text(100)) {
            let key = space().key("r").query(&raw).build();
            assert_key_invariants(&key, &space());
        }

        #[test]
        fn prop_ids_are_injective(a in prop::collection::vec(any_text(8), 0..3),
                                  b in prop::collection::vec(any_text(8), 0..3)) {
            prop_assume!(a != b);
            let ka = a.iter().fold(space().key("r"), |k, id| k.id(id)).build();
            let kb = b.iter().fold(space().key("r"), |k, id| k.id(id)).build();
            prop_assert_ne!(ka, kb);
        }

        #[test]
        fn prop_param_set_ignores_order_and_repeats(values in prop::collection::vec("[a-c]{0,2}", 0..6)) {
            let mut rev = values.clone();
            rev.reverse();
            rev.extend(values.iter().cloned());
            let a = space().key("r").param_set("t", &values).build();
            let b = space().key("r").param_set("t", &rev).build();
            prop_assert_eq!(a, b);
            let set: BTreeSet<&String> = values.iter().filter(|v| !v.is_empty()).collect();
            let c = space().key("r").params(set.iter().map(|v| ("t", v.as_str()))).build();
            prop_assert_eq!(space().key("r").param_set("t", &values).build(), c);
        }
    }

    fn needs_encoding_except_percent(c: char) -> bool {
        c != '%' && needs_encoding(c)
    }
}
