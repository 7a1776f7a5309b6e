#![allow(missing_docs)]
//! Property-based differential fuzzing of both adapters (issue 12), on Redis and memory.
//!
//! Each case is a short sequence of requests sent one at a time to two copies of the same app,
//! each with its own database from the same seed (and a cache namespace of its own, cleared
//! after the case). The sequence (1 to 8 requests) is drawn, with repetitions, from a pool of a
//! generated request and up to three neighbours, each a mutation of an earlier one (another
//! method or a write, a path segment respelled (`%31` for `1`, `01`, `+1`, lowercase escapes), a
//! query piece added, dropped or reordered, a header added, dropped or replaced, or an unrelated
//! request): most cache bugs are two requests that the cache takes for one and the origin does
//! not, or the reverse, and repetitions fill entries, then hit them. The copies:
//!
//! * the **cached** copy: the items API of `common/items_api.rs` (with `common/items_axum.rs` /
//!   `common/items_actix.rs`) plus `GET /greet` (answers from `Accept-Language`, a `vary` header
//!   of the layer) and `GET /blob/{kib}` (bodies on both sides of the layer's `max_body`), all
//!   behind the `ResponseCacheLayer`; two `#[cached]` handlers
//!   (`GET /trigs/{id}`: `Result<Json<T>, E>`; `GET /pages/{id}?..`: a whole response, 200, 404,
//!   400, 500, `private` or `Set-Cookie` by id); and the `CacheContextLayer` around everything;
//! * the **uncached** copy: the same handlers (the `#[cached]` ones with `cache = None`), no
//!   layer.
//!
//! Every answer of the cached copy must be the origin's: same status, same `Content-Type`, same
//! body. A `304` is accepted only for a request with `If-None-Match` when the uncached copy
//! answers `200` with a body whose strong ETag (`"<xxh3-64 of the body, 16 hex digits>"`, or the
//! ETag the cached copy sent with that very body earlier in the case) is the `304`'s, and the
//! request's `If-None-Match` matches it (weak comparison, `*` matches). A panic anywhere (handler,
//! middleware, cache) fails the case; proptest shrinks every failure to a minimal sequence,
//! printed with the seed.
//!
//! The generator: methods (`GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `PATCH`, `OPTIONS`, `TRACE`,
//! `CONNECT`, extension methods); paths of the routes with ids that are odd, percent-encoded
//! (`%00`, `%FF`, invalid UTF-8 escapes, encoded digits), `..`, `//`, trailing `/`, segments of
//! up to 8 KB; queries empty (`?`), valueless (`?a`, `?a=`), repeated, with bad pages, encoded
//! names, invalid escapes, `cache_bypass` flags, thousands of parameters or a 20 KB value;
//! headers `Cache-Control` (bypass, `no-store`, hostile), `Pragma`, `If-None-Match` (`*`, weak,
//! lists, the ETag of an earlier answer, garbage, 10 KB), `Authorization`, `Cookie` (session and
//! harmless cookies), `Range`, `Accept-Language` (the vary header, also repeated and with bytes
//! that are not UTF-8), `X-User` (the per-user route), and 16 KB values; bodies for writes
//! (text, invalid UTF-8).
//!
//! Out of scope: what the framework's request builder refuses (a URI that `http::Uri` does not
//! parse, such as raw spaces, raw non-ASCII bytes, or more than 64 KB; header values with
//! control characters; invalid header names or methods): such requests never reach the app, and
//! the generator only builds requests that both frameworks' test builders accept. Requests go
//! in-process (`tower::ServiceExt::oneshot`, `actix_web::test::call_service`), so the server
//! layer (request-line parsing, header size limits, `HEAD` body stripping and `Content-Length`
//! of a real server) is not exercised here; `axum_differential.rs` / `actix_differential.rs` do
//! `HEAD` over TCP. Time (TTL expiry, stale windows) and concurrency are not varied.
//!
//! Sizes: `FUZZ_CASES` (default 256 cases per adapter and backend; `make fuzz` runs 20,000),
//! `FUZZ_SEED` (default: the clock; printed on failure, rerun with `FUZZ_SEED=<seed>`).
//! `PROPTEST_MAX_SHRINK_ITERS` and the other `PROPTEST_*` variables apply.
//!
//! The library bugs the fuzzer found are pinned, minimized, by the regression tests at the end of
//! this file (each failed before its fix).
//!
//! Tests: `{axum,actix}_on_{redis,memory}_the_cached_copy_answers_like_the_uncached_one` (the
//! properties), `{axum,actix}_harness_two_uncached_copies_agree` (the oracle is deterministic),
//! and the minimized regressions at the end.

mod common;

#[path = "common/items_api.rs"]
mod items_api;

#[path = "common/items_axum.rs"]
mod items_axum;

#[path = "common/items_actix.rs"]
mod items_actix;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Ctx, Kind};
use items_api::{Origin, Reply};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestCaseError, TestRunner};

const HOUR: Duration = Duration::from_secs(3600);

// ------------------------------------------------------------------ requests

/// A header value: bytes, or the ETag of an earlier answer of the cached copy in this case
/// (resolved when the request is sent; the header is left out while no ETag was seen).
#[derive(Clone, PartialEq, Eq)]
enum Value {
    Bytes(Vec<u8>),
    Etag { nth: usize, form: EtagForm },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EtagForm {
    /// `"<etag>"`
    Exact,
    /// `W/"<etag>"`
    Weak,
    /// `"nope", "<etag>"`
    InList,
}

/// A generated request, before the ETags it names are resolved.
#[derive(Clone, PartialEq, Eq)]
struct FReq {
    method: String,
    /// Starts with `/`; only characters `http::Uri` accepts.
    path: String,
    query: Option<String>,
    headers: Vec<(String, Value)>,
    body: Vec<u8>,
}

/// A request as sent.
#[derive(Clone)]
struct Wire {
    method: String,
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Wire {
    /// The same request as a `GET` (what a `HEAD` asks about).
    fn as_get(&self) -> Wire {
        Wire {
            method: "GET".to_owned(),
            ..self.clone()
        }
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A string for messages: long values shortened, bytes that are not printable escaped.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let s: String = bytes
        .iter()
        .take(MAX)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if bytes.len() > MAX {
        format!("{s}...({} bytes)", bytes.len())
    } else {
        s
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bytes(b) => f.write_str(&show(b)),
            Value::Etag { nth, form } => write!(f, "etag #{nth} {form:?}"),
        }
    }
}

impl fmt::Debug for FReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, show(self.path.as_bytes()))?;
        if let Some(q) = &self.query {
            write!(f, "?{}", show(q.as_bytes()))?;
        }
        for (n, v) in &self.headers {
            write!(f, " [{n}: {v:?}]")?;
        }
        if !self.body.is_empty() {
            write!(f, " body {}", show(&self.body))?;
        }
        Ok(())
    }
}

