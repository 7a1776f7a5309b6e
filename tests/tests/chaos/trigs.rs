//! The trigs example (Actix-web + SQLite) under chaos: served in-process from its library
//! (`trigs::configure` behind `CacheContextLayer`, as its `main` does) on an Actix system of its
//! own thread, with a Redis-backed cache configured as `trigs` configures it (namespace `trigs`,
//! library defaults otherwise), on a small seeded database in a temporary directory.
//!
//! The load writes logs (create, edit, delete), photos (upload, edit, delete) and users, and
//! reads every endpoint, the PNG maps and badges included. The stale check compares JSON reads
//! with the rows in SQLite and image reads, byte for byte, with the image rendered now from
//! SQLite (`trigs::render`, deterministic): a log write must reach every map that draws its
//! trig (`db::maps_showing`), which the handlers invalidate after the transaction.
#![allow(unreachable_pub, dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cache_actix::{CacheContextLayer, CacheMetrics};
use cache_core::CacheBuilder;
use cache_tests::http::{HttpClient, HttpResponse};
use serde_json::{json, Value};
use trigs::db::{self, LogFilter, PhotoFilter};
use trigs::{App, Db, SeedSize};

use super::harness::{compare, Checked, Req, Service};

const SEED: SeedSize = SeedSize {
    trigs: 300,
    users: 40,
    logs: 3000,
};
/// The trigs the load reads and logs (so that writes and reads meet).
const HOT_TRIGS: i64 = 30;
/// Logs created at start, written (a photo) during every fault.
const PROBES: usize = 6;
const CONDITIONS: [&str; 3] = ["Good", "Damaged", "Missing"];

/// An entity whose reads the stale check compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entity {
    /// `GET /v1/logs/{id}`.
    Log(i64),
    /// `GET /v1/trigs/{id}`, `.../logs`, `.../photos`.
    Trig(i64),
    /// `GET /v1/users/{id}`, `.../logs`.
    User(i64),
    /// `GET /v1/photos/{id}`.
    Photo(i64),
    /// `GET /v1/trigs/{id}/map` (PNG).
    Map(i64),
}

/// A log a load task created (only it adds photos to it and deletes it).
#[derive(Debug, Clone)]
pub struct OwnLog {
    id: i64,
    trig: i64,
    user: i64,
    photos: Vec<i64>,
}

/// What a request was.
#[derive(Debug, Clone)]
pub enum Op {
    Read,
    CreateLog {
        trig: i64,
        user: i64,
    },
    UpdateLog {
        log: i64,
        trig: i64,
        user: i64,
    },
    AddPhoto {
        log: i64,
        trig: i64,
        user: i64,
    },
    UpdatePhoto {
        photo: i64,
        log: i64,
        trig: i64,
        user: i64,
    },
    DeletePhoto {
        photo: i64,
        log: i64,
        trig: i64,
        user: i64,
    },
    DeleteLog(OwnLog),
    CreateUser,
}

/// A load task: its PRNG, its logs, a counter for unique user names.
#[derive(Debug)]
pub struct Task {
    rng: fastrand::Rng,
    own: Vec<OwnLog>,
    index: usize,
    seed: u64,
    n: u64,
}

/// The running service.
#[derive(Debug)]
pub struct Trigs {
    addr: SocketAddr,
    db: Arc<Db>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    write_percent: u32,
    photos: i64,
    probes: Vec<(i64, i64, i64)>,
    /// For each hot trig, the trigs whose map draws it (`db::maps_showing`; coordinates never
    /// change).
    maps: HashMap<i64, Vec<i64>>,
    _dir: tempfile::TempDir,
}

