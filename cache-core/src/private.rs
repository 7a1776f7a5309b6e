//! The hidden runtime called by the code that `#[cached]` and `#[invalidates]` generate.
//!
//! **Not a public API**: everything here may change in any release. The macros refer to it by
//! absolute path (`::cache_core::__private::...`, or `<crate>::__private::...` with the
//! `crate = "..."` option), so the names used by user code never interfere with it.
//!
//! Two parts:
//! * the glue the macros call: [`resolve_cache`], [`KeyDraft`], [`run`], [`run_wrapped`], [`Shape`],
//!   [`ShapeProbe`], [`invalidate_after`], [`defer_tags`];
//! * the per-request context for HTTP adapters ([`RequestContext`]): a `tokio` task-local that
//!   carries "bypass the cache" and the user scope into `#[cached]` functions, and carries the
//!   outcome of the last `#[cached]` call back out (for `X-Cache-*` headers).
//!
//! ```
//! use std::sync::Arc;
//! use cache_core::__private::{self as p, RequestContext};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let ctx = Arc::new(RequestContext::new(true, Some("alice".into())));
//! let seen = p::with_request_context(ctx.clone(), async {
//!     (p::current_bypass(), p::current_user())
//! })
//! .await;
//! assert_eq!(seen, (true, Some("alice".to_owned())));
//! assert!(!p::current_bypass()); // outside the scope: defaults
//! assert!(ctx.take_outcome().is_none());
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

pub use crate::{Cache, CacheKey, CacheStatus, PendingInvalidation, Policy};
pub use std::format;
pub use std::option::Option::Some;
pub use std::string::String;
pub use std::time::Duration as StdDuration;
pub use std::vec::Vec;

// ------------------------------------------------------------------------------ cache selection

/// Something a `cache = <expr>` option may evaluate to: a [`Cache`], a reference to one, an
/// `Arc<Cache>`, or an `Option` of those (`None`: run uncached).
pub trait AsCache {
    /// The cache, if any.
    fn as_cache(&self) -> Option<&Cache>;
}

impl AsCache for Cache {
    fn as_cache(&self) -> Option<&Cache> {
        Some(self)
    }
}

impl<T: AsCache + ?Sized> AsCache for &T {
    fn as_cache(&self) -> Option<&Cache> {
        (**self).as_cache()
    }
}

impl<T: AsCache + ?Sized> AsCache for Arc<T> {
    fn as_cache(&self) -> Option<&Cache> {
        (**self).as_cache()
    }
}

impl<T: AsCache> AsCache for Option<T> {
    fn as_cache(&self) -> Option<&Cache> {
        self.as_ref().and_then(AsCache::as_cache)
    }
}

/// The cache selected by a `cache = <expr>` option.
pub fn resolve_cache<C: AsCache + ?Sized>(cache: &C) -> Option<&Cache> {
    cache.as_cache()
}

/// Set once the missing default cache was reported.
static NO_DEFAULT_REPORTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The process-wide default cache (no `cache = ...` option). Without one, the first call in the
/// process logs a warning (`cache_no_default_cache`): the function runs uncached, and an
/// `#[invalidates]` function invalidates nothing.
pub fn default_cache() -> Option<&'static Cache> {
    use std::sync::atomic::Ordering::Relaxed;
    let cache = crate::default_cache();
    if cache.is_none()
        && !NO_DEFAULT_REPORTED.load(Relaxed)
        && !NO_DEFAULT_REPORTED.swap(true, Relaxed)
    {
        tracing::warn!(
            name: "cache_no_default_cache", event = "cache_no_default_cache",
            "a #[cached] or #[invalidates] function without `cache = ...` ran before \
             `cache_core::install_default`: it runs uncached and invalidates nothing until a \
             default cache is installed (reported once)"
        );
    }
    cache
}

// ------------------------------------------------------------------------------------- keys

/// A key under construction; `None` once the cache is absent or a part could not be encoded
/// (the call then runs uncached).
#[derive(Debug)]
pub struct KeyDraft<'a> {
    builder: Option<crate::KeyBuilder<'a>>,
}

