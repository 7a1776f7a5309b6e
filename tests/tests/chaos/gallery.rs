//! The gallery example (Axum + SQLite) under chaos: served in-process from its library
//! (`gallery::routes::router`) with a Redis-backed cache configured as `gallery` configures it
//! (namespace `gallery`, 10% TTL jitter, the database's invalidation outbox, library defaults
//! otherwise), on a small seeded database in a temporary directory.
#![allow(unreachable_pub, dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use cache_core::CacheBuilder;
use cache_tests::http::{HttpClient, HttpResponse};
use gallery::app::{App, FEED_ITEMS_PER_TYPE};
use gallery::db::{self, Db, SeedConfig};
use gallery::model::{ContentFilter, ContentItem, ContentQuery, Page, Source, GENERATION_TYPES};
use serde_json::{json, Value};

use super::harness::{compare, Checked, Req, Service};

/// Seeded users and items (small: seeding takes well under a second).
const SEED: SeedConfig = SeedConfig {
    users: 60,
    items: 3000,
    seed: 42,
};
/// Items created at start, written during every fault.
const PROBES: usize = 6;
const USER: &str = "x-user-id";

/// An entity whose reads the stale check compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entity {
    /// `GET /content/{id}` (as its owner: private items too).
    Item { id: i64, owner: i64 },
    /// The user's lists: `/users/{u}/content_items`, `.._auto`, the own part of
    /// `/users/{u}/gallery`.
    User(i64),
}

/// What a request was.
#[derive(Debug, Clone)]
pub enum Op {
    Read,
    Create { owner: i64 },
    Update { id: i64, owner: i64 },
    Delete { id: i64, owner: i64 },
}

/// A load task: its PRNG and the items it created (only it updates and deletes them).
#[derive(Debug)]
pub struct Task {
    rng: fastrand::Rng,
    own: Vec<(i64, i64)>,
    n: u64,
}

/// The running service.
#[derive(Debug)]
pub struct Gallery {
    addr: SocketAddr,
    app: App,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    write_percent: u32,
    tags: Vec<String>,
    public_items: Vec<i64>,
    probes: Vec<Entity>,
    _dir: tempfile::TempDir,
}

impl Gallery {
    /// Seeds a database, serves the gallery on `127.0.0.1:0` with a cache on `redis_url`, and
    /// creates the probe items.
    pub async fn start(redis_url: &str, write_percent: u32) -> Gallery {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gallery.sqlite3");
        let (db, _) = tokio::task::spawn_blocking(move || Db::open(&path, SEED, 2))
            .await
            .expect("open task")
            .expect("open the gallery database");
        // As `gallery::server::start` configures it: with the database's invalidation outbox.
        let cache = CacheBuilder::new()
            .namespace("gallery")
            .ttl_jitter(0.1)
            .redis_url(redis_url)
            .outbox(std::sync::Arc::new(
                gallery::outbox::SqliteOutbox::new(db.clone()).expect("outbox"),
            ))
            .build()
            .expect("cache");
        let app = App::new(cache, db);
        let router = gallery::routes::router(app.clone(), "chaos-admin-token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        let mut g = Gallery {
            addr,
            app,
            shutdown: Some(tx),
            server: Some(server),
            write_percent,
            tags: Vec::new(),
            public_items: Vec::new(),
            probes: Vec::new(),
            _dir: dir,
        };
        g.discover().await;
        g
    }

    async fn discover(&mut self) {
        let mut client = HttpClient::new(self.addr);
        let r = client.get("/tags?cache_bypass=1").await.expect("GET /tags");
        assert_eq!(r.status, 200, "GET /tags: {}", r.text());
        let tags: Vec<Value> = serde_json::from_slice(&r.body).expect("tags JSON");
        self.tags = tags
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .take(40)
            .collect();
        assert!(!self.tags.is_empty(), "no tags seeded");
        let r = client
            .get("/content?sort=recent&limit=100&cache_bypass=1")
            .await
            .expect("GET /content");
        let page: Page<ContentItem> = serde_json::from_slice(&r.body).expect("page JSON");
        self.public_items = page.items.iter().map(|i| i.id).collect();
        assert!(self.public_items.len() > 10, "too few public items");
        for i in 0..PROBES {
            let owner = 1 + i as i64;
            let body = json!({
                "title": format!("chaos probe {i}"),
                "generation_type": GENERATION_TYPES[i % GENERATION_TYPES.len()].0,
                "tags": [self.tags[i % self.tags.len()]],
            })
            .to_string();
            let owner_s = owner.to_string();
            let r = client
                .request(
                    "POST",
                    "/content",
                    &[(USER, &owner_s), ("content-type", "application/json")],
                    Some(body.as_bytes()),
                )
                .await
                .expect("create a probe");
            assert_eq!(r.status, 201, "create a probe: {}", r.text());
            let item: ContentItem = serde_json::from_slice(&r.body).expect("item JSON");
            self.probes.push(Entity::Item { id: item.id, owner });
        }
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
}

fn user_header(u: i64) -> Vec<(&'static str, String)> {
    vec![(USER, u.to_string())]
}

impl Service for Gallery {
    type Op = Op;
    type Task = Task;
    type Entity = Entity;