impl Trigs {
    /// Seeds a database, serves trigs on `127.0.0.1:0` (2 Actix workers) with a cache on
    /// `redis_url`, and creates the probe logs.
    pub async fn start(redis_url: &str, write_percent: u32) -> Trigs {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("trigs.sqlite3");
        let cache = CacheBuilder::new()
            .namespace("trigs")
            .redis_url(redis_url)
            .build()
            .expect("cache");
        let db = tokio::task::spawn_blocking(move || Db::open(path, SEED, 4))
            .await
            .expect("open task")
            .expect("open the trigs database");
        let app = App {
            cache: cache.clone(),
            db: Arc::new(db),
        };
        let metrics = CacheMetrics::new(cache);
        let context = CacheContextLayer::builder()
            .metrics(metrics.clone())
            .build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = std::sync::mpsc::channel();
        let served = app.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || {
                    actix_web::App::new()
                        .wrap(context.clone())
                        .configure(|cfg| trigs::configure(cfg, &served, &metrics, "chaos-token"))
                })
                .workers(2)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                let _ = tx.send(server.handle());
                let _ = server.await;
            });
        });
        let handle = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the trigs server did not start");
        let mut t = Trigs {
            addr,
            db: app.db,
            handle,
            thread: Some(thread),
            write_percent,
            photos: 0,
            probes: Vec::new(),
            maps: HashMap::new(),
            _dir: dir,
        };
        t.maps = t
            .read(|c| {
                let mut maps = HashMap::new();
                for trig in 1..=HOT_TRIGS {
                    maps.insert(trig, db::maps_showing(c, trig)?);
                }
                Ok(maps)
            })
            .await;
        t.discover().await;
        t
    }

    async fn discover(&mut self) {
        let mut client = HttpClient::new(self.addr);
        let r = client
            .get("/v1/stats/site?cache_bypass=1")
            .await
            .expect("GET /v1/stats/site");
        assert_eq!(r.status, 200, "stats: {}", r.text());
        let stats: Value = serde_json::from_slice(&r.body).expect("stats JSON");
        self.photos = stats["photos"].as_i64().unwrap_or(0);
        assert!(self.photos > 10, "too few seeded photos: {stats}");
        for i in 0..PROBES {
            let (trig, user) = (1 + i as i64, 1 + i as i64);
            let body =
                json!({"user_id": user, "text": format!("chaos probe {i}"), "condition": "Good"})
                    .to_string();
            let r = client
                .request(
                    "POST",
                    &format!("/v1/trigs/{trig}/logs"),
                    &[("content-type", "application/json")],
                    Some(body.as_bytes()),
                )
                .await
                .expect("create a probe");
            assert_eq!(r.status, 201, "create a probe: {}", r.text());
            let log: Value = serde_json::from_slice(&r.body).expect("log JSON");
            self.probes
                .push((log["id"].as_i64().expect("log id"), trig, user));
        }
    }

    /// Stops the server and its thread.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle.stop(true)).await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// The database's current value: `f` on a pooled connection (the service's own pool).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, trigs::error::ApiError> + Send + 'static,
    ) -> T {
        self.db.run(f).await.expect("database read")
    }
}

impl Trigs {
    /// The maps that draw trig `trig` (all hot trigs are precomputed).
    fn maps_of(&self, trig: i64) -> impl Iterator<Item = Entity> + '_ {
        self.maps
            .get(&trig)
            .into_iter()
            .flatten()
            .map(|n| Entity::Map(*n))
    }
}

/// An image read compared, byte for byte, with the image rendered now from the database
/// (`None`: the row is gone, a 404 is expected).
async fn compare_png(client: &mut HttpClient, path: &str, truth: Option<Vec<u8>>) -> Checked {
    let mut out = Checked {
        path: path.to_owned(),
        stale: None,
        error: None,
    };
    let reply = match tokio::time::timeout(Duration::from_secs(10), client.get(path)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            out.error = Some(format!("GET {path}: {e}"));
            return out;
        }
        Err(_) => {
            out.error = Some(format!("GET {path}: no reply within 10 s"));
            return out;
        }
    };
    let cache = reply.cache_status().unwrap_or("-").to_owned();
    match (truth, reply.status) {
        (None, 404) => {}
        (Some(truth), 200) if reply.body[..] == truth[..] => {}
        (Some(truth), 200) => {
            out.stale = Some(format!(
                "GET {path} [{cache}]: {} bytes served differ from the {} bytes rendered now",
                reply.body.len(),
                truth.len()
            ));
        }
        (None, 200) => {
            out.stale = Some(format!("GET {path} [{cache}]: an image of a row now gone"));
        }
        (Some(_), 404) => {
            out.stale = Some(format!(
                "GET {path} [{cache}]: 404 for a row the database has"
            ));
        }
        (_, status) => out.error = Some(format!("GET {path}: {status}")),
    }
    out
}

fn json_of<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("JSON")
}

impl Service for Trigs {
    type Op = Op;
    type Task = Task;
    type Entity = Entity;

    fn name(&self) -> &'static str {
        "trigs (actix-web)"
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn new_task(&self, index: usize, seed: u64) -> Task {
        Task {
            rng: fastrand::Rng::with_seed(seed),
            own: Vec::new(),
            index,
            seed,
            n: 0,
        }
    }