impl<'a> KeyDraft<'a> {
    /// Starts a key for `resource` in `cache`'s keyspace.
    pub fn new(cache: Option<&'a Cache>, resource: &str) -> KeyDraft<'a> {
        KeyDraft {
            builder: cache.map(|c| c.key(resource)),
        }
    }

    /// Adds a hashed parameter: `value` encoded as JSON (`serde_json`), so strings, numbers,
    /// `Option`s, `Vec`s and serializable structs all work. A value that cannot be encoded
    /// (a map with non-string keys, a failing `Serialize` impl) makes the call run uncached.
    pub fn param<T: KeyPart + ?Sized>(&mut self, name: &str, value: &T) {
        self.builder = self.builder.take().and_then(|b| match serde_json::to_string(value) {
            Ok(json) => Some(b.param(name, json)),
            Err(e) => {
                tracing::debug!(name: "cache_skip", event = "cache_skip", param = name, error = %e, "key part not encodable; running uncached");
                None
            }
        });
    }

    /// Adds an id segment (formatted with `Display`).
    pub fn id(&mut self, id: impl fmt::Display) {
        self.builder = self.builder.take().map(|b| b.id(id));
    }

    /// Scopes the key to a user.
    pub fn user(&mut self, user: impl fmt::Display) {
        self.builder = self.builder.take().map(|b| b.user(user));
    }

    /// Sets the resource schema version.
    pub fn version(&mut self, version: u32) {
        self.builder = self.builder.take().map(|b| b.version(version));
    }

    /// The key, if the call is to be cached.
    pub fn build(self) -> Option<CacheKey> {
        self.builder.map(crate::KeyBuilder::build)
    }
}

/// Implemented by every type a `#[cached]` key argument may have (`Serialize`); the bound is
/// checked on the argument's span. Every argument is in the default key except `State<T>`,
/// `Data<T>` and `Extension<T>` extractors, the argument named by `cache = <argument>`, and
/// those listed in `skip`, so a database pool or a client that is not `Serialize` fails here.
#[diagnostic::on_unimplemented(
    message = "`#[cached]` key arguments must implement `Serialize`: `{Self}` does not",
    label = "this argument is part of the cache key, so it must be `Serialize`",
    note = "if this argument does not change the result (a database pool, a client, a handle), leave it out of the key: add its name to the `skip = [..]` option of `#[cached]`",
    note = "if it does change the result, derive `serde::Serialize` for its type, or name the arguments that make the key: `key = [a, b]`"
)]
pub trait KeyPart: Serialize {}

impl<T: Serialize + ?Sized> KeyPart for T {}

// ----------------------------------------------------------------------------- return shapes

/// How a return type is cached: `Result<..>` ([`ResultShape`]), `Option<..>` ([`OptionShape`]),
/// anything else ([`PlainShape`]). `#[cached]` picks it from the return type itself with
/// [`ShapeProbe`] (so type aliases work); `#[invalidates]` from the written return type's last
/// path segment.
pub trait Shape<R> {
    /// The cached part of the return value.
    type Value;
    /// `Ok(value)` to cache, `Err(r)` to return `r` without caching.
    fn split(r: R) -> Result<Self::Value, R>;
    /// Rebuilds the return value from a cached value.
    fn join(v: Self::Value) -> R;
    /// Whether `r` counts as success (for `#[invalidates]`).
    fn succeeded(r: &R) -> bool;
    /// The success value of `r` (`Ok` / `Some` / the value), for `{result}` in `#[invalidates]`
    /// tags.
    fn value(r: &R) -> Option<&Self::Value>;
}

/// Any type: always cached.
#[derive(Debug)]
pub enum PlainShape {}

impl<T> Shape<T> for PlainShape {
    type Value = T;
    fn split(r: T) -> Result<T, T> {
        Ok(r)
    }
    fn join(v: T) -> T {
        v
    }
    fn succeeded(_: &T) -> bool {
        true
    }
    fn value(r: &T) -> Option<&T> {
        Some(r)
    }
}

/// `Result<T, E>`: `Ok(T)` is cached, `Err(E)` passes through.
#[derive(Debug)]
pub enum ResultShape {}