impl fmt::Display for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, show(self.uri.as_bytes()))?;
        for (n, v) in &self.headers {
            write!(f, " [{n}: {}]", show(v))?;
        }
        if !self.body.is_empty() {
            write!(f, " body {}", show(&self.body))?;
        }
        Ok(())
    }
}

/// One case: the requests sent, in order, are `pool[order[i] % pool.len()]`.
#[derive(Clone)]
struct Case {
    pool: Vec<FReq>,
    order: Vec<usize>,
}

impl Case {
    fn steps(&self) -> impl Iterator<Item = &FReq> {
        self.order.iter().map(|i| &self.pool[i % self.pool.len()])
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Case (requests in order):")?;
        for (i, r) in self.steps().enumerate() {
            writeln!(f, "  {i}: {r:?}")?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ the generator

fn strs(list: &[&'static str]) -> impl Strategy<Value = String> {
    select(list.to_vec()).prop_map(str::to_owned)
}

/// Every byte `%XX`-encoded.
fn encode_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => Just("GET".to_owned()),
        3 => Just("HEAD".to_owned()),
        3 => Just("PUT".to_owned()),
        2 => Just("POST".to_owned()),
        1 => strs(&["DELETE", "PATCH", "OPTIONS"]),
        1 => strs(&["TRACE", "CONNECT", "PURGE", "FOO", "get", "M-SEARCH", "X"]),
    ]
}

/// A path segment: mostly ids of seeded items, then odd ones.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => (1u32..=3).prop_map(|n| n.to_string()),
        3 => strs(&[
            "0", "05", "+1", "%31", "%32", "1%00", "%00", "%FF", "%C3%28", "%E2%82", "%C3%A9",
            "..", ".", "%2e%2e", "%2F", "a%2Fb", "abc", "-1", "4294967296",
            "99999999999999999999999", "%", "%%", "%G1", "1;x=y", "@", "~", "!$&'()*+,;=:",
        ]),
        1 => "[a-zA-Z0-9._~!$&'()*+,;=:@-]{0,16}",
        1 => vec(any::<u8>(), 0..6).prop_map(|b| encode_all(&b)),
        1 => (1usize..=8000).prop_map(|n| "7".repeat(n)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let route = prop_oneof![
        6 => segment().prop_map(|s| format!("/items/{s}")),
        4 => Just("/items".to_owned()),
        2 => segment().prop_map(|s| format!("/me/items/{s}")),
        3 => segment().prop_map(|s| format!("/trigs/{s}")),
        3 => prop_oneof![(0u32..=10).prop_map(|n| n.to_string()), segment()]
            .prop_map(|s| format!("/pages/{s}")),
        3 => Just("/greet".to_owned()),
        1 => prop_oneof![strs(&["0", "1", "63", "64", "65", "200"]), segment()]
            .prop_map(|s| format!("/blob/{s}")),
        1 => vec(segment(), 0..4).prop_map(|s| format!("/{}", s.join("/"))),
    ];
    (route, 0u8..24).prop_map(|(p, mangle)| match mangle {
        0 => format!("{p}/"),
        1 => format!("/{p}"),
        2 => format!("/x/..{p}"),
        _ => p,
    })
}

/// One `&`-separated piece of a query.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => strs(&[
            "page=1", "page=2", "page=3", "page=0", "page=", "page", "page=-1", "page=abc",
            "page=4294967295", "page=18446744073709551615", "page=99999999999999999999999",
            "page=%31", "tag=a", "tag=b", "tag=c", "a", "a=", "%41=1", "A=1", "", "q=x+y",
            "x=%FF", "x=%00", "x=%C3%28", "x=%", "lang=en", "=", "==", "a=b=c",
            "cache_bypass=true", "cache_bypass=1", "cache_bypass=yes", "cache_bypass=TRUE",
            "cache_bypass=false", "cache_bypass", "cache_bypass=", "CACHE_BYPASS=1",
            "%63ache_bypass=1",
        ]),
        2 => "[a-z]{1,3}=[a-zA-Z0-9%+._~-]{0,6}",
        1 => (vec(any::<u8>(), 0..3), vec(any::<u8>(), 0..4))
            .prop_map(|(n, v)| format!("{}={}", encode_all(&n), encode_all(&v))),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(String::new())),
        8 => vec(piece(), 1..5).prop_map(|p| Some(p.join("&"))),
        1 => (1usize..3000).prop_map(|n| {
            Some((0..n).map(|i| format!("p{i}={i}")).collect::<Vec<_>>().join("&"))
        }),
        1 => (1usize..20_000).prop_map(|n| Some(format!("tag={}", "x".repeat(n)))),
    ]
}

/// Bytes a header value may hold (`HeaderValue::from_bytes`: no control characters but tab).
fn value_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            6 => 0x20u8..=0x7e,
            1 => 0x80u8..=0xff,
            1 => Just(b'\t'),
        ],
        0..max,
    )
}

fn bytes_of(list: &[&'static str]) -> impl Strategy<Value = Value> {
    select(list.to_vec()).prop_map(|s| Value::Bytes(s.as_bytes().to_vec()))
}

fn big(len: usize) -> impl Strategy<Value = Value> {
    (len / 2..=len, any::<u8>()).prop_map(|(n, seed)| {
        Value::Bytes(
            (0..n)
                .map(|i| b"abcdefgh, =;\"W/*"[(i + usize::from(seed)) % 16])
                .collect(),
        )
    })
}

fn cache_control() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => bytes_of(&[
            "no-cache", "no-store", "max-age=0", "private", "no-cache, no-store", "NO-CACHE",
            "max-age=0, No-Cache", ",,,", "=", "no-store=\"", "max-age=99999999999999999999",
            "private=\"a, b\"", "no-cache=\"x\"", "only-if-cached", "public", "",
            "no-transform",
        ]),
        1 => value_bytes(24).prop_map(Value::Bytes),
        1 => big(16 * 1024),
    ]
}

