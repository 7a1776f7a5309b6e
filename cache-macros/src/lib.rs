//! Attribute macros for `cache-core`: `#[cached(...)]` and `#[invalidates(...)]`.
//!
//! Use them through `cache_core` (feature `macros`, on by default) rather than depending on this
//! crate directly. This crate only parses attributes and generates code; all runtime behaviour
//! lives in `cache_core::__private` (hidden, not a public API).
//!
//! The examples below are marked `ignore` because this crate cannot depend on `cache_core`.
//! **The guide with a runnable example per option** is the module `cache_core::macros_guide`
//! (`cache-core/src/macros_guide.rs`); behaviour tests live in `tests/tests/macros.rs` and, on
//! real Axum and Actix handlers, `tests/tests/macros_http.rs`; the compile errors are pinned by
//! the trybuild tests in `tests/tests/ui/`.
//!
//! # `#[cached(...)]`
//!
//! Turns the body of an `async fn` (a free function or a `&self` method) into the loader of a
//! read-through call (`Cache::fetch`): on a hit the body does not run.
//!
//! ```ignore
//! use cache_core::cached;
//!
//! #[cached(resource = "trig", ttl = "24h", tags = ["trig:{trig_id}", "trigs:list"])]
//! async fn trig(trig_id: i64, page: u32) -> Result<Trig, DbError> {
//!     db::load_trig(trig_id, page).await
//! }
//! ```
//!
//! ## Options
//!
//! | option | example | meaning |
//! | --- | --- | --- |
//! | `resource` | `resource = "trig"` | resource segment of the key; default: the function's name |
//! | `ttl` | `ttl = "24h"` | time to live, parsed at compile time (`"90s"`, `"5m"`, `"1h30m"`, `"3600"`); default: the cache's default TTL |
//! | `key` | `key = "{trig_id}:{page}"` | the key's id segments, formatted from arguments (or their fields: `{claims.sub}`, `{pair.0}`) with `Display`; default: path parameters as id segments, the other arguments as hashed parameters (see [the key](#the-key)) |
//! | `key` | `key = [trig_id, page]` | only these arguments, as hashed parameters |
//! | `tags` | `tags = ["trig:{trig_id}", "trigs:list"]` | tags of the entry, `{name}` formatted from arguments with `Display` |
//! | `user` | `user = claims.sub` | per-user entries: `KeyBuilder::user(expr)` (any `Display`) |
//! | `version` | `version = 2` | resource schema version (`#v2` in the key) |
//! | `unless` | `unless = \|v: &Vec<Trig>\| v.is_empty()` | a closure over `&ReturnType`; `true`: return without storing (not for whole HTTP responses, see below) |
//! | `stale_while_revalidate` | `stale_while_revalidate = "1m"` | serve stale while one caller refreshes |
//! | `stale_if_error` | `stale_if_error = "10m"` | serve stale when the body fails |
//! | `lease` | `lease = true` | cross-instance lease before running the body |
//! | `cache` | `cache = &self.cache` | which cache: a `Cache`, `&Cache`, `Arc<Cache>` or an `Option` of those (`None`: uncached); default: `cache_core::default_cache()` |
//! | `skip` | `skip = [db]` | arguments left out of the default key (a database pool, a client, a request id) |
//! | `crate` | `crate = "my_app::cache_core"` | path of `cache_core` when it is re-exported |
//!
//! ## The key
//!
//! `namespace:v1:{resource}[#v{version}][:{id}]*[:user=..][:q=hash]`. With `key = "{a}:{b}"`
//! the id segments are the template's; with `key = [a, b]` the key has no id segment and those
//! arguments are its hashed parameters. Without `key`, the key is built from every argument
//! except
//! * **handle extractors**: an argument whose type, after removing references, is a path whose
//!   last segment is `State`, `Data` or `Extension` with generic arguments (axum's `State<T>` and
//!   `Extension<T>`, actix-web's `web::Data<T>`), with every name its pattern binds;
//! * the argument named by the `cache = <argument>` option, when the expression is exactly a
//!   bare argument name (`cache = cache`; not `cache = &app.cache`);
//! * arguments listed in `skip`;
//!
//! and each of them becomes
//! * **readable id segments when it comes from the URL path**: an argument whose type, after
//!   removing references, has the last path segment `Path` with one generic argument (axum's
//!   `Path<T>`, also destructured, and actix-web's `web::Path<T>`). Its value is rendered through
//!   `Serialize`: a scalar (number, string, `bool`, `char`, unit enum variant, newtype of one) is
//!   one segment, a tuple, fixed-size array or struct of scalars one segment per element, in
//!   order (a struct's field values, without names). Path arguments come first, in argument
//!   order: `Path(id): Path<u32>` gives `ns:v1:trig:123`; `Path((trig, page)): Path<(u32, u32)>`
//!   and `path: web::Path<(u32, u32)>` give `ns:v1:trig:123:2`; a `Path<Params>` with fields
//!   `trig` and `page` the same. Each segment is escaped by `KeyBuilder::id` (`%XX` for `:`,
//!   `=`, `%`, whitespace, control and glob characters), so a value `1:2` gives the segment
//!   `1%3A2`, never the two segments `1` and `2`; a key longer than the keyspace's limit is
//!   shortened with a hash as any other. A path value with no readable form (`None`, a `Vec`, a
//!   map, a nested tuple or struct, an enum variant with data) is a hashed parameter instead;
//! * **a hashed parameter named after it** otherwise (a query struct, a body, a plain function
//!   argument): `ns:v1:trig:123:q=<hash>` for `Path(id)` and `Query(filter)`.
//!
//! Nothing else is left out because of its type: a database pool, a client or an `Arc<..>` is
//! part of the key, so two calls that differ in it never share an entry. An argument that is not
//! `Serialize` is a compile error on it that says to add it to `skip = [..]` when it does not
//! change the result (`#[cached(skip = [db])] async fn trig(db: &PgPool, id: i64)`), or to name
//! the key arguments with `key = [..]`. An `Extension<T>` that carries the caller (the current
//! user) is left out too: scope such entries with `user = ..`, or key by the user's id.
//!
//! A `self` receiver is never part of the key: two instances share entries unless their
//! `resource`, `key` or `cache` differ. Parameters are encoded with `serde_json`, so they must
//! implement `Serialize` (numbers, strings, `Option`, `Vec`, derived structs); a value that fails
//! to encode makes the call run uncached. Handler patterns bind names as usual:
//! `Query(q): Query<Filter>` is keyed as `q`; `State(app): State<App>` is a handle. An argument
//! bound to a single name whose type is an extractor wrapper (last segment `Path`, `Query`,
//! `Json` or `Form` with one generic argument, e.g. actix-web's `path: web::Path<(u32, String)>`,
//! which is not `Serialize`) or a shared pointer (`Arc<T>`, `Rc<T>`, not `Serialize` without
//! serde's `rc` feature), also behind references, is keyed by the value inside (`&*path`,
//! `&**filter` for `filter: &Arc<Filter>`).
//!
//! ## Return types
//!
//! Chosen by the return type itself, also behind a type alias
//! (`type ApiResult<T> = Result<T, ApiError>`, `io::Result<T>`):
//! * `Result<T, E>`: `Ok(T)` is cached; `Err(E)` is returned and not cached (with
//!   `stale_if_error`, a stale `Ok` may be served instead of the error);
//! * `Option<T>`: `Some(T)` is cached; **`None` is not cached**, so the body runs again next time;
//! * a whole HTTP response (`Response`, `impl IntoResponse` or a response tuple such as
//!   `(StatusCode, Json<T>)` on Axum; `HttpResponse`, `impl Responder` or `(R, StatusCode)` on
//!   Actix): cached whole, stored only when it is a storable `200` (see
//!   [below](#whole-http-responses));
//! * anything else `T`: always cached.
//!
//! A `Json<T>` (the tuple struct `Json(pub T)` of axum and actix-web, which is not
//! `Deserialize`), alone or as the `Ok` / `Some` type, is cached as `T` and re-wrapped on a hit:
//! `-> Json<Vec<Trig>>`, `-> Result<web::Json<Trig>, actix_web::Error>`,
//! `-> Option<Json<Trig>>`. `unless` still sees the type as written. Behind the adapters'
//! `CacheContextLayer`, a hit (and a request that waited on another's load) sends the stored
//! JSON payload as the body rather than `T` re-serialized, so the body is byte for byte what the
//! miss sent. The `Json` is recognised by
//! its name where the return type writes it out: behind a type alias
//! (`type JsonResult<T> = Result<Json<T>, E>`) it would be the cached value, and the compile error
//! on the return type says to write the `Json<..>` out.
//!
//! ### Whole HTTP responses
//!
//! A handler may return a finished response, **as the return type itself**; it is then cached
//! whole (status, headers, body), as the response layers of `cache-axum` and `cache-actix` cache
//! it, and served on a hit from the stored bytes (the body is not copied):
//!
//! | return type | framework | how the value becomes a response | the function returns | crate to depend on |
//! | --- | --- | --- | --- | --- |
//! | `Response` (last path segment `Response`, e.g. `axum::response::Response`, `Response<Body>`) | Axum | it is one | `Response` | `cache-axum` |
//! | `impl IntoResponse` | Axum | `IntoResponse::into_response` | `impl IntoResponse` | `cache-axum` |
//! | a response tuple: `(StatusCode, Json<T>)`, `(StatusCode, HeaderMap, Json<T>)`, `(HeaderMap, Json<T>)`, `(StatusCode, [(HeaderName, &str); 1], String)`, ... | Axum | `IntoResponse::into_response` | `axum::response::Response` (the signature is rewritten) | `cache-axum` |
//! | `HttpResponse` (or `HttpResponse<B>`) | Actix | it is one | `HttpResponse` | `cache-actix` |
//! | `impl Responder` | Actix | `Responder::respond_to` with the request: the macro adds a hidden `HttpRequest` extractor argument | `impl Responder` | `cache-actix` |
//! | `(R, StatusCode)`: `(web::Json<T>, StatusCode)`, `(impl Responder, StatusCode)` | Actix | as `impl Responder` | `HttpResponse` (the signature is rewritten) | `cache-actix` |
//!
//! A tuple is a response tuple when its last element's last path segment is `StatusCode`
//! (Actix), or (Axum) when an element before the last is a response part (last path segment
//! `StatusCode`, `HeaderMap`, `Parts`, `Extensions`, `AppendHeaders` or `TypedHeader`, or an
//! array of pairs such as `[(HeaderName, &str); 1]`) or its last element is `impl Trait`,
//! `Json<..>`, `Html<..>`, `Redirect` or `Response`. None of these is `Serialize`, so no tuple
//! that could be cached as a value is taken for a response. A response tuple cannot be rebuilt
//! from a stored response, so the function returns what the tuple turns into
//! (`axum::response::Response`, `actix_web::HttpResponse`): still a handler's return type, but a
//! direct caller gets the response, not the tuple.
//!
//! The handler's response is classified by the shared HTTP rules
//! (`cache_core::http::HttpRules::default()`), the same for every row of the table:
//! * a **`200`** with storable headers and a body of at most 1 MiB is **stored** (as a
//!   `cache_core::http::StoredResponse`, with a strong `ETag` added when it has none);
//! * **any other status** (a `201`, a `404`, a `500`) with storable headers is **shared** with
//!   concurrent identical requests waiting on the same key, **not stored**: the next request runs
//!   the handler again (a `5xx` may be replaced by a stale entry with `stale_if_error`);
//! * a response with `Set-Cookie`, `Cache-Control: private`, `no-store` or `no-cache`,
//!   `Vary: *`, a `Content-Length` over 1 MiB, or a (streaming) body that turns out longer than
//!   1 MiB is **returned as it is**, unstored and unshared (a long body is replayed in full).
//!
//! Hop-by-hop headers (and `Set-Cookie`, `Age`, `X-Cache-*`) are never stored. On a miss the
//! response is rebuilt from what was stored, so a miss and a hit send the same status, headers
//! and body. `unless` does not apply to these returns (a compile error): the rules above decide.
//! Behind `CacheContextLayer` (either crate) the response gets the `X-Cache-*` headers, and on a
//! `200` the stored `ETag` answers `If-None-Match` with `304 Not Modified` and an empty body.
//! An Axum `Response` with another body type than `axum::body::Body` is a compile error on the
//! return type (the cached response is rebuilt as `Response<Body>`).
//!
//! ```ignore
//! use axum::{extract::{Path, State}, http::StatusCode, response::IntoResponse, Json};
//!
//! #[cached(resource = "page", ttl = "10m", tags = ["trig:{id}"], cache = &app.cache)]
//! async fn page(State(app): State<App>, Path(id): Path<u32>) -> impl IntoResponse {
//!     match app.db.trig(id).await {
//!         Some(t) => (StatusCode::OK, [("x-served-by", "page")], render(&t)), // stored
//!         None => (StatusCode::NOT_FOUND, [("x-served-by", "page")], String::new()), // not stored
//!     }
//! }
//!
//! // A tuple: returns `axum::response::Response`; a 200 is stored, a 201 is not.
//! #[cached(resource = "trig", ttl = "10m", cache = &app.cache)]
//! async fn trig(State(app): State<App>, Path(id): Path<u32>) -> (StatusCode, Json<Trig>) {
//!     (StatusCode::OK, Json(app.db.trig(id).await))
//! }
//! ```
//!
//! ### What cannot be cached
//!
//! The cached value (`T`) must implement `Serialize + DeserializeOwned`; a missing bound is
//! reported on the return type. A return type that cannot be stored is a compile error on it:
//! any other `impl Trait` (`impl Display`), `dyn Trait`, `HttpResponseBuilder`, and a whole
//! response as the `Ok` / `Some` type (`Result<Response, E>`, `Option<HttpResponse>`,
//! `Result<(StatusCode, Json<T>), E>`, `Result<impl IntoResponse, E>`). Return `Json<T>`, a
//! serializable type, or a `Result` / `Option` of those, or the whole response itself (a row of
//! the table above, with the error turned into its own response).
//!
//! ## Failure and absence
//! * No `cache = ...` and no default installed (`cache_core::install_default`): the body runs,
//!   uncached (the first such call in the process logs a warning, `cache_no_default_cache`).
//! * Cache errors never surface: the engine falls through to the body.
//! * Inside an HTTP adapter's request context the request's bypass flag is honoured and the
//!   outcome (status, key, age, TTL) is recorded for `X-Cache-*` headers.
//!
//! ## Evaluation order
//! `cache`, `user`, the key and the tags are evaluated before the body runs (they may borrow
//! the arguments); the body then runs as an `async` block that may use `?` and `return` as
//! before. A `&mut self` method cannot use `cache = &self.cache` (the borrow would overlap the
//! body's); pass the cache as an argument or use the default.
//!
//! # `#[invalidates(...)]`
//!
//! After the body returns, invalidates the tags, unless it returned `Err` (only for a written
//! `Result` return type; any other value counts as success). Any return type works, including
//! `impl IntoResponse` and `Result<impl IntoResponse, E>`.
//!
//! ```ignore
//! use cache_core::invalidates;
//!
//! #[invalidates("trig:{trig_id}", "trigs:list")]
//! async fn add_log(trig_id: i64, log: NewLog) -> Result<(), DbError> {
//!     db::insert_log(trig_id, log).await
//! }
//!
//! // Inside a transaction: collect the tags, invalidate after the commit.
//! #[invalidates("trig:{trig_id}", defer = pending)]
//! async fn add_log_tx(trig_id: i64, pending: &mut PendingInvalidation) -> Result<(), DbError> { .. }
//!
//! // A transaction's body that is a plain `fn` (rusqlite, diesel): with `defer`, no `async`
//! // needed, so the tags are known inside the transaction and can be recorded in an outbox
//! // table before it commits (see `cache_core::durable`).
//! #[invalidates("trig:{trig_id}", defer = pending)]
//! fn add_log_in(tx: &Transaction, trig_id: i64, pending: &mut PendingInvalidation) -> Result<(), DbError> { .. }
//! ```
//!
//! | option | example | meaning |
//! | --- | --- | --- |
//! | tags | `"trig:{trig_id}"` | one or more tag templates, first; `{name}` is an argument (`Display`); `{result}` / `{result.id}` is the success value (`Ok` / `Some` / the value), formatted after the body (`None`: skipped) |
//! | `cache` | `cache = &self.cache` | as for `#[cached]`; default: `cache_core::default_cache()` |
//! | `defer` | `defer = pending` | a `&mut PendingInvalidation`: add the tags to it instead of invalidating now (evaluated after the body) |
//! | `crate` | `crate = "my_app::cache_core"` | as for `#[cached]` |
//!
//! **Failures never fail the function.** An invalidation that Redis does not take within
//! `invalidation_timeout` (250 ms) is **queued** and replayed as soon as Redis answers, and this
//! instance serves no entry it concerns meanwhile (see `cache_core::durable`; with an outbox,
//! every instance and a crash are covered too). Any other failure (caching disabled) is logged as
//! a `warn` event (`cache_invalidate_after_failed`) and does not change the function's return
//! value: the write has already happened, and failing the request would invite a retry of it.
//! Use `defer` and `PendingInvalidation::commit` when the caller must see it.
//!
//! # Errors
//!
//! Mistakes are compile errors on the offending token, each naming the rule and the fix: a
//! non-`async` function (except `#[invalidates(.., defer = ..)]`), an unknown or repeated option, a malformed duration, a `{name}` that is
//! not an argument, a key argument that is not `Serialize` (on the argument: `skip` it or list
//! the key), a cached value that is not `Serialize + DeserializeOwned` (on the return type). The function is emitted unchanged next to the errors, so no follow-up errors
//! appear.

