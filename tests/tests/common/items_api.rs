//! The differential HTTP harness shared by `axum_differential.rs` and `actix_differential.rs`.
//!
//! * [`Origin`]: a small items API over an in-memory "database", framework-free: each framework
//!   file wraps these functions in handlers, once behind its `ResponseCacheLayer` (the cached
//!   copy) and once bare (the uncached copy), each copy with its own [`Origin`] from the same
//!   seed.
//! * [`differential`]: sends the same seeded random sequence of requests, one at a time, to both
//!   copies and compares every answer (status, body, `Content-Type`; `HEAD` against the `GET`
//!   body length; a `304` only when the uncached copy still serves the body that the cached copy
//!   sent under that `ETag`). The origin is the oracle: the cached copy must answer exactly what
//!   the uncached one answers at that moment.
//! * [`tcp_send`]: a minimal HTTP/1.1 client (one request per connection), because `HEAD` bodies
//!   are stripped and `Content-Length` is written by the real servers, not in-process.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const JSON: &str = "application/json";
pub const PER_PAGE: usize = 4;
/// Awkward floats: a cache that re-encodes JSON would change them.
pub const FLOATS: [f64; 6] = [
    55.398430706246764,
    0.30000000000000004,
    1e-7,
    123456789.12345679,
    -2.5e-300,
    7.0,
];

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: u32,
    pub name: String,
    pub price: f64,
    pub tags: Vec<String>,
    pub owner: String,
    pub version: u64,
}

fn item(id: u32, name: String) -> Item {
    let tags = ["a", "b", "c"]
        .iter()
        .enumerate()
        .filter(|(bit, _)| id & (1 << bit) != 0)
        .map(|(_, t)| (*t).to_owned())
        .collect();
    Item {
        id,
        name,
        price: FLOATS[id as usize % FLOATS.len()] * f64::from(id),
        tags,
        owner: if id % 2 == 0 { "bob" } else { "alice" }.to_owned(),
        version: 1,
    }
}

/// A response of the origin, before any framework.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

fn out(status: u16, body: &serde_json::Value) -> Out {
    Out {
        status,
        content_type: JSON,
        body: body.to_string(),
    }
}

#[derive(Debug)]
struct Db {
    items: BTreeMap<u32, Item>,
    next_id: u32,
}

/// The items API with its database. Counts the handler runs.
#[derive(Debug)]
pub struct Origin {
    db: Mutex<Db>,
    runs: AtomicUsize,
}

/// Items `1..=SEEDED` exist at the start.
pub const SEEDED: u32 = 12;

impl Default for Origin {
    fn default() -> Self {
        Origin::seeded()
    }
}