fn if_none_match() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (0usize..4, select(vec![EtagForm::Exact, EtagForm::Weak, EtagForm::InList]))
            .prop_map(|(nth, form)| Value::Etag { nth, form }),
        3 => bytes_of(&[
            "*", "\"abc\"", "W/\"abc\"", "\"\"", ",", "W/", "*, \"abc\"", "\"0000000000000000\"",
            "garbage", "W/*", "\"*\"",
        ]),
        1 => value_bytes(24).prop_map(Value::Bytes),
        1 => big(10 * 1024),
    ]
}

fn accept_language() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => bytes_of(&["en", "fr", "en, fr", "fr, en", "", "EN", "en;q=0.5", " en", "en,", "*"]),
        2 => select(vec![vec![0xffu8], vec![0xfe], vec![b'e', b'n', 0xff], vec![b'e', b'n', 0xfe], vec![0xc3, 0xa9]])
            .prop_map(Value::Bytes),
        1 => value_bytes(12).prop_map(Value::Bytes),
        1 => big(16 * 1024),
    ]
}

fn header() -> impl Strategy<Value = (String, Value)> {
    let named =
        |name: &'static str, v: BoxedStrategy<Value>| v.prop_map(move |v| (name.to_owned(), v));
    prop_oneof![
        3 => named("cache-control", cache_control().boxed()),
        1 => named("pragma", bytes_of(&["no-cache", "NO-CACHE", "no-cache, x", "x", ""]).boxed()),
        4 => named("if-none-match", if_none_match().boxed()),
        1 => named("authorization", bytes_of(&["Bearer t", "Basic YTpi", ""]).boxed()),
        2 => named("cookie", bytes_of(&[
            "sessionid=abc", "theme=dark", "session=1; theme=x", "SID=2", "connect.sid=s%3Aa",
            "_session=", "sessionid", "=; ;", "", "theme=dark; sid=9",
        ]).boxed()),
        1 => named("range", bytes_of(&["bytes=0-10", "bytes=-5", "bytes=abc", "bytes=0-0,5-6"]).boxed()),
        4 => named("accept-language", accept_language().boxed()),
        2 => named("x-user", prop_oneof![
            4 => bytes_of(&["alice", "bob", "", "Alice", "alice "]),
            1 => value_bytes(6).prop_map(Value::Bytes),
        ].boxed()),
        1 => named("content-type", bytes_of(&[
            "text/plain", "application/json", "text/plain; charset=latin1", "garbage",
        ]).boxed()),
        1 => named("connection", bytes_of(&["close", "keep-alive, x-foo", "upgrade"]).boxed()),
        1 => ("x-[a-z]{1,6}", value_bytes(16).prop_map(Value::Bytes)),
        1 => (strs(&["x-big", "user-agent", "accept"]), big(16 * 1024)),
    ]
}

/// Names written by writes.
const NAMES: [&str; 5] = [
    "renamed",
    "Zürich «quoted» \"x\"",
    "{\"not\":\"json\"}",
    "tab\there",
    "🦀 crab",
];

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => select(NAMES.to_vec()).prop_map(|s| s.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 0..24),
        1 => Just(Vec::new()),
    ]
}

/// Whether both frameworks' request builders accept the URI.
fn valid_uri(uri: &str) -> bool {
    uri.parse::<axum::http::Uri>().is_ok() && uri.parse::<actix_web::http::Uri>().is_ok()
}

fn write_body(method: &str, body: Vec<u8>) -> Vec<u8> {
    if method == "GET" || method == "HEAD" {
        Vec::new()
    } else {
        body
    }
}

fn request() -> impl Strategy<Value = FReq> {
    (method(), path(), query(), vec(header(), 0..5), body()).prop_map(
        |(method, path, query, headers, body)| FReq {
            body: write_body(&method, body),
            method,
            path,
            query,
            headers,
        },
    )
}

/// How a path segment is respelled: the same value to the framework's decoding (or to a typed
/// extractor), another string to the cache.
#[derive(Clone, Copy, Debug)]
enum Spelling {
    /// Every byte `%XX`.
    EncodeAll,
    /// The first byte `%XX`.
    EncodeFirst,
    /// Escapes in lowercase hex.
    LowerHex,
    /// `0` in front.
    LeadingZero,
    /// `+` in front.
    Plus,
}

fn respell(path: &str, seg: usize, how: Spelling) -> String {
    let mut segs: Vec<String> = path.split('/').map(str::to_owned).collect();
    if segs.len() < 2 {
        return path.to_owned();
    }
    let i = 1 + seg % (segs.len() - 1);
    let s = &segs[i];
    segs[i] = match how {
        Spelling::EncodeAll => encode_all(s.as_bytes()),
        Spelling::EncodeFirst => match s.as_bytes().first() {
            Some(b) => format!("%{b:02X}{}", &s[1..]),
            None => s.clone(),
        },
        Spelling::LowerHex => s.to_ascii_lowercase(),
        Spelling::LeadingZero => format!("0{s}"),
        Spelling::Plus => format!("+{s}"),
    };
    segs.join("/")
}

/// A change to an earlier request of the case: most cache bugs are two requests that the cache
/// takes for one and the origin does not (or the reverse), so a case is mostly neighbours.
#[derive(Clone, Debug)]
enum Mutation {
    /// Another method (with a body when it is a write).
    Method(String, Vec<u8>),
    /// A path segment respelled.
    Respell(usize, Spelling),
    /// A query piece appended (creating the query).
    QueryAdd(String),
    /// A query piece removed.
    QueryDrop(usize),
    /// Another query.
    QuerySet(Option<String>),
    /// The query's pieces in reverse order.
    QueryReverse,
    /// A header added.
    HeaderAdd(String, Value),
    /// A header removed.
    HeaderDrop(usize),
    /// Every header of that name replaced by this one.
    HeaderSet(String, Value),
    /// The same path, respelled, as a write: a write and a read of one resource that the cache
    /// may tell apart.
    WriteAs(String, Vec<u8>, usize, Spelling),
    /// An unrelated request.
    Fresh(FReq),
}

