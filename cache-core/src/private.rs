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

    /// Adds a value that comes from the URL path (an axum `Path<T>` or actix-web `web::Path<T>`
    /// argument, or a name its pattern binds) as readable id segments, in order, when it renders
    /// as such (see [`path_segments`]): a scalar is one segment, a tuple, fixed-size array or
    /// struct of scalars one segment per element. Any other value (a `None`, a `Vec`, a map, a
    /// nested struct) is a hashed parameter named `name`, as with [`KeyDraft::param`]. Each
    /// segment goes through [`KeyBuilder::id`](crate::KeyBuilder::id), so a `:` or a control
    /// character inside a value is escaped and cannot fake a second segment.
    pub fn path<T: KeyPart + ?Sized>(&mut self, name: &str, value: &T) {
        match path_segments(value) {
            Some(segments) => {
                for segment in segments {
                    self.id(segment);
                }
            }
            None => self.param(name, value),
        }
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

// ---------------------------------------------------------------------------- path segments

/// The readable id segments of a path parameter, or `None` when it has none (the macro then
/// hashes it as a parameter):
/// * a scalar (an integer, a float, a `bool`, a `char`, a string, a unit enum variant, a
///   newtype around one, or `Some` of one) is one segment: its text (`42`, `1.5`, `true`,
///   `trig-1`, the variant's serialized name);
/// * a tuple, a fixed-size array, a tuple struct or a struct whose elements are all scalars is
///   one segment per element, in order (a struct's field values in declaration order, without
///   their names);
/// * anything else is not readable: `None` (`()`), a `Vec` or slice (their length varies, so
///   their segments could shift into the next argument's), a map, bytes, a nested tuple or
///   struct, an enum variant with data, a struct field skipped by `skip_serializing_if`.
///
/// Segments are not escaped here: the caller passes each to `KeyBuilder::id`.
///
/// ```
/// use cache_core::__private::path_segments;
///
/// assert_eq!(path_segments(&123u32), Some(vec!["123".to_owned()]));
/// assert_eq!(path_segments(&(123u32, "en")), Some(vec!["123".to_owned(), "en".to_owned()]));
/// assert_eq!(path_segments(&vec![1, 2]), None);
/// assert_eq!(path_segments(&None::<u32>), None);
/// ```
pub fn path_segments<T: Serialize + ?Sized>(value: &T) -> Option<Vec<String>> {
    let mut out = Vec::new();
    value.serialize(segments::Top { out: &mut out }).ok()?;
    Some(out)
}

mod segments {
    //! The serializers behind [`path_segments`](super::path_segments): `Top` takes a scalar
    //! or one level of tuple / struct; `Scalar` takes a scalar only.

    use std::fmt;

    use serde::ser::{self, Impossible, Serialize};

    /// The value is not readable as id segments.
    #[derive(Debug)]
    pub(super) struct NotReadable;

    impl fmt::Display for NotReadable {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("not readable as id segments")
        }
    }

    impl std::error::Error for NotReadable {}

    impl ser::Error for NotReadable {
        fn custom<T: fmt::Display>(_: T) -> Self {
            NotReadable
        }
    }

    /// A scalar as its text.
    pub(super) struct Scalar;

    macro_rules! display {
        ($($method:ident: $ty:ty),* $(,)?) => {
            $(fn $method(self, v: $ty) -> Result<String, NotReadable> {
                Ok(v.to_string())
            })*
        };
    }

    macro_rules! not_readable {
        ($($method:ident($($arg:ty),*) -> $ret:ty),* $(,)?) => {
            $(fn $method(self, $(_: $arg),*) -> Result<$ret, NotReadable> {
                Err(NotReadable)
            })*
        };
    }

    impl ser::Serializer for Scalar {
        type Ok = String;
        type Error = NotReadable;
        type SerializeSeq = Impossible<String, NotReadable>;
        type SerializeTuple = Impossible<String, NotReadable>;
        type SerializeTupleStruct = Impossible<String, NotReadable>;
        type SerializeTupleVariant = Impossible<String, NotReadable>;
        type SerializeMap = Impossible<String, NotReadable>;
        type SerializeStruct = Impossible<String, NotReadable>;
        type SerializeStructVariant = Impossible<String, NotReadable>;

        display!(
            serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
            serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f32: f32,
            serialize_f64: f64, serialize_char: char, serialize_str: &str,
        );

        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<String, NotReadable> {
            v.serialize(self)
        }

        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<String, NotReadable> {
            v.serialize(self)
        }

        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
        ) -> Result<String, NotReadable> {
            Ok(variant.to_owned())
        }

        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<String, NotReadable> {
            Err(NotReadable)
        }

        not_readable!(
            serialize_bytes(&[u8]) -> String,
            serialize_none() -> String,
            serialize_unit() -> String,
            serialize_unit_struct(&'static str) -> String,
            serialize_seq(Option<usize>) -> Self::SerializeSeq,
            serialize_tuple(usize) -> Self::SerializeTuple,
            serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct,
            serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant,
            serialize_map(Option<usize>) -> Self::SerializeMap,
            serialize_struct(&'static str, usize) -> Self::SerializeStruct,
            serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant,
        );
    }

    /// A path parameter: a scalar (one segment) or a tuple / struct of scalars (one each).
    pub(super) struct Top<'a> {
        pub(super) out: &'a mut Vec<String>,
    }

    /// The elements of a tuple or the fields of a struct, each a scalar.
    pub(super) struct Elements<'a> {
        out: &'a mut Vec<String>,
    }

    impl Elements<'_> {
        fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotReadable> {
            self.out.push(v.serialize(Scalar)?);
            Ok(())
        }
    }

    impl ser::SerializeTuple for Elements<'_> {
        type Ok = ();
        type Error = NotReadable;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotReadable> {
            self.push(v)
        }
        fn end(self) -> Result<(), NotReadable> {
            Ok(())
        }
    }

    impl ser::SerializeTupleStruct for Elements<'_> {
        type Ok = ();
        type Error = NotReadable;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotReadable> {
            self.push(v)
        }
        fn end(self) -> Result<(), NotReadable> {
            Ok(())
        }
    }

    impl ser::SerializeStruct for Elements<'_> {
        type Ok = ();
        type Error = NotReadable;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            _: &'static str,
            v: &T,
        ) -> Result<(), NotReadable> {
            self.push(v)
        }
        /// A field left out for this value only (`skip_serializing_if`) would shift the
        /// segments after it: not readable.
        fn skip_field(&mut self, _: &'static str) -> Result<(), NotReadable> {
            Err(NotReadable)
        }
        fn end(self) -> Result<(), NotReadable> {
            Ok(())
        }
    }

    impl<'a> Top<'a> {
        fn one(self, segment: String) -> Result<(), NotReadable> {
            self.out.push(segment);
            Ok(())
        }
    }

    macro_rules! top_scalar {
        ($($method:ident: $ty:ty),* $(,)?) => {
            $(fn $method(self, v: $ty) -> Result<(), NotReadable> {
                let segment = ser::Serializer::$method(Scalar, v)?;
                self.one(segment)
            })*
        };
    }

    impl<'a> ser::Serializer for Top<'a> {
        type Ok = ();
        type Error = NotReadable;
        type SerializeSeq = Impossible<(), NotReadable>;
        type SerializeTuple = Elements<'a>;
        type SerializeTupleStruct = Elements<'a>;
        type SerializeTupleVariant = Impossible<(), NotReadable>;
        type SerializeMap = Impossible<(), NotReadable>;
        type SerializeStruct = Elements<'a>;
        type SerializeStructVariant = Impossible<(), NotReadable>;

        top_scalar!(
            serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
            serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f32: f32,
            serialize_f64: f64, serialize_char: char, serialize_str: &str,
        );

        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), NotReadable> {
            v.serialize(self)
        }

        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<(), NotReadable> {
            v.serialize(self)
        }

        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
        ) -> Result<(), NotReadable> {
            self.one(variant.to_owned())
        }

        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), NotReadable> {
            Err(NotReadable)
        }

        fn serialize_tuple(self, _: usize) -> Result<Elements<'a>, NotReadable> {
            Ok(Elements { out: self.out })
        }

        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Elements<'a>, NotReadable> {
            Ok(Elements { out: self.out })
        }

        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Elements<'a>, NotReadable> {
            Ok(Elements { out: self.out })
        }

        not_readable!(
            serialize_bytes(&[u8]) -> (),
            serialize_none() -> (),
            serialize_unit() -> (),
            serialize_unit_struct(&'static str) -> (),
            serialize_seq(Option<usize>) -> Self::SerializeSeq,
            serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant,
            serialize_map(Option<usize>) -> Self::SerializeMap,
            serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant,
        );
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

    fn path_key(values: &[&dyn erased::Part]) -> String {
        let cache = Cache::memory();
        let mut d = KeyDraft::new(Some(&cache), "r");
        for (i, v) in values.iter().enumerate() {
            v.add(&mut d, &format!("p{i}"));
        }
        d.build().unwrap().as_str().to_owned()
    }

    /// `KeyDraft::path` over values of different types, for the tests below.
    mod erased {
        pub(super) trait Part {
            fn add(&self, d: &mut super::KeyDraft<'_>, name: &str);
        }
        impl<T: serde::Serialize> Part for T {
            fn add(&self, d: &mut super::KeyDraft<'_>, name: &str) {
                d.path(name, self);
            }
        }
    }

    #[derive(serde::Serialize)]
    struct Params {
        trig: u32,
        page: u32,
    }

    #[derive(serde::Serialize)]
    struct TrigId(u32);

    #[derive(serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    enum Lang {
        En,
    }

    #[derive(serde::Serialize)]
    struct Sparse {
        #[serde(skip_serializing_if = "Option::is_none")]
        a: Option<u32>,
        b: u32,
    }

    #[test]
    fn path_parameters_render_as_readable_id_segments() {
        let ns = Cache::memory().key("r").build().as_str().to_owned();
        let key = |rest: &str| format!("{ns}:{rest}");
        assert_eq!(path_key(&[&123u32]), key("123"));
        assert_eq!(path_key(&[&(123u32, 2u32)]), key("123:2"));
        assert_eq!(path_key(&[&123u32, &2u32]), key("123:2"), "argument order");
        assert_eq!(path_key(&[&(7u32, "en".to_owned())]), key("7:en"));
        assert_eq!(path_key(&[&Params { trig: 5, page: 3 }]), key("5:3"));
        assert_eq!(path_key(&[&[4u8, 2]]), key("4:2"), "a fixed-size array");
        assert_eq!(path_key(&[&TrigId(9)]), key("9"));
        assert_eq!(path_key(&[&Lang::En]), key("en"));
        assert_eq!(path_key(&[&Some(-1i64)]), key("-1"));
        assert_eq!(path_key(&[&(true, 'x', 1.5f64)]), key("true:x:1.5"));
    }

    #[test]
    fn path_values_that_are_not_scalars_are_hashed_parameters() {
        let cache = Cache::memory();
        let hashed =
            |name: &str, json: &str| cache.key("r").param(name, json).build().as_str().to_owned();
        assert_eq!(path_key(&[&vec![1, 2]]), hashed("p0", "[1,2]"));
        assert_eq!(path_key(&[&None::<u32>]), hashed("p0", "null"));
        assert_eq!(path_key(&[&((1, 2), 3)]), hashed("p0", "[[1,2],3]"));
        assert_eq!(
            path_key(&[&std::collections::BTreeMap::from([("a", 1)])]),
            hashed("p0", r#"{"a":1}"#)
        );
        assert_eq!(
            path_key(&[&Sparse { a: None, b: 2 }]),
            hashed("p0", r#"{"b":2}"#),
            "a skipped field would shift the segments"
        );
        assert_eq!(path_key(&[&Sparse { a: Some(1), b: 2 }]), {
            let ns = Cache::memory().key("r").build().as_str().to_owned();
            format!("{ns}:1:2")
        });
    }

    #[test]
    fn path_values_with_colons_or_control_characters_never_collide() {
        let keys = [
            path_key(&[&"1:2"]),
            path_key(&[&(1u32, 2u32)]),
            path_key(&[&"1", &"2"]),
            path_key(&[&"1%3A2"]),
            path_key(&[&r"1\n2"]),
            path_key(&[&"1\n2"]),
            path_key(&[&"q=1"]),
            path_key(&[&"user=1"]),
        ];
        assert_eq!(keys[1], keys[2], "the same two segments");
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len() - 1, "{keys:#?}");
        assert!(keys[0].ends_with(":1%3A2"), "{}", keys[0]);
        for k in &keys {
            assert!(!k.chars().any(char::is_control), "{k:?}");
        }
        // A value longer than the key limit gives a hashed key, still distinct.
        let long = "x".repeat(500);
        let longer = "x".repeat(501);
        assert_ne!(path_key(&[&long]), path_key(&[&longer]));
        assert!(path_key(&[&long]).len() <= 256);
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