#![cfg_attr(docsrs, feature(doc_cfg))]

use proc_macro::TokenStream;

mod cached;
mod duration;
mod invalidates;
mod options;
mod signature;

/// Caches the result of an `async fn`; see the [crate docs](crate) for the options.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    run("cached", args, item, cached::expand)
}

/// Invalidates cache tags after a function succeeds (an `async fn`, or a plain `fn` with
/// `defer`); see the [crate docs](crate).
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    run("invalidates", args, item, invalidates::expand)
}

/// Parses the item, expands, and on error emits the errors next to the unchanged item.
fn run(
    name: &str,
    args: TokenStream,
    item: TokenStream,
    expand: fn(proc_macro2::TokenStream, &syn::ItemFn) -> syn::Result<proc_macro2::TokenStream>,
) -> TokenStream {
    let item2 = proc_macro2::TokenStream::from(item);
    let result = match syn::parse2::<syn::ItemFn>(item2.clone()) {
        Ok(f) => expand(args.into(), &f),
        Err(e) => Err(syn::Error::new(
            e.span(),
            format!("`#[{name}]` goes on an `async fn` (a free function or a method): {e}"),
        )),
    };
    match result {
        Ok(out) => out.into(),
        Err(e) => {
            let mut out = e.into_compile_error();
            out.extend(item2);
            out.into()
        }
    }
}