fn spelling() -> impl Strategy<Value = Spelling> {
    select(vec![
        Spelling::EncodeAll,
        Spelling::EncodeFirst,
        Spelling::LowerHex,
        Spelling::LeadingZero,
        Spelling::Plus,
    ])
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (method(), body()).prop_map(|(m, b)| Mutation::Method(m.clone(), write_body(&m, b))),
        3 => (any::<usize>(), spelling()).prop_map(|(i, h)| Mutation::Respell(i, h)),
        4 => piece().prop_map(Mutation::QueryAdd),
        1 => any::<usize>().prop_map(Mutation::QueryDrop),
        1 => query().prop_map(Mutation::QuerySet),
        1 => Just(Mutation::QueryReverse),
        4 => header().prop_map(|(n, v)| Mutation::HeaderAdd(n, v)),
        2 => any::<usize>().prop_map(Mutation::HeaderDrop),
        4 => header().prop_map(|(n, v)| Mutation::HeaderSet(n, v)),
        2 => (strs(&["PUT", "POST", "DELETE", "PATCH"]), body(), any::<usize>(), spelling())
            .prop_map(|(m, b, i, h)| Mutation::WriteAs(m, b, i, h)),
        2 => request().prop_map(Mutation::Fresh),
    ]
}

fn apply(base: &FReq, m: &Mutation) -> FReq {
    let mut r = base.clone();
    let pieces = |q: &Option<String>| -> Vec<String> {
        q.as_deref()
            .map(|q| q.split('&').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    match m {
        Mutation::Method(method, body) => {
            r.method = method.clone();
            r.body = body.clone();
        }
        Mutation::Respell(i, how) => r.path = respell(&r.path, *i, *how),
        Mutation::QueryAdd(p) => {
            r.query = Some(match r.query.take() {
                Some(q) => format!("{q}&{p}"),
                None => p.clone(),
            });
        }
        Mutation::QueryDrop(i) => {
            let mut ps = pieces(&r.query);
            if !ps.is_empty() {
                ps.remove(i % ps.len());
                r.query = (!ps.is_empty()).then(|| ps.join("&"));
            }
        }
        Mutation::QuerySet(q) => r.query = q.clone(),
        Mutation::QueryReverse => {
            let mut ps = pieces(&r.query);
            ps.reverse();
            r.query = r.query.as_ref().map(|_| ps.join("&"));
        }
        Mutation::HeaderAdd(n, v) => r.headers.push((n.clone(), v.clone())),
        Mutation::HeaderDrop(i) => {
            if !r.headers.is_empty() {
                let i = i % r.headers.len();
                r.headers.remove(i);
            }
        }
        Mutation::HeaderSet(n, v) => {
            r.headers.retain(|(name, _)| name != n);
            r.headers.push((n.clone(), v.clone()));
        }
        Mutation::WriteAs(method, body, i, how) => {
            r.method = method.clone();
            r.body = body.clone();
            r.path = respell(&r.path, *i, *how);
        }
        Mutation::Fresh(other) => r = other.clone(),
    }
    r
}

/// A case: a request and up to three neighbours (each a mutation of an earlier one), sent in an
/// order that repeats them (fills, then hits).
fn case() -> impl Strategy<Value = Case> {
    (
        request(),
        vec((any::<usize>(), mutation()), 0..=3),
        vec(0usize..4, 1..=8),
    )
        .prop_map(|(base, muts, order)| {
            let mut pool = vec![base];
            for (from, m) in &muts {
                let next = apply(&pool[from % pool.len()], m);
                pool.push(next);
            }
            Case { pool, order }
        })
        .prop_filter("URIs both frameworks accept", |c| {
            c.pool
                .iter()
                .all(|r| valid_uri(&uri_of(&r.path, r.query.as_deref())))
        })
}

fn uri_of(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

// ------------------------------------------------------------------ the oracle

/// The strong ETag the response layer gives a body.
fn etag_of(body: &[u8]) -> String {
    format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(body))
}

/// Whether `If-None-Match: inm` matches `etag` (RFC 9110 §13.1.2: weak comparison, `*` matches
/// any current representation).
fn inm_matches(inm: &[u8], etag: &str) -> bool {
    let Ok(inm) = std::str::from_utf8(inm) else {
        return false;
    };
    let strip = |t: &str| {
        let t = t.trim();
        t.strip_prefix("W/").unwrap_or(t).to_owned()
    };
    inm.split(',')
        .any(|c| c.trim() == "*" || strip(c) == strip(etag))
}

/// Checks the answers of one case, step by step.
#[derive(Default)]
struct Judge {
    /// ETags the cached copy sent with a 200, in order of first sight.
    etags: Vec<String>,
    /// The body the cached copy sent under each ETag.
    bodies: HashMap<String, Vec<u8>>,
    hits: usize,
    not_modified: usize,
}

impl Judge {
    /// The request as sent: `If-None-Match` naming an earlier ETag is resolved (and left out
    /// while none was seen).
    fn wire(&self, r: &FReq) -> Wire {
        let headers = r
            .headers
            .iter()
            .filter_map(|(n, v)| match v {
                Value::Bytes(b) => Some((n.clone(), b.clone())),
                Value::Etag { nth, form } => {
                    let etag = self.etags.get(nth % self.etags.len().max(1))?;
                    let v = match form {
                        EtagForm::Exact => etag.clone(),
                        EtagForm::Weak => format!("W/{etag}"),
                        EtagForm::InList => format!("\"nope\", {etag}"),
                    };
                    Some((n.clone(), v.into_bytes()))
                }
            })
            .collect();
        Wire {
            method: r.method.clone(),
            uri: uri_of(&r.path, r.query.as_deref()),
            headers,
            body: r.body.clone(),
        }
    }

    /// `get_body`: for a `HEAD`, the body of the origin's answer to the same `GET` (the
    /// representation a `304` must match); `None` for other methods.
    fn check(
        &mut self,
        step: usize,
        req: &Wire,
        c: &Reply,
        u: &Reply,
        get_body: Option<&[u8]>,
    ) -> Result<(), String> {
        if c.h("x-cache-status") == Some("HIT") {
            self.hits += 1;
        }
        let fail = |what: &str| {
            Err(format!(
                "step {step}: {what}\n  request  {req}\n  cached   {}\n  uncached {}",
                c.brief(),
                u.brief()
            ))
        };
        if c.status == 304 && u.status != 304 {
            self.not_modified += 1;
            let Some(inm) = req.header("if-none-match") else {
                return fail("304 to a request without If-None-Match");
            };
            if u.status != 200 {
                return fail("304 where the origin does not answer 200");
            }
            let Some(etag) = c.h("etag") else {
                return fail("304 without an ETag");
            };
            if !inm_matches(inm, etag) {
                return fail("304 for an If-None-Match that does not match its ETag");
            }
            let body = get_body.unwrap_or(&u.body);
            let same =
                etag_of(body) == etag || self.bodies.get(etag).map(Vec::as_slice) == Some(body);
            if !same {
                return fail("304 with the ETag of another body than the origin's");
            }
            if !c.body.is_empty() {
                return fail("304 with a body");
            }
            return Ok(());
        }
        if c.status != u.status {
            return fail("status");
        }
        if c.body != u.body {
            return fail("body");
        }
        if c.h("content-type") != u.h("content-type") {
            return fail("content-type");
        }
        if c.status == 200 {
            if let Some(etag) = c.h("etag") {
                if !self.bodies.contains_key(etag) {
                    self.etags.push(etag.to_owned());
                }
                self.bodies.insert(etag.to_owned(), c.body.clone());
            }
        }
        Ok(())
    }
}

/// Totals over a run, for the summary line.
#[derive(Default)]
struct Totals {
    cases: Cell<usize>,
    requests: Cell<usize>,
    hits: Cell<usize>,
    not_modified: Cell<usize>,
}

impl Totals {
    fn add(&self, requests: usize, judge: &Judge) {
        self.requests.set(self.requests.get() + requests);
        self.hits.set(self.hits.get() + judge.hits);
        self.not_modified
            .set(self.not_modified.get() + judge.not_modified);
    }
}

fn fuzz_cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

fn fuzz_seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

/// Runs the property with `FUZZ_CASES` cases; `one` answers one case (`Err`: the message).
fn fuzz(label: &str, one: impl Fn(&Case, &Totals) -> Result<(), String>) {
    let seed = fuzz_seed();
    let config = ProptestConfig {
        cases: fuzz_cases(),
        // A few generated URIs are ones a framework refuses; never let them end a long run.
        max_global_rejects: fuzz_cases().max(1024),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    };
    let totals = Totals::default();
    let check = |case: &Case| one(case, &totals).map_err(TestCaseError::fail);
    let start = Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        totals.cases.set(totals.cases.get() + 1);
        check(&case)
    });
    println!(
        "{label}: {} cases ({} requests, {} hits, {} not-modified) in {:.1?}, seed {seed}",
        totals.cases.get(),
        totals.requests.get(),
        totals.hits.get(),
        totals.not_modified.get(),
        start.elapsed()
    );
    if let Err(e) = result {
        panic!("{label} (seed {seed}; rerun with FUZZ_SEED={seed}): {e}");
    }
}