    fn next_request(&self, t: &mut Task) -> Req<Op> {
        t.n += 1;
        let users = i64::from(SEED.users);
        let rng = &mut t.rng;
        if rng.u32(0..100) < self.write_percent {
            let roll = rng.u32(0..100);
            if !t.own.is_empty() && roll < 20 {
                let log = t.own[rng.usize(..t.own.len())].clone();
                return Req {
                    method: "POST",
                    path: format!("/v1/logs/{}/photos", log.id),
                    headers: Vec::new(),
                    body: Some(json!({
                        "caption": format!("chaos photo {}", rng.u32(..)),
                        "url": "https://example.com/chaos.jpg",
                    })),
                    expect: &[201],
                    write: true,
                    op: Op::AddPhoto {
                        log: log.id,
                        trig: log.trig,
                        user: log.user,
                    },
                };
            }
            if !t.own.is_empty() && roll < 28 {
                let log = t.own[rng.usize(..t.own.len())].clone();
                return Req {
                    method: "PATCH",
                    path: format!("/v1/logs/{}", log.id),
                    headers: Vec::new(),
                    body: Some(json!({
                        "text": format!("chaos edit {}", rng.u32(..)),
                        "condition": CONDITIONS[rng.usize(..CONDITIONS.len())],
                    })),
                    expect: &[200],
                    write: true,
                    op: Op::UpdateLog {
                        log: log.id,
                        trig: log.trig,
                        user: log.user,
                    },
                };
            }
            let with_photos: Vec<usize> = (0..t.own.len())
                .filter(|&i| !t.own[i].photos.is_empty())
                .collect();
            if !with_photos.is_empty() && roll < 36 {
                let i = with_photos[rng.usize(..with_photos.len())];
                let log = &mut t.own[i];
                let delete = rng.bool();
                let photo = if delete {
                    log.photos.swap_remove(rng.usize(..log.photos.len()))
                } else {
                    log.photos[rng.usize(..log.photos.len())]
                };
                let (log_id, trig, user) = (log.id, log.trig, log.user);
                return if delete {
                    Req {
                        method: "DELETE",
                        path: format!("/v1/photos/{photo}"),
                        headers: Vec::new(),
                        body: None,
                        expect: &[200],
                        write: true,
                        op: Op::DeletePhoto {
                            photo,
                            log: log_id,
                            trig,
                            user,
                        },
                    }
                } else {
                    Req {
                        method: "PATCH",
                        path: format!("/v1/photos/{photo}"),
                        headers: Vec::new(),
                        body: Some(json!({ "caption": format!("chaos caption {}", rng.u32(..)) })),
                        expect: &[200],
                        write: true,
                        op: Op::UpdatePhoto {
                            photo,
                            log: log_id,
                            trig,
                            user,
                        },
                    }
                };
            }
            if t.own.len() >= 2 && roll < 46 {
                let log = t.own.swap_remove(rng.usize(..t.own.len()));
                return Req {
                    method: "DELETE",
                    path: format!("/v1/logs/{}", log.id),
                    headers: Vec::new(),
                    body: None,
                    expect: &[200],
                    write: true,
                    op: Op::DeleteLog(log),
                };
            }
            if roll < 50 {
                return Req {
                    method: "POST",
                    path: "/v1/users".into(),
                    headers: Vec::new(),
                    body: Some(json!({ "name": format!("chaos-{}-{}-{}", t.seed, t.index, t.n) })),
                    expect: &[201],
                    write: true,
                    op: Op::CreateUser,
                };
            }
            let (trig, user) = (rng.i64(1..=HOT_TRIGS), rng.i64(1..=users));
            return Req {
                method: "POST",
                path: format!("/v1/trigs/{trig}/logs"),
                headers: Vec::new(),
                body: Some(json!({
                    "user_id": user,
                    "text": format!("chaos visit {}", rng.u32(..)),
                    "condition": CONDITIONS[rng.usize(..CONDITIONS.len())],
                })),
                expect: &[201],
                write: true,
                op: Op::CreateLog { trig, user },
            };
        }
        let trig = rng.i64(1..=HOT_TRIGS);
        let user = rng.i64(1..=users);
        let path = match rng.u32(0..100) {
            0..=11 => format!("/v1/trigs/{trig}"),
            12..=19 => format!("/v1/trigs/{trig}/logs"),
            20..=23 => format!("/v1/trigs/{trig}/photos"),
            24..=29 => format!("/v1/trigs/{trig}/map"),
            30..=41 => {
                if !t.own.is_empty() && rng.bool() {
                    format!("/v1/logs/{}", t.own[rng.usize(..t.own.len())].id)
                } else {
                    format!("/v1/logs/{}", rng.i64(1..=i64::from(SEED.logs)))
                }
            }
            42..=49 => format!("/v1/users/{user}"),
            50..=56 => format!("/v1/users/{user}/logs"),
            57..=59 => format!("/v1/users/{user}/photos"),
            60..=62 => format!("/v1/users/{user}/badge"),
            63..=64 => format!("/v1/users/{user}/map"),
            65..=72 => "/v1/logs".into(),
            73..=80 => "/v1/stats/site".into(),
            81..=84 => "/v1/trigs".into(),
            85..=88 => "/v1/users".into(),
            89..=92 => "/v1/photos".into(),
            _ => format!("/v1/photos/{}", rng.i64(1..=self.photos)),
        };
        Req::get(path, Vec::new(), Op::Read)
    }