impl<T, E> Shape<Result<T, E>> for ResultShape {
    type Value = T;
    fn split(r: Result<T, E>) -> Result<T, Result<T, E>> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(Err(e)),
        }
    }
    fn join(v: T) -> Result<T, E> {
        Ok(v)
    }
    fn succeeded(r: &Result<T, E>) -> bool {
        r.is_ok()
    }
    fn value(r: &Result<T, E>) -> Option<&T> {
        r.as_ref().ok()
    }
}

/// `Option<T>`: `Some(T)` is cached, `None` is not (the next call runs the body again).
#[derive(Debug)]
pub enum OptionShape {}

impl<T> Shape<Option<T>> for OptionShape {
    type Value = T;
    fn split(r: Option<T>) -> Result<T, Option<T>> {
        r.ok_or(None)
    }
    fn join(v: T) -> Option<T> {
        Some(v)
    }
    fn succeeded(_: &Option<T>) -> bool {
        true
    }
    fn value(r: &Option<T>) -> Option<&T> {
        r.as_ref()
    }
}

/// The return type `R` of a `#[cached]` function, probed for its shape by autoref
/// specialization: the macro calls `ShapeProbe::<R>::new().__cache_core_shape()` with
/// [`KnownShape`] and [`PlainFallback`] in scope. Method lookup tries the probe by value first,
/// where only [`KnownShape`] (implemented for `ShapeProbe<Result<T, E>>` and
/// `ShapeProbe<Option<T>>`) can match, then by reference, where [`PlainFallback`] (implemented
/// for every `&ShapeProbe<R>`) does. The shape is thus that of the type, not of its name:
/// `type ApiResult<T> = Result<T, ApiError>` is a `Result`. `R` must be known at the call (it
/// is the written return type).
///
/// ```
/// use cache_core::__private::{KnownShape as _, PlainFallback as _, ShapeProbe, ShapeToken};
/// use cache_core::__private::{OptionShape, PlainShape, ResultShape};
///
/// type ApiResult<T> = Result<T, String>;
/// type Maybe<T> = Option<T>;
/// let _: ShapeToken<ResultShape> = ShapeProbe::<ApiResult<u32>>::new().__cache_core_shape();
/// let _: ShapeToken<OptionShape> = ShapeProbe::<Maybe<u32>>::new().__cache_core_shape();
/// let _: ShapeToken<PlainShape> = ShapeProbe::<Vec<u32>>::new().__cache_core_shape();
/// ```
pub struct ShapeProbe<R>(PhantomData<fn() -> R>);

impl<R> ShapeProbe<R> {
    /// The probe for `R`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> ShapeProbe<R> {
        ShapeProbe(PhantomData)
    }
}

impl<R> fmt::Debug for ShapeProbe<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShapeProbe")
    }
}

/// A zero-sized value whose type names the shape `S` a [`ShapeProbe`] found; passed to [`run`]
/// and [`run_wrapped`], which infer `S` from it.
pub struct ShapeToken<S>(PhantomData<fn() -> S>);

impl<S> ShapeToken<S> {
    /// The token for `S` (for callers that know the shape, such as the Actix response path).
    #[allow(clippy::new_without_default)]
    pub fn new() -> ShapeToken<S> {
        ShapeToken(PhantomData)
    }
}

impl<S> fmt::Debug for ShapeToken<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShapeToken")
    }
}

/// The by-value half of [`ShapeProbe`]: `Result` and `Option` return types.
pub trait KnownShape {
    /// [`ResultShape`] or [`OptionShape`].
    type Shape;
    /// The token of [`KnownShape::Shape`].
    fn __cache_core_shape(self) -> ShapeToken<Self::Shape>;
}

impl<T, E> KnownShape for ShapeProbe<Result<T, E>> {
    type Shape = ResultShape;
    fn __cache_core_shape(self) -> ShapeToken<ResultShape> {
        ShapeToken::new()
    }
}

impl<T> KnownShape for ShapeProbe<Option<T>> {
    type Shape = OptionShape;
    fn __cache_core_shape(self) -> ShapeToken<OptionShape> {
        ShapeToken::new()
    }
}