impl Origin {
    /// The same starting database every time.
    pub fn seeded() -> Origin {
        let items = (1..=SEEDED)
            .map(|id| (id, item(id, format!("Item {id} «ünïcödé» \"quoted\""))))
            .collect();
        Origin {
            db: Mutex::new(Db {
                items,
                next_id: SEEDED + 1,
            }),
            runs: AtomicUsize::new(0),
        }
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    pub fn count_run(&self) {
        self.runs.fetch_add(1, Ordering::SeqCst);
    }

    /// An id is a number in its canonical spelling: `05` or `+5` (which `str::parse` accepts)
    /// are 400s, not aliases of `5`, since the cache's tags (`item:{id}`) are filled from the
    /// path's text (found by fuzz_http.rs).
    fn parse_id(raw: &str) -> Result<u32, Out> {
        raw.parse::<u32>()
            .ok()
            .filter(|id| id.to_string() == raw)
            .ok_or_else(|| out(400, &json!({"error": "id must be a number", "id": raw})))
    }

    /// `GET /items/{id}`.
    pub fn get_item(&self, raw_id: &str) -> Out {
        self.count_run();
        let id = match Self::parse_id(raw_id) {
            Ok(id) => id,
            Err(e) => return e,
        };
        match self.db().items.get(&id) {
            Some(item) => out(200, &json!(item)),
            None => out(404, &json!({"error": "no such item", "id": id})),
        }
    }

    /// `GET /me/items/{id}` for `user`: 404 for another user's item.
    pub fn my_item(&self, user: Option<&str>, raw_id: &str) -> Out {
        self.count_run();
        let id = match Self::parse_id(raw_id) {
            Ok(id) => id,
            Err(e) => return e,
        };
        let Some(user) = user else {
            return out(401, &json!({"error": "who are you?"}));
        };
        match self.db().items.get(&id) {
            Some(item) if item.owner == user => out(200, &json!(item)),
            _ => out(404, &json!({"error": "no such item of yours", "id": id})),
        }
    }

    /// `GET /items`: `page` (a positive integer when present, else 400), repeated `tag` filters
    /// (echoed in order), and the raw query echoed so that merged queries show. The echo reads
    /// parameters by name, like any handler that does not look at the raw URI: the pieces are
    /// stable-sorted by their raw name (the order of distinct names does not matter, repeated
    /// names keep theirs), and nothing else is normalised (`a`, `a=`, `%41=1` and empty pieces
    /// all stay visible). The cache may canonicalise exactly that (SPEC: "parameter order yes").
    ///
    /// The bypass flag (`cache_bypass`, by its raw name) is the cache's, not the handler's (SPEC:
    /// it is never part of a key): the echo leaves its pieces out, and a query that held nothing
    /// else (but empty pieces: `?cache_bypass=1&`) is echoed as no query, as the key counts it.
    pub fn list(&self, raw_query: Option<&str>) -> Out {
        let echo = raw_query.and_then(|q| {
            let name = |p: &str| p.split('=').next().unwrap_or_default().to_owned();
            let mut pieces: Vec<&str> =
                q.split('&').filter(|p| name(p) != "cache_bypass").collect();
            if pieces.is_empty() || (pieces == [""] && !q.is_empty()) {
                return None;
            }
            pieces.sort_by_key(|p| name(p));
            Some(pieces.join("&"))
        });
        self.count_run();
        let mut page = 1usize;
        let mut tags: Vec<String> = Vec::new();
        for pair in raw_query.unwrap_or("").split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, value) = (percent_decode(name), percent_decode(value));
            match name.as_str() {
                "page" => match value.parse::<usize>() {
                    Ok(p) if p > 0 => page = p,
                    _ => {
                        return out(
                            400,
                            &json!({"error": "page must be a positive integer", "page": value}),
                        )
                    }
                },
                "tag" => tags.push(value),
                _ => {}
            }
        }
        let db = self.db();
        let matching: Vec<&Item> = db
            .items
            .values()
            .filter(|i| tags.iter().all(|t| i.tags.contains(t)))
            .collect();
        // Saturating: `?page=18446744073709551615` is a page past the end, not an overflow
        // (found by fuzz_http.rs).
        let items: Vec<&Item> = matching
            .iter()
            .skip((page - 1).saturating_mul(PER_PAGE))
            .take(PER_PAGE)
            .copied()
            .collect();
        out(
            200,
            &json!({
                "query": echo,
                "page": page,
                "per_page": PER_PAGE,
                "tags": tags,
                "total": matching.len(),
                "items": items,
            }),
        )
    }

    /// `PUT /items/{id}` with the new name as the body: 200 with the item, 404 if unknown.
    pub fn put_item(&self, raw_id: &str, body: &str) -> Out {
        self.count_run();
        let id = match Self::parse_id(raw_id) {
            Ok(id) => id,
            Err(e) => return e,
        };
        let mut db = self.db();
        match db.items.get_mut(&id) {
            Some(item) => {
                item.name = body.to_owned();
                item.price = item.price * 1.000_000_001 + 0.1;
                item.version += 1;
                out(200, &json!(item))
            }
            None => out(404, &json!({"error": "no such item", "id": id})),
        }
    }

    /// `POST /items` with the name as the body: 201 with the new item.
    pub fn create(&self, body: &str) -> Out {
        self.count_run();
        let mut db = self.db();
        let id = db.next_id;
        db.next_id += 1;
        let new = item(id, body.to_owned());
        db.items.insert(id, new.clone());
        out(201, &json!(new))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut outb = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => outb.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        outb.push(b);
                        i += 2;
                    }
                    None => outb.push(b'%'),
                }
            }
            b => outb.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&outb).into_owned()
}