/// A cache of its own for one case, on the test's storage.
fn fresh_cache(ctx: &Ctx) -> cache_core::Cache {
    ctx.builder()
        .namespace(cache_tests::unique_namespace("fz"))
        .build()
        .expect("valid test configuration")
}

// ------------------------------------------------------------------ shared handlers

/// What the `#[cached]` handlers get: the cache (`None`: the uncached copy).
#[derive(Clone)]
struct Fz {
    cache: Option<cache_core::Cache>,
}

/// An error answer of the `#[cached]` handlers: JSON `{"error": ..}` with its status.
#[derive(Debug)]
struct FzError(u16, String);

impl fmt::Display for FzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.1)
    }
}

impl FzError {
    fn body(&self) -> String {
        serde_json::json!({ "error": self.1 }).to_string()
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Trig {
    id: u32,
    name: String,
    lat: f64,
    lon: f64,
    tags: Vec<String>,
    extra: BTreeMap<String, u32>,
}

/// `GET /trigs/{id}`: a pure function of the id (so nothing needs invalidating).
fn trig_of(id: &str) -> Result<Trig, FzError> {
    let n: u32 = id
        .parse()
        .map_err(|_| FzError(400, format!("id {id:?} is not a number")))?;
    if n == 0 || n > 1000 {
        return Err(FzError(404, format!("no trig {n}")));
    }
    Ok(Trig {
        id: n,
        name: format!("Trig {n} «ünïcödé» \"q\""),
        lat: items_api::FLOATS[n as usize % items_api::FLOATS.len()] * f64::from(n),
        lon: -0.1 * f64::from(n),
        tags: (0..n % 4).map(|i| format!("t{i}")).collect(),
        extra: (0..n % 5).map(|i| (format!("k{i}"), i * n)).collect(),
    })
}

/// `GET /pages/{id}?..`: a whole response, by id: 1..=50 a 200 page, 7 with `Cache-Control:
/// private`, 8 with `Set-Cookie`, 9 a 500, 0 a 404, anything else a 400.
fn page_of(id: &str, q: &BTreeMap<String, String>) -> (u16, Vec<(&'static str, String)>, String) {
    let text = "text/html; charset=utf-8".to_owned();
    let Ok(n) = id.parse::<u32>() else {
        return (400, vec![("content-type", text)], format!("bad id {id:?}"));
    };
    let body = format!("<h1>page {n}</h1><p>{q:?}</p>");
    let mut headers = vec![("content-type", text), ("x-page", n.to_string())];
    match n {
        0 => (404, headers, "no such page".to_owned()),
        7 => {
            headers.push(("cache-control", "private".to_owned()));
            (200, headers, body)
        }
        8 => {
            headers.push(("set-cookie", "seen=1".to_owned()));
            (200, headers, body)
        }
        9 => (500, headers, "boom".to_owned()),
        1..=50 => (200, headers, body),
        _ => (404, headers, "no such page".to_owned()),
    }
}

/// Largest body the layer stores (`max_body`): `/blob/{kib}` answers on both sides of it.
const MAX_BODY: usize = 64 * 1024;

/// `GET /blob/{kib}`: `kib` KiB of bytes (at most 256), `application/octet-stream`.
fn blob_of(kib: &str) -> (u16, Vec<u8>) {
    match kib.parse::<usize>() {
        Ok(n) if n <= 256 => (200, (0..n * 1024).map(|i| (i % 251) as u8).collect()),
        _ => (400, format!("bad size {kib:?}").into_bytes()),
    }
}

/// `GET /greet`: answers from every `Accept-Language` value (joined with `, `, as RFC 9110
/// §5.3 makes them equivalent to one line), byte for byte; `null` without the header.
fn greet_of<'a>(values: impl Iterator<Item = &'a [u8]>) -> String {
    let values: Vec<&[u8]> = values.collect();
    // RFC 9111 §4.1: an absent header only matches an absent one.
    let shown = (!values.is_empty()).then(|| values.join(&b", "[..]).escape_ascii().to_string());
    serde_json::json!({ "accept_language": shown }).to_string()
}

// ------------------------------------------------------------------ Axum

mod on_axum {
    use super::*;
    use axum::body::Body;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use cache_axum::{CacheContextLayer, RoutePolicy};
    use cache_core::cached;
    use tower::ServiceExt;

    impl IntoResponse for FzError {
        fn into_response(self) -> Response {
            (
                StatusCode::from_u16(self.0).unwrap(),
                [("content-type", "application/json")],
                self.body(),
            )
                .into_response()
        }
    }

    #[cached(resource = "trig", ttl = "1h", cache = fz.cache.clone())]
    async fn trig(State(fz): State<Fz>, Path(id): Path<String>) -> Result<Json<Trig>, FzError> {
        trig_of(&id).map(Json)
    }

    #[cached(resource = "page", ttl = "1h", cache = fz.cache.clone())]
    async fn page(
        State(fz): State<Fz>,
        Path(id): Path<String>,
        Query(q): Query<BTreeMap<String, String>>,
    ) -> Response {
        let (status, headers, body) = page_of(&id, &q);
        let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
        for (n, v) in headers {
            resp.headers_mut()
                .insert(n, HeaderValue::from_str(&v).unwrap());
        }
        resp
    }

    async fn greet(headers: HeaderMap) -> Response {
        let body = greet_of(
            headers
                .get_all("accept-language")
                .iter()
                .map(HeaderValue::as_bytes),
        );
        ([("content-type", "application/json")], body).into_response()
    }

    async fn blob(Path(kib): Path<String>) -> Response {
        let (status, body) = blob_of(&kib);
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/octet-stream")],
            body,
        )
            .into_response()
    }

    fn extra(fz: Fz) -> Router {
        Router::new()
            .route("/trigs/{id}", get(trig))
            .route("/pages/{id}", get(page))
            .route("/greet", get(greet))
            .route("/blob/{kib}", get(blob))
            .with_state(fz)
    }

    pub(super) fn cached_app(cache: cache_core::Cache) -> Router {
        let layer = items_axum::layer_builder(cache.clone())
            .route("/greet", RoutePolicy::ttl(HOUR).resource("greet"))
            .route("/blob/{kib}", RoutePolicy::ttl(HOUR).resource("blob"))
            .vary(HeaderName::from_static("accept-language"))
            .max_body(MAX_BODY)
            .build();
        items_axum::routes(Arc::new(Origin::seeded()))
            .merge(extra(Fz { cache: Some(cache) }))
            .layer(layer)
            .layer(CacheContextLayer::builder().build())
    }

    pub(super) fn uncached_app() -> Router {
        items_axum::routes(Arc::new(Origin::seeded())).merge(extra(Fz { cache: None }))
    }

    pub(super) fn request(w: &Wire) -> Request<Body> {
        let mut b = Request::builder()
            .method(Method::from_bytes(w.method.as_bytes()).unwrap())
            .uri(&w.uri);
        for (n, v) in &w.headers {
            b = b.header(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        b.body(Body::from(w.body.clone())).unwrap()
    }

    pub(super) async fn send(app: &Router, w: &Wire) -> Reply {
        items_axum::reply(app.clone().oneshot(request(w)).await.unwrap()).await
    }

    /// One case against a cached and an uncached copy (`cached: None`: two uncached copies).
    pub(super) async fn run(
        cache: Option<cache_core::Cache>,
        case: &Case,
        totals: &Totals,
    ) -> Result<(), String> {
        let result = steps(cache.clone(), case, totals).await;
        if let Some(cache) = cache {
            let _ = cache.clear().await;
        }
        result
    }

    async fn steps(
        cache: Option<cache_core::Cache>,
        case: &Case,
        totals: &Totals,
    ) -> Result<(), String> {
        let a = match cache {
            Some(cache) => cached_app(cache),
            None => uncached_app(),
        };
        let b = uncached_app();
        let mut judge = Judge::default();
        let mut n = 0;
        for (step, r) in case.steps().enumerate() {
            let w = judge.wire(r);
            let get_body = match w.method.as_str() {
                "HEAD" => Some(send(&b, &w.as_get()).await.body),
                _ => None,
            };
            let c = send(&a, &w).await;
            let u = send(&b, &w).await;
            n += 1;
            judge.check(step, &w, &c, &u, get_body.as_deref())?;
        }
        totals.add(n, &judge);
        Ok(())
    }
}

fn axum_fuzz(kind: Kind) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ctx = Ctx::new(kind);
    fuzz(&format!("axum on {kind:?}"), |case, totals| {
        rt.block_on(async { on_axum::run(Some(fresh_cache(&ctx)), case, totals).await })
    });
}

#[test]
fn axum_on_redis_the_cached_copy_answers_like_the_uncached_one() {
    axum_fuzz(Kind::Redis);
}

#[test]
fn axum_on_memory_the_cached_copy_answers_like_the_uncached_one() {
    axum_fuzz(Kind::Memory);
}

/// The harness itself: two uncached copies always agree (the origin is deterministic).
#[test]
fn axum_harness_two_uncached_copies_agree() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    fuzz("axum, uncached vs uncached", |case, totals| {
        rt.block_on(on_axum::run(None, case, totals))
    });
}

// ------------------------------------------------------------------ Actix

mod on_actix {
    use super::*;
    use actix_http::Request;
    use actix_web::body::MessageBody;
    use actix_web::dev::{Service, ServiceResponse};
    use actix_web::http::header::{HeaderName, HeaderValue};
    use actix_web::http::{Method, StatusCode};
    use actix_web::test::{self, TestRequest};
    use actix_web::{web, App, HttpRequest, HttpResponse, ResponseError};
    use cache_actix::{CacheContextLayer, RoutePolicy};
    use cache_core::cached;