/// The autoref'd half of [`ShapeProbe`]: every other return type is cached whole.
pub trait PlainFallback {
    /// The token of [`PlainShape`].
    fn __cache_core_shape(self) -> ShapeToken<PlainShape>;
}

impl<R> PlainFallback for &ShapeProbe<R> {
    fn __cache_core_shape(self) -> ShapeToken<PlainShape> {
        ShapeToken::new()
    }
}

/// Implemented by every type a `#[cached]` function may cache ([`run`] requires it; the macro
/// gives the call the return type's span so that a missing bound is reported there).
#[diagnostic::on_unimplemented(
    message = "`#[cached]` values must implement `Serialize` and `DeserializeOwned`: `{Self}` does not",
    label = "the cached value `{Self}` must be `Serialize + DeserializeOwned`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`",
    note = "a `Json<T>` is cached as `T` only where the return type writes it out (`Json<T>`, `Result<Json<T>, E>`, `Option<Json<T>>`); behind a type alias it is not seen, so write the `Json<..>` return type out, or return `T`"
)]
pub trait Cacheable: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Cacheable for T {}

/// Pins the output type of a function body's future (so `?` and `return` in the body infer as
/// in the original function).
pub fn typed<R, F: Future<Output = R>>(f: F) -> F {
    f
}

/// Runs the body of a plain `fn` under `#[invalidates(defer = ..)]` as a closure of the
/// declared return type (its `return` and `?` stay inside it, as in an `async` block).
#[inline(always)]
pub fn typed_sync<R, F: FnOnce() -> R>(f: F) -> R {
    f()
}

// ------------------------------------------------------------------------------ read-through

/// The body of a `#[cached]` function: read-through with `body` as the loader.
///
/// Without a cache or key, `body` runs uncached. `unless(&r) == true` returns `r` without
/// storing it. The bypass flag of the current [`RequestContext`] is honoured, and the outcome is
/// recorded in it. Cache errors never surface: the engine falls through to the loader. `shape`
/// only names the [`Shape`] (from a [`ShapeProbe`]).
pub async fn run<R, S, Fut, U>(
    cache: Option<&Cache>,
    key: Option<CacheKey>,
    policy: Policy,
    body: Fut,
    unless: U,
    shape: ShapeToken<S>,
) -> R
where
    S: Shape<R>,
    S::Value: Cacheable,
    Fut: Future<Output = R>,
    U: FnOnce(&R) -> bool,
{
    let parts = Wrapping {
        unwrap: |r| r,
        wrap: |r| r,
        whole_response: false,
    };
    read_through::<R, R, S, Fut, U, _, _>(cache, key, policy, body, unless, parts, shape).await
}

/// How `W` is cached as `R` (see [`run_wrapped`]), and whether the value is a whole response.
struct Wrapping<I, O> {
    unwrap: I,
    wrap: O,
    whole_response: bool,
}

/// [`run`] for a return type `W` that is cached in another form `R`: the macro uses it for
/// `Json<T>` returns (`W = Json<T>`, `R = T`; `Result<Json<T>, E>` gives `R = Result<T, E>`).
/// `unwrap` turns the body's value into `R` before the shape splits it; `wrap` turns a cached
/// (or not cached) `R` back into `W`. `unless` sees the value as written (`&W`). `_shape` only
/// names the [`Shape`] of `R`.
#[allow(clippy::too_many_arguments)]
pub async fn run_wrapped<W, R, S, Fut, U, I, O>(
    cache: Option<&Cache>,
    key: Option<CacheKey>,
    policy: Policy,
    body: Fut,
    unless: U,
    unwrap: I,
    wrap: O,
    shape: ShapeToken<S>,
) -> W
where
    S: Shape<R>,
    S::Value: Cacheable,
    Fut: Future<Output = W>,
    U: FnOnce(&W) -> bool,
    I: FnOnce(W) -> R,
    O: Fn(R) -> W,
{
    // The value of a `Json<T>` handler: its payload is the response body.
    let parts = Wrapping {
        unwrap,
        wrap,
        whole_response: true,
    };
    read_through(cache, key, policy, body, unless, parts, shape).await
}