// ------------------------------------------------------------------ requests and replies

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    GetItem,
    GetList,
    Head,
    IfNoneMatch,
    Put,
    Post,
}

/// One request of the sequence.
#[derive(Debug, Clone)]
pub struct Req {
    pub kind: Kind,
    pub method: &'static str,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Req {
    pub fn get(uri: impl Into<String>) -> Req {
        Req {
            kind: Kind::GetItem,
            method: "GET",
            uri: uri.into(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.method, self.uri);
        for (n, v) in &self.headers {
            let _ = write!(s, " [{n}: {v}]");
        }
        if !self.body.is_empty() {
            let _ = write!(s, " body {:?}", self.body);
        }
        s
    }
}

/// A response as the client sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn h(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn brief(&self) -> String {
        let mut body = self.text();
        if body.len() > 160 {
            let mut cut = 160;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        format!(
            "{} x-cache-status={} content-type={} content-length={} body {body:?}",
            self.status,
            self.h("x-cache-status").unwrap_or("-"),
            self.h("content-type").unwrap_or("-"),
            self.h("content-length").unwrap_or("-"),
        )
    }
}

/// A copy of the app: sends one request, waits for the whole answer. `HEAD` must go through a
/// real server (see [`tcp_send`]).
#[allow(async_fn_in_trait)]
pub trait Target {
    async fn send(&self, req: &Req) -> Reply;
}

/// One request over a fresh TCP connection (`Connection: close`), read to the end.
pub async fn tcp_send(addr: SocketAddr, req: &Req) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {addr}\r\n", req.method, req.uri);
    for (n, v) in &req.headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    if req.method != "GET" && req.method != "HEAD" {
        let _ = write!(head, "Content-Length: {}\r\n", req.body.len());
    }
    head.push_str("Connection: close\r\n\r\n");
    head.push_str(&req.body);
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked && req.method != "HEAD" {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Decodes a `Transfer-Encoding: chunked` body.
pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_str = String::from_utf8_lossy(&body[..line_end]).into_owned();
        let size =
            usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        body = &body[line_end + 2..];
        if size == 0 || body.len() < size {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
    out
}

// ------------------------------------------------------------------ the sequence

/// The list queries tried: paging, bad pages, repeated and reordered params, odd params.
pub const LIST_QUERIES: [&str; 24] = [
    "",
    "?",
    "?page=1",
    "?page=2",
    "?page=3",
    "?page=",
    "?page=abc",
    "?page=0",
    "?page",
    "?page=1&page=2",
    "?page=2&page=1",
    "?tag=a",
    "?tag=b",
    "?tag=a&tag=b",
    "?tag=b&tag=a",
    "?page=2&tag=a",
    "?a",
    "?a=",
    "?%41=1",
    "?A=1",
    "?a=1&&b=2",
    "?a=1&b=2",
    "?b=2&a=1",
    "?q=x+y",
];

fn item_uri(rng: &mut fastrand::Rng, max_id: u32) -> String {
    if rng.u8(..40) == 0 {
        return "/items/abc".to_owned();
    }
    format!("/items/{}", rng.u32(1..=max_id + 2))
}

fn list_uri(rng: &mut fastrand::Rng) -> String {
    format!("/items{}", LIST_QUERIES[rng.usize(..LIST_QUERIES.len())])
}

/// Names written by PUT/POST: unicode, quotes, and a JSON-looking string.
const NAMES: [&str; 5] = [
    "renamed",
    "Zürich «quoted» \"x\"",
    "{\"not\":\"json\"}",
    "tab\there",
    "🦀 crab",
];

/// The next request of the sequence. `etags` are (uri, etag) pairs seen from the cached copy.
pub fn next_request(rng: &mut fastrand::Rng, max_id: u32, etags: &[(String, String)]) -> Req {
    let roll = rng.u32(..100);
    let mut req = match roll {
        0..=34 => Req {
            kind: Kind::GetItem,
            ..Req::get(item_uri(rng, max_id))
        },
        35..=59 => Req {
            kind: Kind::GetList,
            ..Req::get(list_uri(rng))
        },
        60..=69 => {
            let uri = if rng.bool() {
                item_uri(rng, max_id)
            } else {
                list_uri(rng)
            };
            Req {
                kind: Kind::Head,
                method: "HEAD",
                ..Req::get(uri)
            }
        }
        70..=81 if !etags.is_empty() => {
            let (uri, etag) = &etags[rng.usize(..etags.len())];
            Req {
                kind: Kind::IfNoneMatch,
                ..Req::get(uri.clone()).header("if-none-match", etag)
            }
        }
        70..=81 => Req {
            kind: Kind::GetItem,
            ..Req::get(item_uri(rng, max_id))
        },
        82..=95 => Req {
            kind: Kind::Put,
            method: "PUT",
            body: format!("{} #{}", NAMES[rng.usize(..NAMES.len())], rng.u32(..1000)),
            ..Req::get(item_uri(rng, max_id))
        },
        _ => Req {
            kind: Kind::Post,
            method: "POST",
            body: NAMES[rng.usize(..NAMES.len())].to_owned(),
            ..Req::get("/items")
        },
    };
    if req.method != "GET" && req.method != "HEAD" {
        req.headers
            .push(("content-type".into(), "text/plain".into()));
    }
    req
}

/// One disagreement between the copies.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub step: usize,
    pub kind: Kind,
    pub what: &'static str,
    pub detail: String,
}