    fn name(&self) -> &'static str {
        "gallery (axum)"
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn new_task(&self, _index: usize, seed: u64) -> Task {
        Task {
            rng: fastrand::Rng::with_seed(seed),
            own: Vec::new(),
            n: 0,
        }
    }

    fn next_request(&self, t: &mut Task) -> Req<Op> {
        t.n += 1;
        let users = i64::from(SEED.users);
        let rng = &mut t.rng;
        if rng.u32(0..100) < self.write_percent {
            let roll = rng.u32(0..100);
            if t.own.len() >= 2 && roll < 30 {
                let (id, owner) = t.own[rng.usize(..t.own.len())];
                let tags: Vec<&String> = (0..2)
                    .map(|_| &self.tags[rng.usize(..self.tags.len())])
                    .collect();
                return Req {
                    method: "PUT",
                    path: format!("/content/{id}/tags"),
                    headers: user_header(owner),
                    body: Some(json!({ "tags": tags })),
                    expect: &[200],
                    write: true,
                    op: Op::Update { id, owner },
                };
            }
            if t.own.len() >= 2 && roll < 42 {
                let (id, owner) = t.own.swap_remove(rng.usize(..t.own.len()));
                return Req {
                    method: "DELETE",
                    path: format!("/content/{id}"),
                    headers: user_header(owner),
                    body: None,
                    expect: &[204],
                    write: true,
                    op: Op::Delete { id, owner },
                };
            }
            let owner = rng.i64(1..=users);
            let tags: Vec<&String> = (0..1 + rng.usize(..3))
                .map(|_| &self.tags[rng.usize(..self.tags.len())])
                .collect();
            return Req {
                method: "POST",
                path: "/content".into(),
                headers: user_header(owner),
                body: Some(json!({
                    "title": format!("chaos item {}", rng.u32(..)),
                    "generation_type": GENERATION_TYPES[rng.usize(..GENERATION_TYPES.len())].0,
                    "tags": tags,
                    "auto": rng.u32(0..100) < 30,
                    "is_public": rng.u32(0..100) < 80,
                })),
                expect: &[201],
                write: true,
                op: Op::Create { owner },
            };
        }
        let some_user = |rng: &mut fastrand::Rng, own: &[(i64, i64)]| {
            if !own.is_empty() && rng.bool() {
                own[rng.usize(..own.len())].1
            } else {
                rng.i64(1..=users)
            }
        };
        match rng.u32(0..100) {
            0..=24 => {
                if !t.own.is_empty() && rng.bool() {
                    let (id, owner) = t.own[rng.usize(..t.own.len())];
                    Req::get(format!("/content/{id}"), user_header(owner), Op::Read)
                } else {
                    let id = self.public_items[rng.usize(..self.public_items.len())];
                    Req::get(format!("/content/{id}"), Vec::new(), Op::Read)
                }
            }
            25..=36 => {
                let u = some_user(rng, &t.own);
                Req::get(
                    format!("/users/{u}/content_items"),
                    user_header(u),
                    Op::Read,
                )
            }
            37..=44 => {
                let u = some_user(rng, &t.own);
                Req::get(
                    format!("/users/{u}/content_items_auto"),
                    user_header(u),
                    Op::Read,
                )
            }
            45..=54 => {
                let u = some_user(rng, &t.own);
                Req::get(format!("/users/{u}/gallery"), user_header(u), Op::Read)
            }
            55..=69 => {
                let tag = &self.tags[rng.usize(..self.tags.len())];
                let sort = if rng.bool() { "recent" } else { "popular" };
                Req::get(
                    format!("/content?tag={tag}&sort={sort}"),
                    Vec::new(),
                    Op::Read,
                )
            }
            70..=79 => Req::get("/content?sort=recent".into(), Vec::new(), Op::Read),
            80..=89 => Req::get("/gallery".into(), Vec::new(), Op::Read),
            _ => Req::get("/tags".into(), Vec::new(), Op::Read),
        }
    }

    fn written(
        &self,
        task: Option<&mut Task>,
        req: &Req<Op>,
        reply: Option<&HttpResponse>,
    ) -> Vec<Entity> {
        match req.op {
            Op::Read => Vec::new(),
            Op::Create { owner } => {
                let created = reply
                    .and_then(|r| serde_json::from_slice::<ContentItem>(&r.body).ok())
                    .map(|item| item.id);
                match created {
                    Some(id) => {
                        if let Some(t) = task {
                            t.own.push((id, owner));
                        }
                        vec![Entity::Item { id, owner }, Entity::User(owner)]
                    }
                    // A failed create may still have committed: its owner's lists are
                    // checked.
                    None => vec![Entity::User(owner)],
                }
            }
            Op::Update { id, owner } | Op::Delete { id, owner } => {
                vec![Entity::Item { id, owner }, Entity::User(owner)]
            }
        }
    }

    fn probes(&self) -> Vec<Entity> {
        self.probes.clone()
    }