async fn read_through<W, R, S, Fut, U, I, O>(
    cache: Option<&Cache>,
    key: Option<CacheKey>,
    policy: Policy,
    body: Fut,
    unless: U,
    parts: Wrapping<I, O>,
    _shape: ShapeToken<S>,
) -> W
where
    S: Shape<R>,
    S::Value: Cacheable,
    Fut: Future<Output = W>,
    U: FnOnce(&W) -> bool,
    I: FnOnce(W) -> R,
    O: Fn(R) -> W,
{
    let (Some(cache), Some(key)) = (cache, key) else {
        return body.await;
    };
    let policy = if current_bypass() {
        policy.bypass(true)
    } else {
        policy
    };
    let Wrapping {
        unwrap,
        wrap,
        whole_response,
    } = parts;
    let wrap = &wrap;
    let loader = || async move {
        let w = body.await;
        if unless(&w) {
            return Err(w);
        }
        S::split(unwrap(w)).map_err(wrap)
    };
    // A `Json<T>` handler's value comes with its stored JSON payload, which the context layer
    // sends as the body (byte for byte what the miss sent).
    let fmt = crate::cache::read::WithPayload(crate::cache::read::Serde::<S::Value, W>::new(
        cache.codec(),
    ));
    let loader = || async move { loader().await.map(|v| (v, None)) };
    match cache
        .read_through(&key, &policy, &fmt, loader, crate::cache::Inline)
        .await
    {
        Ok(fetched) => {
            let mut outcome = Outcome::of(&key, &fetched);
            outcome.whole_response = whole_response;
            let (value, payload) = fetched.value;
            if whole_response {
                outcome.body = payload;
            }
            record_outcome(outcome);
            wrap(S::join(value))
        }
        Err(failed) => {
            record_outcome(Outcome::failed(&key, failed.status));
            failed.error
        }
    }
}

/// The body of a `#[cached]` handler that returns a finished HTTP response (an Axum
/// `Response` / `impl IntoResponse`, an Actix `HttpResponse` / `impl Responder`): the adapter
/// turns the handler's response into an [`Origin`](crate::http::Origin) and this caches it
/// through the same engine and stored format as the response layers. `Ok` is a response to
/// rebuild (stored, served from the cache, or shared), `Err` the handler's own response.
#[cfg(feature = "http")]
pub async fn run_http<P, Fut>(
    cache: Option<&Cache>,
    key: Option<CacheKey>,
    policy: Policy,
    body: Fut,
) -> Result<crate::http::StoredResponse, P>
where
    Fut: Future<Output = crate::http::Origin<P>>,
{
    use crate::http::Origin;
    let (Some(cache), Some(key)) = (cache, key) else {
        return match body.await {
            Origin::Store(r) | Origin::Share(r) => Ok(r),
            Origin::Own { response, .. } => Err(response),
        };
    };
    let policy = if current_bypass() {
        policy.bypass(true)
    } else {
        policy
    };
    let fmt = crate::http::ResponseFormat::<P>::new();
    let loader = || async move { body.await.into_result() };
    match cache
        .read_through(&key, &policy, &fmt, loader, crate::cache::Inline)
        .await
    {
        Ok(fetched) => {
            let mut outcome = Outcome::of(&key, &fetched);
            outcome.whole_response = true;
            record_outcome(outcome);
            Ok(fetched.value)
        }
        Err(failed) => {
            record_outcome(Outcome::failed(&key, failed.status));
            match failed.error {
                crate::http::Unstored::Share(r) => Ok(r),
                crate::http::Unstored::Own { response, .. } => Err(response),
            }
        }
    }
}

// ------------------------------------------------------------------------------ invalidation