/// The sequence's outcome.
#[derive(Debug, Default)]
pub struct Outcome {
    pub steps: usize,
    pub mismatches: Vec<Mismatch>,
    pub hits: usize,
    pub not_modified: usize,
}

impl Outcome {
    /// Panics with a summary when the copies disagreed.
    pub fn assert_clean(&self, label: &str, seed: u64) {
        if self.mismatches.is_empty() {
            return;
        }
        let mut by: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
        for m in &self.mismatches {
            *by.entry((m.kind, m.what)).or_default() += 1;
        }
        let mut msg = format!(
            "{label}: the cached copy disagreed with the origin on {} of {} requests \
             (seed {seed}; rerun with DIFF_SEED={seed}); by request kind and check: {by:?}\n\
             first ones (and the first of each kind/check):",
            self.mismatches.len(),
            self.steps
        );
        let mut shown: Vec<usize> = (0..self.mismatches.len().min(8)).collect();
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.mismatches.iter().enumerate() {
            if seen.insert((m.kind, m.what)) && !shown.contains(&i) {
                shown.push(i);
            }
        }
        for i in shown {
            let m = &self.mismatches[i];
            let _ = write!(
                msg,
                "\n  step {} {:?} {}: {}",
                m.step, m.kind, m.what, m.detail
            );
        }
        panic!("{msg}");
    }
}