    fn written(
        &self,
        task: Option<&mut Task>,
        req: &Req<Op>,
        reply: Option<&HttpResponse>,
    ) -> Vec<Entity> {
        let created = || -> Option<i64> {
            reply
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .and_then(|v| v["id"].as_i64())
        };
        match &req.op {
            Op::Read => Vec::new(),
            Op::CreateLog { trig, user } => {
                let mut out = vec![Entity::Trig(*trig), Entity::User(*user)];
                out.extend(self.maps_of(*trig));
                if let Some(id) = created() {
                    out.push(Entity::Log(id));
                    if let Some(t) = task {
                        t.own.push(OwnLog {
                            id,
                            trig: *trig,
                            user: *user,
                            photos: Vec::new(),
                        });
                    }
                }
                out
            }
            Op::UpdateLog { log, trig, user } => {
                let mut out = vec![Entity::Log(*log), Entity::Trig(*trig), Entity::User(*user)];
                out.extend(self.maps_of(*trig));
                out
            }
            Op::AddPhoto { log, trig, user } => {
                let mut out = vec![Entity::Log(*log), Entity::Trig(*trig), Entity::User(*user)];
                if let Some(id) = created() {
                    out.push(Entity::Photo(id));
                    if let Some(t) = task {
                        if let Some(l) = t.own.iter_mut().find(|l| l.id == *log) {
                            l.photos.push(id);
                        }
                    }
                }
                out
            }
            Op::UpdatePhoto {
                photo,
                log,
                trig,
                user,
            }
            | Op::DeletePhoto {
                photo,
                log,
                trig,
                user,
            } => vec![
                Entity::Photo(*photo),
                Entity::Log(*log),
                Entity::Trig(*trig),
                Entity::User(*user),
            ],
            Op::DeleteLog(log) => {
                let mut out = vec![
                    Entity::Log(log.id),
                    Entity::Trig(log.trig),
                    Entity::User(log.user),
                ];
                out.extend(log.photos.iter().map(|p| Entity::Photo(*p)));
                out.extend(self.maps_of(log.trig));
                out
            }
            Op::CreateUser => created().map(Entity::User).into_iter().collect(),
        }
    }

    fn probes(&self) -> Vec<Entity> {
        self.probes
            .iter()
            .map(|(id, _, _)| Entity::Log(*id))
            .collect()
    }