    impl ResponseError for FzError {
        fn status_code(&self) -> StatusCode {
            StatusCode::from_u16(self.0).unwrap()
        }

        fn error_response(&self) -> HttpResponse {
            HttpResponse::build(self.status_code())
                .content_type("application/json")
                .body(self.body())
        }
    }

    #[cached(resource = "trig", ttl = "1h", cache = fz.cache.clone())]
    async fn trig(fz: web::Data<Fz>, id: web::Path<String>) -> Result<web::Json<Trig>, FzError> {
        trig_of(&id).map(web::Json)
    }

    #[cached(resource = "page", ttl = "1h", cache = fz.cache.clone())]
    async fn page(
        fz: web::Data<Fz>,
        id: web::Path<String>,
        q: web::Query<BTreeMap<String, String>>,
    ) -> HttpResponse {
        let (status, headers, body) = page_of(&id, &q);
        let mut resp = HttpResponse::build(StatusCode::from_u16(status).unwrap());
        for (n, v) in headers {
            resp.insert_header((n, v));
        }
        resp.body(body)
    }

    async fn greet(req: HttpRequest) -> HttpResponse {
        let body = greet_of(
            req.headers()
                .get_all("accept-language")
                .map(HeaderValue::as_bytes),
        );
        HttpResponse::Ok()
            .content_type("application/json")
            .body(body)
    }