    fn probe_reads(&self, probe: &Entity) -> Vec<(String, Vec<(&'static str, String)>)> {
        match *probe {
            Entity::Item { id, owner } => vec![
                (format!("/content/{id}"), user_header(owner)),
                (format!("/users/{owner}/content_items"), user_header(owner)),
            ],
            Entity::User(u) => vec![(format!("/users/{u}/content_items"), user_header(u))],
        }
    }

    fn probe_write(&self, probe: &Entity, seq: u64) -> Req<Op> {
        let Entity::Item { id, owner } = *probe else {
            panic!("gallery probes are items");
        };
        Req {
            method: "PUT",
            path: format!("/content/{id}/tags"),
            headers: user_header(owner),
            body: Some(json!({ "tags": [format!("chaos-probe-{seq}")] })),
            expect: &[200],
            write: true,
            op: Op::Update { id, owner },
        }
    }

    fn hit_probe(&self) -> String {
        format!("/content/{}", self.public_items[0])
    }

    fn status_group(&self, path: &str) -> Option<&'static str> {
        // One route per way of caching: the merged view (`get_many_or_load`), a `#[cached]`
        // handler, a `#[cached]` query function, the `ResponseCacheLayer`.
        let path = path.split('?').next().unwrap_or(path);
        if path.starts_with("/users/") && path.ends_with("/gallery") {
            Some("/users/{id}/gallery (fragments)")
        } else if path.starts_with("/users/") && path.ends_with("/content_items") {
            Some("/users/{id}/content_items (#[cached] handler)")
        } else if path.starts_with("/content/") {
            Some("/content/{id} (#[cached] fn)")
        } else if path == "/gallery" {
            Some("/gallery (ResponseCacheLayer)")
        } else {
            None
        }
    }

    async fn check(&self, client: &mut HttpClient, entity: &Entity) -> Vec<Checked> {
        match *entity {
            Entity::Item { id, owner } => {
                let truth = self
                    .app
                    .db
                    .read(move |c| db::content_item(c, id))
                    .await
                    .expect("database read")
                    .map(|item| serde_json::to_value(item).expect("JSON"));
                vec![
                    compare(
                        client,
                        &format!("/content/{id}"),
                        &user_header(owner),
                        truth,
                    )
                    .await,
                ]
            }
            Entity::User(u) => {
                let mut out = Vec::new();
                for (path, source) in [
                    (format!("/users/{u}/content_items"), Source::Manual),
                    (format!("/users/{u}/content_items_auto"), Source::Auto),
                ] {
                    let truth = self
                        .app
                        .db
                        .read(move |c| db::user_items(c, u, source, 1, 24))
                        .await
                        .expect("database read");
                    let truth = serde_json::to_value(truth).expect("JSON");
                    out.push(compare(client, &path, &user_header(u), Some(truth)).await);
                }
                // The merged view: its own fragments (the community ones rank by engagement,
                // which the API never changes, and by the hour).
                let own: Vec<Vec<ContentItem>> = self
                    .app
                    .db
                    .read(move |c| {
                        App::all_types()
                            .into_iter()
                            .map(|gt| db::user_items_of_type(c, u, gt, FEED_ITEMS_PER_TYPE))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .await
                    .expect("database read");
                let path = format!("/users/{u}/gallery");
                let truth: Vec<Value> = own
                    .into_iter()
                    .map(|v| serde_json::to_value(v).expect("JSON"))
                    .collect();
                let mut c = Checked {
                    path: path.clone(),
                    stale: None,
                    error: None,
                };
                match client
                    .request("GET", &path, &[(USER, &u.to_string())], None)
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                        let served: Vec<Value> = body["sections"]
                            .as_array()
                            .map(|s| s.iter().map(|x| x["own"].clone()).collect())
                            .unwrap_or_default();
                        if served != truth {
                            c.stale = Some(format!(
                                "GET {path} [{}]: own fragments differ from the database",
                                r.cache_status().unwrap_or("-")
                            ));
                        }
                    }
                    Ok(r) => c.error = Some(format!("GET {path}: {}", r.status)),
                    Err(e) => c.error = Some(format!("GET {path}: {e}")),
                }
                out.push(c);
                out
            }
        }
    }

    async fn check_globals(&self, client: &mut HttpClient) -> Vec<Checked> {
        let tags = self
            .app
            .db
            .read(|c| db::tag_counts(c, 200))
            .await
            .expect("database read");
        let recent = self
            .app
            .db
            .read(|c| {
                let filter = ContentFilter::from_query(&ContentQuery {
                    sort: Some("recent".into()),
                    ..ContentQuery::default()
                })
                .map_err(|e| db::DbError(format!("{e:?}")))?;
                db::content_page(c, &filter)
            })
            .await
            .expect("database read");
        vec![
            compare(
                client,
                "/tags",
                &[],
                Some(serde_json::to_value(tags).expect("JSON")),
            )
            .await,
            compare(
                client,
                "/content?sort=recent",
                &[],
                Some(serde_json::to_value(recent).expect("JSON")),
            )
            .await,
        ]
    }
}