    fn probe_reads(&self, probe: &Entity) -> Vec<(String, Vec<(&'static str, String)>)> {
        let Entity::Log(id) = *probe else {
            return Vec::new();
        };
        let (_, trig, user) = *self.probes.iter().find(|p| p.0 == id).expect("a probe log");
        vec![
            (format!("/v1/logs/{id}"), Vec::new()),
            (format!("/v1/trigs/{trig}"), Vec::new()),
            (format!("/v1/users/{user}"), Vec::new()),
        ]
    }

    fn probe_write(&self, probe: &Entity, seq: u64) -> Req<Op> {
        let Entity::Log(id) = *probe else {
            panic!("trigs probes are logs");
        };
        let (_, trig, user) = *self.probes.iter().find(|p| p.0 == id).expect("a probe log");
        Req {
            method: "POST",
            path: format!("/v1/logs/{id}/photos"),
            headers: Vec::new(),
            body: Some(json!({
                "caption": format!("chaos probe photo {seq}"),
                "url": "https://example.com/probe.jpg",
            })),
            expect: &[201],
            write: true,
            op: Op::AddPhoto {
                log: id,
                trig,
                user,
            },
        }
    }

    fn hit_probe(&self) -> String {
        // Seeded photos are never edited: the load edits and deletes only its own logs' photos.
        "/v1/photos/1".into()
    }

    fn status_group(&self, path: &str) -> Option<&'static str> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["v1", "trigs", _] => Some("/v1/trigs/{id}"),
            ["v1", "logs", _] => Some("/v1/logs/{id}"),
            ["v1", "stats", "site"] => Some("/v1/stats/site"),
            _ => None,
        }
    }

    async fn check(&self, client: &mut HttpClient, entity: &Entity) -> Vec<Checked> {
        let none = Vec::new();
        match *entity {
            Entity::Log(id) => {
                let truth = self.read(move |c| Ok(db::log(c, id)?)).await.map(json_of);
                vec![compare(client, &format!("/v1/logs/{id}"), &none, truth).await]
            }
            Entity::Photo(id) => {
                let truth = self
                    .read(move |c| Ok(db::photo_by_id(c, id)?))
                    .await
                    .map(json_of);
                vec![compare(client, &format!("/v1/photos/{id}"), &none, truth).await]
            }
            Entity::Map(id) => {
                let truth = self
                    .read(move |c| {
                        db::trig_map(c, id)?
                            .map(|m| trigs::render::trig_map(&m))
                            .transpose()
                    })
                    .await;
                vec![compare_png(client, &format!("/v1/trigs/{id}/map"), truth).await]
            }
            Entity::Trig(id) => {
                let trig = self.read(move |c| Ok(db::trig(c, id)?)).await.map(json_of);
                let logs = self
                    .read(move |c| Ok(db::logs(c, LogFilter::Trig(id), 1, 20)?))
                    .await;
                let photos = self.read(move |c| Ok(db::trig_photos(c, id, 1, 20)?)).await;
                vec![
                    compare(client, &format!("/v1/trigs/{id}"), &none, trig).await,
                    compare(
                        client,
                        &format!("/v1/trigs/{id}/logs"),
                        &none,
                        Some(json_of(logs)),
                    )
                    .await,
                    compare(
                        client,
                        &format!("/v1/trigs/{id}/photos"),
                        &none,
                        Some(json_of(photos)),
                    )
                    .await,
                ]
            }
            Entity::User(id) => {
                let user = self.read(move |c| Ok(db::user(c, id)?)).await.map(json_of);
                let logs = self
                    .read(move |c| Ok(db::logs(c, LogFilter::User(id), 1, 20)?))
                    .await;
                let photos = self
                    .read(move |c| Ok(db::photos(c, PhotoFilter::User(id), 1, 20)?))
                    .await;
                let badge = self
                    .read(move |c| {
                        db::user(c, id)?
                            .map(|u| trigs::render::badge(&u))
                            .transpose()
                    })
                    .await;
                let map = self
                    .read(move |c| {
                        db::user_map(c, id)?
                            .map(|m| trigs::render::user_map(&m))
                            .transpose()
                    })
                    .await;
                vec![
                    compare(
                        client,
                        &format!("/v1/users/{id}/photos"),
                        &none,
                        Some(json_of(photos)),
                    )
                    .await,
                    compare_png(client, &format!("/v1/users/{id}/badge"), badge).await,
                    compare_png(client, &format!("/v1/users/{id}/map"), map).await,
                    compare(client, &format!("/v1/users/{id}"), &none, user).await,
                    compare(
                        client,
                        &format!("/v1/users/{id}/logs"),
                        &none,
                        Some(json_of(logs)),
                    )
                    .await,
                ]
            }
        }
    }

    async fn check_globals(&self, client: &mut HttpClient) -> Vec<Checked> {
        let none = Vec::new();
        let stats = self.read(|c| Ok(db::site_stats(c)?)).await;
        let logs = self.read(|c| Ok(db::logs(c, LogFilter::All, 1, 20)?)).await;
        let trigs = self.read(|c| Ok(db::trigs(c, 1, 20)?)).await;
        let users = self.read(|c| Ok(db::users(c, 1, 20)?)).await;
        let photos = self
            .read(|c| Ok(db::photos(c, PhotoFilter::All, 1, 20)?))
            .await;
        vec![
            compare(client, "/v1/photos", &none, Some(json_of(photos))).await,
            compare(client, "/v1/stats/site", &none, Some(json_of(stats))).await,
            compare(client, "/v1/logs", &none, Some(json_of(logs))).await,
            compare(client, "/v1/trigs", &none, Some(json_of(trigs))).await,
            compare(client, "/v1/users", &none, Some(json_of(users))).await,
        ]
    }
}