    async fn blob(kib: web::Path<String>) -> HttpResponse {
        let (status, body) = blob_of(&kib);
        HttpResponse::build(StatusCode::from_u16(status).unwrap())
            .content_type("application/octet-stream")
            .body(body)
    }

    fn extra(cfg: &mut web::ServiceConfig) {
        cfg.route("/trigs/{id}", web::get().to(trig))
            .route("/pages/{id}", web::get().to(page))
            .route("/blob/{kib}", web::get().to(blob))
            .service(
                web::resource("/greet")
                    .route(web::get().to(greet))
                    .route(web::head().to(greet)),
            );
    }

    pub(super) fn request(w: &Wire) -> Request {
        let mut r = TestRequest::default()
            .method(Method::from_bytes(w.method.as_bytes()).unwrap())
            .uri(&w.uri);
        for (n, v) in &w.headers {
            r = r.append_header((
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            ));
        }
        r.set_payload(w.body.clone()).to_request()
    }

    async fn steps<S, B, T, D>(a: &S, b: &T, case: &Case, totals: &Totals) -> Result<(), String>
    where
        S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
        B: MessageBody,
        T: Service<Request, Response = ServiceResponse<D>, Error = actix_web::Error>,
        D: MessageBody,
    {
        let mut judge = Judge::default();
        let mut n = 0;
        for (step, r) in case.steps().enumerate() {
            let w = judge.wire(r);
            let get_body = match w.method.as_str() {
                "HEAD" => Some(
                    items_actix::call_request(b, request(&w.as_get()))
                        .await
                        .body,
                ),
                _ => None,
            };
            let c = items_actix::call_request(a, request(&w)).await;
            let u = items_actix::call_request(b, request(&w)).await;
            n += 1;
            judge.check(step, &w, &c, &u, get_body.as_deref())?;
        }
        totals.add(n, &judge);
        Ok(())
    }

    macro_rules! uncached {
        () => {
            test::init_service(
                App::new()
                    .app_data(web::Data::new(Origin::seeded()))
                    .app_data(web::Data::new(Fz { cache: None }))
                    .configure(items_actix::routes)
                    .configure(extra),
            )
            .await
        };
    }

    /// One case against a cached and an uncached copy (`cached: None`: two uncached copies).
    pub(super) async fn run(
        cache: Option<cache_core::Cache>,
        case: &Case,
        totals: &Totals,
    ) -> Result<(), String> {
        let result = copies(cache.clone(), case, totals).await;
        if let Some(cache) = cache {
            let _ = cache.clear().await;
        }
        result
    }