/// The seed: `DIFF_SEED`, else the clock.
pub fn seed() -> u64 {
    std::env::var("DIFF_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

/// Steps per run: `DIFF_STEPS`, default 300.
pub fn steps() -> usize {
    std::env::var("DIFF_STEPS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(300)
}

fn content_length(r: &Reply) -> Option<usize> {
    r.h("content-length").and_then(|v| v.parse().ok())
}

/// Sends the same `steps` seeded requests to both copies, one at a time, and compares.
pub async fn differential<C: Target, U: Target>(
    cached: &C,
    uncached: &U,
    seed: u64,
    steps: usize,
) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut etag_bodies: HashMap<String, Vec<u8>> = HashMap::new();
    let mut seen_etags: Vec<(String, String)> = Vec::new();
    let mut max_id = SEEDED;
    let mut outcome = Outcome {
        steps,
        ..Outcome::default()
    };
    for step in 0..steps {
        let req = next_request(&mut rng, max_id, &seen_etags);
        let mut bad = |what: &'static str, detail: String| {
            outcome.mismatches.push(Mismatch {
                step,
                kind: req.kind,
                what,
                detail: format!("{}: {detail}", req.describe()),
            });
        };
        if req.kind == Kind::Head {
            // The origin's GET body length at this moment (a GET changes nothing).
            let get = uncached
                .send(&Req {
                    kind: Kind::GetItem,
                    method: "GET",
                    ..req.clone()
                })
                .await;
            let c = cached.send(&req).await;
            let u = uncached.send(&req).await;
            if content_length(&u) != Some(get.body.len()) {
                bad(
                    "harness: uncached HEAD length",
                    format!("uncached {} vs GET body {}", u.brief(), get.body.len()),
                );
            }
            if c.status != u.status {
                bad(
                    "status",
                    format!("cached {} / uncached {}", c.brief(), u.brief()),
                );
            }
            if c.h("content-type") != u.h("content-type") {
                bad(
                    "content-type",
                    format!("cached {} / uncached {}", c.brief(), u.brief()),
                );
            }
            if content_length(&c) != Some(get.body.len()) {
                bad(
                    "HEAD content-length",
                    format!(
                        "cached {} but the GET body is {} bytes",
                        c.brief(),
                        get.body.len()
                    ),
                );
            }
            if !c.body.is_empty() {
                bad("HEAD body", format!("cached {}", c.brief()));
            }
            if c.h("x-cache-status") == Some("HIT") {
                outcome.hits += 1;
            }
            continue;
        }
        let c = cached.send(&req).await;
        let u = uncached.send(&req).await;
        if c.h("x-cache-status") == Some("HIT") {
            outcome.hits += 1;
        }
        if req.kind == Kind::Post && c.status == 201 {
            max_id += 1;
        }
        if c.status == 304 && req.kind == Kind::IfNoneMatch {
            outcome.not_modified += 1;
            let etag = req
                .headers
                .iter()
                .find(|(n, _)| n == "if-none-match")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let served = etag_bodies.get(&etag);
            if u.status != 200 || served != Some(&u.body) {
                bad(
                    "304 for a changed representation",
                    format!(
                        "cached said 304 for {etag} (served as {:?}); the origin now answers {}",
                        served.map(|b| String::from_utf8_lossy(b).into_owned()),
                        u.brief()
                    ),
                );
            }
            continue;
        }
        if c.status != u.status {
            bad(
                "status",
                format!("cached {} / uncached {}", c.brief(), u.brief()),
            );
        } else if c.body != u.body {
            bad(
                "body",
                format!("cached {} / uncached {}", c.brief(), u.brief()),
            );
        }
        if c.h("content-type") != u.h("content-type") {
            bad(
                "content-type",
                format!("cached {} / uncached {}", c.brief(), u.brief()),
            );
        }
        if c.status == 200 && req.method == "GET" {
            if let Some(etag) = c.h("etag") {
                if !etag_bodies.contains_key(etag) {
                    seen_etags.push((req.uri.clone(), etag.to_owned()));
                }
                etag_bodies.insert(etag.to_owned(), c.body.clone());
            }
        }
    }
    outcome
}

/// `Cache-Control` directives, lowercased, with `max-age` split out.
pub fn cache_control(value: Option<&str>) -> (Vec<String>, Option<u64>) {
    let mut directives = Vec::new();
    let mut max_age = None;
    for d in value.unwrap_or("").split(',') {
        let d = d.trim().to_ascii_lowercase();
        if d.is_empty() {
            continue;
        }
        match d.split_once('=') {
            Some(("max-age", v)) => max_age = v.trim().parse().ok(),
            _ => directives.push(d),
        }
    }
    directives.sort();
    (directives, max_age)
}