/// Invalidates `tags` in `cache` after a successful `#[invalidates]` function.
///
/// An invalidation the backend does not take in time is queued and replayed (see
/// [`crate::durable`]); any other failure is logged (`warn`, event
/// `cache_invalidate_after_failed`). The function's own result (its write already happened) is
/// returned unchanged. Without a cache nothing happens.
pub async fn invalidate_after(cache: Option<&Cache>, tags: Vec<String>) {
    let Some(cache) = cache else {
        tracing::debug!(name: "cache_skip", event = "cache_skip", tags = ?tags, reason = "no cache", "no cache to invalidate");
        return;
    };
    match cache.invalidate_tags(&tags).await {
        // Delivered, or queued for replay (not lost; logged where it was queued).
        Ok(_) | Err(crate::CacheError::Queued) => {}
        // Caching is off (`CACHE_ENABLED=false`): nothing is cached, nothing to invalidate.
        Err(crate::CacheError::Disabled) => {}
        Err(e) => {
            tracing::warn!(name: "cache_invalidate_after_failed", event = "cache_invalidate_after_failed", tags = ?tags, error = %e, "invalidation after write failed");
        }
    }
}

/// Whether an `#[invalidates]` function succeeded (`Ok`, or any value of a plain shape), by
/// the shape of its return type (`shape` comes from the same probe as `#[cached]`'s, so a
/// `Result` behind a type alias counts only `Ok`).
pub fn succeeded<R, S: Shape<R>>(r: &R, _shape: &ShapeToken<S>) -> bool {
    S::succeeded(r)
}

/// The success value of an `#[invalidates]` function, for `{result}` tags.
pub fn success_value<'r, R, S: Shape<R>>(r: &'r R, _shape: &ShapeToken<S>) -> Option<&'r S::Value> {
    S::value(r)
}

/// Adds `tags` to a deferred invalidation (the `defer = <expr>` option).
pub fn defer_tags(pending: &mut PendingInvalidation, tags: Vec<String>) {
    for t in tags {
        pending.tag(t);
    }
}

// ------------------------------------------------------------------------- request context

/// The outcome of a `#[cached]` call, for `X-Cache-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// `HIT`, `MISS`, `STALE`, `BYPASS` or `SKIP`.
    pub status: CacheStatus,
    /// The full cache key.
    pub key: String,
    /// Age of the served entry (zero when just loaded).
    pub age: Duration,
    /// Remaining fresh lifetime (zero when the value was not stored).
    pub ttl: Duration,
    /// The entry is one user's (its key has a user scope).
    pub per_user: bool,
    /// The value is the whole response (a `#[cached]` handler returning `Json<T>` or a finished
    /// response), so its `ETag` answers `If-None-Match`.
    pub whole_response: bool,
    /// Strong ETag of the stored payload, when known.
    pub etag: Option<u64>,
    /// For a `Json<T>` handler served from a stored entry: the stored JSON payload, which the
    /// context layer sends as the body instead of the value re-serialized (a hit is then byte
    /// for byte what the miss sent, whatever the order of a `HashMap`'s keys).
    pub body: Option<bytes::Bytes>,
    /// Which tier served a hit (`X-Cache-Tier`).
    pub tier: Option<crate::Tier>,
}

impl Outcome {
    /// The outcome of a value read through `key`.
    pub fn of<T>(key: &CacheKey, fetched: &crate::Fetched<T>) -> Outcome {
        Outcome {
            status: fetched.status,
            key: key.as_str().to_owned(),
            age: fetched.age,
            ttl: fetched.ttl,
            per_user: key.is_per_user(),
            whole_response: false,
            etag: fetched.etag,
            body: None,
            tier: fetched.tier,
        }
    }

    /// The outcome of a call whose value was not cached (the body's error, or `unless`).
    pub fn failed(key: &CacheKey, status: CacheStatus) -> Outcome {
        Outcome {
            status,
            key: key.as_str().to_owned(),
            age: Duration::ZERO,
            ttl: Duration::ZERO,
            per_user: key.is_per_user(),
            whole_response: false,
            etag: None,
            body: None,
            tier: None,
        }
    }
}

/// Per-request state shared between an HTTP adapter and the `#[cached]` functions it calls.
///
/// The adapter creates one per request, runs the handler inside
/// [`with_request_context`], then reads [`RequestContext::take_outcome`]. When several
/// `#[cached]` calls run in one request the last one to finish wins (for a cached handler that
/// calls cached helpers, that is the handler's own outcome).
#[derive(Debug, Default)]
pub struct RequestContext {
    /// Skip lookups (`Cache-Control: no-cache`): run the body and refresh the entry.
    pub bypass: bool,
    /// The user scope the adapter found, if any.
    pub user: Option<String>,
    outcome: Mutex<Option<Outcome>>,
}