    async fn copies(
        cache: Option<cache_core::Cache>,
        case: &Case,
        totals: &Totals,
    ) -> Result<(), String> {
        let b = uncached!();
        match cache {
            Some(cache) => {
                let layer = items_actix::layer_builder(cache.clone())
                    .route("/greet", RoutePolicy::ttl(HOUR).resource("greet"))
                    .route("/blob/{kib}", RoutePolicy::ttl(HOUR).resource("blob"))
                    .vary(axum::http::HeaderName::from_static("accept-language"))
                    .max_body(MAX_BODY)
                    .build();
                let a = test::init_service(
                    App::new()
                        .app_data(web::Data::new(Origin::seeded()))
                        .app_data(web::Data::new(Fz { cache: Some(cache) }))
                        .configure(items_actix::routes)
                        .configure(extra)
                        .wrap(layer)
                        .wrap(CacheContextLayer::builder().build()),
                )
                .await;
                steps(&a, &b, case, totals).await
            }
            None => {
                let a = uncached!();
                steps(&a, &b, case, totals).await
            }
        }
    }
}

fn actix_fuzz(kind: Kind) {
    let system = actix_web::rt::System::new();
    let ctx = Ctx::new(kind);
    fuzz(&format!("actix on {kind:?}"), |case, totals| {
        system.block_on(on_actix::run(Some(fresh_cache(&ctx)), case, totals))
    });
}

#[test]
fn actix_on_redis_the_cached_copy_answers_like_the_uncached_one() {
    actix_fuzz(Kind::Redis);
}

#[test]
fn actix_on_memory_the_cached_copy_answers_like_the_uncached_one() {
    actix_fuzz(Kind::Memory);
}

/// The harness itself: two uncached copies always agree (the origin is deterministic).
#[test]
fn actix_harness_two_uncached_copies_agree() {
    let system = actix_web::rt::System::new();
    fuzz("actix, uncached vs uncached", |case, totals| {
        system.block_on(on_actix::run(None, case, totals))
    });
}

// ------------------------------------------------------------------ replays

/// A request for a replay: `method uri`, no headers, no body.
fn req(method: &str, uri: &str) -> FReq {
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (uri.to_owned(), None),
    };
    FReq {
        method: method.to_owned(),
        path,
        query,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl FReq {
    fn header(mut self, name: &str, value: &[u8]) -> FReq {
        self.headers
            .push((name.to_owned(), Value::Bytes(value.to_vec())));
        self
    }

    fn body(mut self, body: &str) -> FReq {
        self.body = body.as_bytes().to_vec();
        self
    }
}

/// Sends `reqs` in order to a fresh cached and uncached copy on every adapter and backend;
/// the disagreements, one line each (empty: none).
fn replay(reqs: &[FReq]) -> Vec<String> {
    let case = Case {
        pool: reqs.to_vec(),
        order: (0..reqs.len()).collect(),
    };
    let mut bad = Vec::new();
    for kind in [Kind::Memory, Kind::Redis] {
        let ctx = Ctx::new(kind);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let totals = Totals::default();
        if let Err(e) = rt.block_on(on_axum::run(Some(fresh_cache(&ctx)), &case, &totals)) {
            bad.push(format!("axum on {kind:?}: {e}"));
        }
        drop(rt);
        let system = actix_web::rt::System::new();
        if let Err(e) = system.block_on(on_actix::run(Some(fresh_cache(&ctx)), &case, &totals)) {
            bad.push(format!("actix on {kind:?}: {e}"));
        }
    }
    bad
}

fn assert_replay(reqs: &[FReq]) {
    let bad = replay(reqs);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ------------------------------------------------------------------ regressions (minimized)

// Regression, fixed: a write through a percent-encoded id leaves the plain id's entry stale (Axum and Actix,
// Redis and memory). `PUT /items/%31` is routed to `/items/{id}` with `id = "1"` (both frameworks
// decode path parameters) and updates item 1, but the layer fills the route's
// `invalidate_on_write` tags from the raw path text: `fill_tag` (cache-core/src/http/engine.rs,
// called from `HttpCache::plan` at lines 423 and 481 with `req.path`, which the adapters set to
// the undecoded `parts.uri.path()` / `req.path()`) invalidates `item:%31`, while the entry of
// `GET /items/1` carries `item:1`. The next `GET /items/1` is a HIT with the old item. The docs
// of `RoutePolicy::tag` / `invalidate_on_write` say `{name}` is replaced by the path parameter.
#[test]
fn a_write_through_a_percent_encoded_id_invalidates_the_entry_of_the_plain_id() {
    assert_replay(&[
        req("GET", "/items/1"),
        req("PUT", "/items/%31").body("renamed"),
        req("GET", "/items/1"),
    ]);
}

// Regression, fixed: the reverse of the case above: an entry filled through `GET /items/%31` is tagged
// `item:%31` (the raw path again), so `PUT /items/1` (tag `item:1`) leaves it stale.
#[test]
fn an_entry_read_through_a_percent_encoded_id_is_invalidated_by_a_write_on_the_plain_id() {
    assert_replay(&[
        req("GET", "/items/%31"),
        req("PUT", "/items/1").body("renamed"),
        req("GET", "/items/%31"),
    ]);
}

// Regression (Actix only; Axum does not route `/%69tems/1`), fixed: a write whose static path segment is
// percent-encoded invalidates nothing. Actix routes `PUT /%69tems/1` to `/items/{id}` (its router
// matches the decoded path), but `ResponseCache::call` (cache-actix/src/layer.rs:239) takes the
// route from `req.match_pattern()`, which before routing matches the resource map against the raw
// `req.path()` and finds none: `Plan::Ignore`, no `invalidate_on_write`, and `GET /items/1` is a
// HIT with the old item.
#[test]
fn actix_a_write_through_a_percent_encoded_route_invalidates_its_tags() {
    assert_replay(&[
        req("GET", "/items/1"),
        req("PUT", "/%69tems/1").body("renamed"),
        req("GET", "/items/1"),
    ]);
}

// Regression, fixed: two values of a `vary` header that differ only in bytes that are not UTF-8 share one
// entry (Axum and Actix, Redis and memory): `HttpRules::key` (cache-core/src/http/mod.rs:360)
// joins the values with `String::from_utf8_lossy`, so `Accept-Language: \xFF` and `\xFE` both
// become U+FFFD, and the second request is a HIT with the first one's answer.
#[test]
fn vary_values_that_differ_in_non_utf8_bytes_are_distinct_entries() {
    assert_replay(&[
        req("GET", "/greet").header("accept-language", b"\xff"),
        req("GET", "/greet").header("accept-language", b"\xfe"),
    ]);
}

// Regression, fixed: a request without the `vary` header is served the entry of one with an empty value
// (Axum and Actix, Redis and memory): `HttpRules::key` (cache-core/src/http/mod.rs:363) adds the
// joined values with `KeyBuilder::param`, which drops an empty value (cache-core/src/key.rs:591),
// so an absent header and an empty one build the same key. RFC 9111 §4.1: an absent header only
// matches a request where it is also absent.
#[test]
fn vary_an_absent_header_and_an_empty_one_are_distinct_entries() {
    assert_replay(&[
        req("GET", "/greet").header("accept-language", b""),
        req("GET", "/greet"),
    ]);
}

/// Passes: the two neighbours the fuzzer found first, which were the harness's, not the
/// library's (the origin echoed the bypass flag; `+1` was an alias of item 1 that the route's
/// tag cannot name). Both are pinned so the origin keeps its contract.
#[test]
fn the_bypass_flag_and_non_canonical_ids_agree_with_the_origin() {
    assert_replay(&[
        req("GET", "/items?cache_bypass=1"),
        req("GET", "/items"),
        req("GET", "/items?cache_bypass=1&"),
        req("GET", "/items?"),
        req("GET", "/items/1"),
        req("PUT", "/items/+1").body("renamed"),
        req("PUT", "/items/01").body("renamed"),
        req("GET", "/items/1"),
        req("GET", "/items?page=18446744073709551615"),
    ]);
}