impl RequestContext {
    /// A context with these settings and no outcome yet.
    pub fn new(bypass: bool, user: Option<String>) -> RequestContext {
        RequestContext {
            bypass,
            user,
            outcome: Mutex::new(None),
        }
    }

    /// Records an outcome, replacing an earlier one; but once any `#[cached]` call of the request
    /// was per-user, the outcome stays per-user (a shared helper called after a per-user one
    /// must not make one user's data `public`).
    pub fn record(&self, mut outcome: Outcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(earlier) = slot.as_ref() {
            outcome.per_user |= earlier.per_user;
        }
        *slot = Some(outcome);
    }

    /// Takes the recorded outcome.
    pub fn take_outcome(&self) -> Option<Outcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

tokio::task_local! {
    static REQUEST: Arc<RequestContext>;
}

/// Runs `fut` with `ctx` as the current request context.
pub fn with_request_context<F: Future>(
    ctx: Arc<RequestContext>,
    fut: F,
) -> impl Future<Output = F::Output> {
    REQUEST.scope(ctx, fut)
}

/// Whether the current request asked to bypass the cache (false outside a context).
pub fn current_bypass() -> bool {
    REQUEST.try_with(|c| c.bypass).unwrap_or(false)
}

/// The user scope of the current request (`None` outside a context).
pub fn current_user() -> Option<String> {
    REQUEST.try_with(|c| c.user.clone()).ok().flatten()
}

/// Records an outcome in the current request context (no-op outside one).
pub fn record_outcome(outcome: Outcome) {
    let _ = REQUEST.try_with(|c| c.record(outcome));
}

/// Takes the outcome recorded in the current request context.
pub fn take_outcome() -> Option<Outcome> {
    REQUEST.try_with(|c| c.take_outcome()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outcome_is_recorded_only_inside_a_context() {
        let k = Cache::memory().key("k").build();
        record_outcome(Outcome::failed(&k, CacheStatus::Hit));
        assert_eq!(take_outcome(), None);
        let ctx = Arc::new(RequestContext::default());
        let cache = Cache::memory();
        let key = cache.key("r").id(1).build();
        let run_once = || {
            run::<u32, PlainShape, _, _>(
                Some(&cache),
                Some(key.clone()),
                Policy::ttl(Duration::from_secs(60)),
                async { 7 },
                |_| false,
                ShapeToken::new(),
            )
        };
        with_request_context(ctx.clone(), run_once()).await;
        assert_eq!(ctx.take_outcome().unwrap().status, CacheStatus::Miss);
        let out = with_request_context(ctx.clone(), async {
            run_once().await;
            take_outcome()
        })
        .await
        .unwrap();
        assert_eq!(
            (out.status, out.key.as_str()),
            (CacheStatus::Hit, key.as_str())
        );
    }

    #[tokio::test]
    async fn bypass_from_context_skips_the_lookup() {
        let cache = Cache::memory();
        let key = cache.key("r").id(1).build();
        let ctx = Arc::new(RequestContext::new(true, None));
        for _ in 0..2 {
            let v = with_request_context(
                ctx.clone(),
                run::<u32, PlainShape, _, _>(
                    Some(&cache),
                    Some(key.clone()),
                    Policy::new(),
                    async { 1 },
                    |_| false,
                    ShapeToken::new(),
                ),
            )
            .await;
            assert_eq!(v, 1);
            assert_eq!(ctx.take_outcome().unwrap().status, CacheStatus::Bypass);
        }
    }

    #[test]
    fn key_draft_without_cache_is_none() {
        let mut d = KeyDraft::new(None, "r");
        d.param("a", &1);
        assert!(d.build().is_none());
        let cache = Cache::memory();
        let mut d = KeyDraft::new(Some(&cache), "r");
        d.param("a", &std::collections::HashMap::from([(vec![1], 2)]));
        assert!(d.build().is_none(), "non-string map keys are not encodable");
    }
}
