//! The SQLite side: schema, deterministic seed, a small connection pool and the queries.
//!
//! Every query is synchronous (rusqlite); handlers reach it through [`Db::run`], which borrows
//! a pooled connection on Actix's blocking thread pool (`web::block`), so a slow query never
//! stalls the async workers. The cache's job is to make these calls rare.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix_web::web;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::ApiError;
use crate::model::{
    LogDetail, LogPatch, LogSummary, MapPoint, NewLog, NewPhoto, NewUser, Page, Photo, PhotoPatch,
    SiteStats, Trig, TrigMap, TrigSummary, User, UserMap, UserSummary,
};
use crate::render::{distance_km, NEIGHBOUR_RADIUS_KM};

/// How many rows the first start seeds (env `TRIGS_SEED_TRIGS`, `TRIGS_SEED_USERS`,
/// `TRIGS_SEED_LOGS`); one log in four gets one or two photos.
#[derive(Debug, Clone, Copy)]
pub struct SeedSize {
    /// Trig points.
    pub trigs: u32,
    /// Users.
    pub users: u32,
    /// Logs (visits), spread over trigs and users.
    pub logs: u32,
}

impl Default for SeedSize {
    fn default() -> Self {
        SeedSize {
            trigs: 6_000,
            users: 400,
            logs: 40_000,
        }
    }
}

impl SeedSize {
    /// The defaults, overridden by `TRIGS_SEED_TRIGS`, `TRIGS_SEED_USERS`, `TRIGS_SEED_LOGS`.
    pub fn from_env() -> SeedSize {
        let get = |name: &str, default: u32| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let d = SeedSize::default();
        SeedSize {
            trigs: get("TRIGS_SEED_TRIGS", d.trigs),
            users: get("TRIGS_SEED_USERS", d.users),
            logs: get("TRIGS_SEED_LOGS", d.logs),
        }
    }
}

/// The database: its path and a pool of open connections (WAL mode, so readers never wait
/// for the writer).
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id     INTEGER PRIMARY KEY,
    name   TEXT NOT NULL UNIQUE,
    joined TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trigs (
    id        INTEGER PRIMARY KEY,
    waypoint  TEXT NOT NULL,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    county    TEXT NOT NULL,
    lat       REAL NOT NULL,
    lon       REAL NOT NULL,
    condition TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    id        INTEGER PRIMARY KEY,
    trig_id   INTEGER NOT NULL REFERENCES trigs(id),
    user_id   INTEGER NOT NULL REFERENCES users(id),
    date      TEXT NOT NULL,
    condition TEXT NOT NULL,
    text      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_trig ON logs(trig_id, id);
CREATE INDEX IF NOT EXISTS logs_user ON logs(user_id, id);
CREATE TABLE IF NOT EXISTS photos (
    id      INTEGER PRIMARY KEY,
    log_id  INTEGER NOT NULL REFERENCES logs(id) ON DELETE CASCADE,
    caption TEXT NOT NULL,
    url     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS photos_log ON photos(log_id);
CREATE INDEX IF NOT EXISTS trigs_lat ON trigs(lat);
";

/// Log conditions, as the trigpointing sites grade them.
pub const CONDITIONS: [&str; 6] = [
    "Good",
    "Slightly damaged",
    "Damaged",
    "Toppled",
    "Missing",
    "Not found",
];
const KINDS: [&str; 5] = ["Pillar", "Bolt", "FBM", "Intersected", "Buried block"];
const COUNTIES: [&str; 12] = [
    "Cumbria",
    "Devon",
    "Highland",
    "Gwynedd",
    "North Yorkshire",
    "Kent",
    "Cornwall",
    "Powys",
    "Argyll",
    "Norfolk",
    "Derbyshire",
    "Northumberland",
];
const PLACES: [&str; 16] = [
    "Fell", "Beacon", "Hill", "Moor", "Top", "Pike", "Knott", "Law", "Tor", "Down", "Crag", "Edge",
    "Rigg", "Head", "Cairn", "Howe",
];
const STEMS: [&str; 16] = [
    "High", "Black", "Long", "Broad", "Red", "White", "Great", "Little", "Cold", "Green", "Grey",
    "Raven", "Hawk", "Windy", "Stony", "Bleak",
];
const WORDS: [&str; 12] = [
    "Easy walk from the car park.",
    "Pillar in good order.",
    "Lovely views to the coast.",
    "Flush bracket still visible.",
    "Hidden in gorse, took a while.",
    "Windy on top!",
    "Spider plate present.",
    "Cows in the field, approach with care.",
    "Painted white recently.",
    "Found at last after three visits.",
    "Fog, no view at all.",
    "Trig surrounded by bracken.",
];

fn date(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}-{:02}-{:02}",
        rng.u32(2001..=2025),
        rng.u32(1..=12),
        rng.u32(1..=28)
    )
}

fn seed(conn: &mut Connection, size: SeedSize) -> rusqlite::Result<()> {
    let mut rng = fastrand::Rng::with_seed(0x7219_0017);
    let tx = conn.transaction()?;
    {
        let mut users = tx.prepare("INSERT INTO users (id, name, joined) VALUES (?1, ?2, ?3)")?;
        for id in 1..=size.users {
            let name = format!(
                "{}{}{id}",
                STEMS[rng.usize(..STEMS.len())],
                PLACES[rng.usize(..PLACES.len())]
            )
            .to_lowercase();
            users.execute(params![id, name, date(&mut rng)])?;
        }
        let mut trigs = tx.prepare(
            "INSERT INTO trigs (id, waypoint, name, kind, county, lat, lon, condition)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for id in 1..=size.trigs {
            let name = format!(
                "{} {}",
                STEMS[rng.usize(..STEMS.len())],
                PLACES[rng.usize(..PLACES.len())]
            );
            trigs.execute(params![
                id,
                format!("TP{id:04}"),
                name,
                KINDS[rng.usize(..KINDS.len())],
                COUNTIES[rng.usize(..COUNTIES.len())],
                50.0 + rng.f64() * 8.5,
                -6.0 + rng.f64() * 7.5,
                CONDITIONS[rng.usize(..3)],
            ])?;
        }
        let mut logs = tx.prepare(
            "INSERT INTO logs (id, trig_id, user_id, date, condition, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut photos =
            tx.prepare("INSERT INTO photos (log_id, caption, url) VALUES (?1, ?2, ?3)")?;
        for id in 1..=size.logs {
            // Popular trigs: a skewed pick, so some trigs have hundreds of logs.
            let trig = 1 + (rng.f64().powi(2) * f64::from(size.trigs)) as u32;
            let trig = trig.min(size.trigs);
            let user = rng.u32(1..=size.users);
            logs.execute(params![
                id,
                trig,
                user,
                date(&mut rng),
                CONDITIONS[rng.usize(..CONDITIONS.len())],
                WORDS[rng.usize(..WORDS.len())],
            ])?;
            if rng.u8(..4) == 0 {
                for n in 0..rng.u8(1..=2) {
                    photos.execute(params![
                        id,
                        if n == 0 { "The pillar" } else { "The view" },
                        format!("https://photos.example.invalid/{id}/{n}.jpg"),
                    ])?;
                }
            }
        }
    }
    tx.commit()
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl Db {
    /// Opens (creating and seeding on first start) the database at `path`, with `pool_size`
    /// connections.
    ///
    /// # Errors
    /// Any SQLite error while opening, creating or seeding.
    pub fn open(
        path: impl Into<PathBuf>,
        size: SeedSize,
        pool_size: usize,
    ) -> rusqlite::Result<Db> {
        let path = path.into();
        let mut first = open(&path)?;
        first.execute_batch(SCHEMA)?;
        let trigs: u32 = first.query_row("SELECT COUNT(*) FROM trigs", [], |r| r.get(0))?;
        if trigs == 0 {
            seed(&mut first, size)?;
        }
        let mut pool = vec![first];
        for _ in 1..pool_size.max(1) {
            pool.push(open(&path)?);
        }
        Ok(Db {
            path,
            pool: Mutex::new(pool),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] when `f` found no row, [`ApiError::Internal`] for other failures.
    pub async fn run<R, F>(self: &Arc<Self>, f: F) -> Result<R, ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, ApiError> + Send + 'static,
    {
        let db = Arc::clone(self);
        web::block(move || {
            let conn = db.pool.lock().ok().and_then(|mut p| p.pop());
            let mut conn = match conn {
                Some(c) => c,
                None => open(&db.path)?, // pool exhausted: an extra connection for this call
            };
            let out = f(&mut conn);
            if let Ok(mut pool) = db.pool.lock() {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    }
}

/// Page number, size and row offset of a list (`?page=2&per_page=50`), 1-based, `per_page` at
/// most 100. The handlers reject values out of range with a 400 ([`PageQuery::get`]); here any
/// `u32` is safe: the offset is computed in `i64` (at most `(2^32 - 2) * 100`), never overflowing
/// (`page=4294967295` used to overflow `u32` and panic).
///
/// [`PageQuery::get`]: crate::model::PageQuery::get
fn bounds(page: u32, per_page: u32) -> (u32, u32, i64) {
    let page = page.max(1);
    let per_page = per_page.clamp(1, 100);
    (page, per_page, i64::from(page - 1) * i64::from(per_page))
}

fn count(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<u64> {
    conn.query_row(sql, p, |r| r.get(0))
}

fn log_summary(r: &Row<'_>) -> rusqlite::Result<LogSummary> {
    Ok(LogSummary {
        id: r.get(0)?,
        trig_id: r.get(1)?,
        user_id: r.get(2)?,
        date: r.get(3)?,
        condition: r.get(4)?,
        text: r.get(5)?,
    })
}

fn photo(r: &Row<'_>) -> rusqlite::Result<Photo> {
    Ok(Photo {
        id: r.get(0)?,
        log_id: r.get(1)?,
        trig_id: r.get(2)?,
        user_id: r.get(3)?,
        caption: r.get(4)?,
        url: r.get(5)?,
    })
}

const PHOTO_SQL: &str = "SELECT p.id, p.log_id, l.trig_id, l.user_id, p.caption, p.url
                         FROM photos p JOIN logs l ON l.id = p.log_id";
const LOG_SQL: &str = "SELECT id, trig_id, user_id, date, condition, text FROM logs";

/// Counts of everything.
pub fn site_stats(conn: &Connection) -> rusqlite::Result<SiteStats> {
    Ok(SiteStats {
        trigs: count(conn, "SELECT COUNT(*) FROM trigs", [])?,
        users: count(conn, "SELECT COUNT(*) FROM users", [])?,
        logs: count(conn, "SELECT COUNT(*) FROM logs", [])?,
        photos: count(conn, "SELECT COUNT(*) FROM photos", [])?,
        trigs_logged: count(conn, "SELECT COUNT(DISTINCT trig_id) FROM logs", [])?,
    })
}

/// One trig with its log and photo counts.
pub fn trig(conn: &Connection, id: i64) -> rusqlite::Result<Option<Trig>> {
    conn.query_row(
        "SELECT t.id, t.waypoint, t.name, t.kind, t.county, t.lat, t.lon, t.condition,
                (SELECT COUNT(*) FROM logs WHERE trig_id = t.id),
                (SELECT COUNT(*) FROM photos p JOIN logs l ON l.id = p.log_id WHERE l.trig_id = t.id),
                (SELECT MAX(date) FROM logs WHERE trig_id = t.id)
         FROM trigs t WHERE t.id = ?1",
        [id],
        |r| {
            Ok(Trig {
                id: r.get(0)?,
                waypoint: r.get(1)?,
                name: r.get(2)?,
                kind: r.get(3)?,
                county: r.get(4)?,
                lat: r.get(5)?,
                lon: r.get(6)?,
                condition: r.get(7)?,
                log_count: r.get(8)?,
                photo_count: r.get(9)?,
                last_logged: r.get(10)?,
            })
        },
    )
    .optional()
}

/// A page of trigs, by id, with their log counts.
pub fn trigs(conn: &Connection, page: u32, per_page: u32) -> rusqlite::Result<Page<TrigSummary>> {
    let (page, per_page, offset) = bounds(page, per_page);
    let mut st = conn.prepare_cached(
        "SELECT t.id, t.waypoint, t.name, t.kind, t.county,
                (SELECT COUNT(*) FROM logs WHERE trig_id = t.id)
         FROM trigs t ORDER BY t.id LIMIT ?1 OFFSET ?2",
    )?;
    let items = st
        .query_map(params![per_page, offset], |r| {
            Ok(TrigSummary {
                id: r.get(0)?,
                waypoint: r.get(1)?,
                name: r.get(2)?,
                kind: r.get(3)?,
                county: r.get(4)?,
                log_count: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Page {
        page,
        per_page,
        total: count(conn, "SELECT COUNT(*) FROM trigs", [])?,
        items,
    })
}

/// A page of logs (newest first), optionally of one trig or one user.
pub fn logs(
    conn: &Connection,
    filter: LogFilter,
    page: u32,
    per_page: u32,
) -> rusqlite::Result<Page<LogSummary>> {
    let (page, per_page, offset) = bounds(page, per_page);
    // One statement shape per filter; `?3` is bound in every one (the `All` clause names it
    // without filtering) so the parameters are the same.
    let (clause, id) = match filter {
        LogFilter::All => ("?3 = ?3", 0),
        LogFilter::Trig(id) => ("trig_id = ?3", id),
        LogFilter::User(id) => ("user_id = ?3", id),
    };
    let mut st = conn.prepare_cached(&format!(
        "{LOG_SQL} WHERE {clause} ORDER BY id DESC LIMIT ?1 OFFSET ?2"
    ))?;
    let items = st
        .query_map(params![per_page, offset, id], log_summary)?
        .collect::<rusqlite::Result<_>>()?;
    let total = count(
        conn,
        &format!(
            "SELECT COUNT(*) FROM logs WHERE {}",
            clause.replace("?3", "?1")
        ),
        [id],
    )?;
    Ok(Page {
        page,
        per_page,
        total,
        items,
    })
}

/// Which logs a list shows.
#[derive(Debug, Clone, Copy)]
pub enum LogFilter {
    /// Every log.
    All,
    /// The logs of one trig.
    Trig(i64),
    /// The logs of one user.
    User(i64),
}

/// One log with its trig's and user's names and its photos.
pub fn log(conn: &Connection, id: i64) -> rusqlite::Result<Option<LogDetail>> {
    let Some(summary) = conn
        .query_row(&format!("{LOG_SQL} WHERE id = ?1"), [id], log_summary)
        .optional()?
    else {
        return Ok(None);
    };
    let trig_name = conn.query_row(
        "SELECT name FROM trigs WHERE id = ?1",
        [summary.trig_id],
        |r| r.get(0),
    )?;
    let user_name = conn.query_row(
        "SELECT name FROM users WHERE id = ?1",
        [summary.user_id],
        |r| r.get(0),
    )?;
    let mut st = conn.prepare_cached(&format!("{PHOTO_SQL} WHERE p.log_id = ?1 ORDER BY p.id"))?;
    let photos = st
        .query_map([id], photo)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(LogDetail {
        log: summary,
        trig_name,
        user_name,
        photos,
    }))
}

/// The photos of a trig's logs, newest first.
pub fn trig_photos(
    conn: &Connection,
    trig_id: i64,
    page: u32,
    per_page: u32,
) -> rusqlite::Result<Page<Photo>> {
    photos(conn, PhotoFilter::Trig(trig_id), page, per_page)
}

/// Which photos a list shows.
#[derive(Debug, Clone, Copy)]
pub enum PhotoFilter {
    /// Every photo.
    All,
    /// The photos of one trig's logs.
    Trig(i64),
    /// The photos of one user's logs.
    User(i64),
}

/// A page of photos (newest first), optionally of one trig or one user.
pub fn photos(
    conn: &Connection,
    filter: PhotoFilter,
    page: u32,
    per_page: u32,
) -> rusqlite::Result<Page<Photo>> {
    let (page, per_page, offset) = bounds(page, per_page);
    // As in `logs`: `?1` is bound in every shape.
    let (clause, id) = match filter {
        PhotoFilter::All => ("?1 = ?1", 0),
        PhotoFilter::Trig(id) => ("l.trig_id = ?1", id),
        PhotoFilter::User(id) => ("l.user_id = ?1", id),
    };
    let mut st = conn.prepare_cached(&format!(
        "{PHOTO_SQL} WHERE {clause} ORDER BY p.id DESC LIMIT ?2 OFFSET ?3"
    ))?;
    let items = st
        .query_map(params![id, per_page, offset], photo)?
        .collect::<rusqlite::Result<_>>()?;
    let total = count(
        conn,
        &format!("SELECT COUNT(*) FROM photos p JOIN logs l ON l.id = p.log_id WHERE {clause}"),
        [id],
    )?;
    Ok(Page {
        page,
        per_page,
        total,
        items,
    })
}

/// One photo.
pub fn photo_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Photo>> {
    conn.query_row(&format!("{PHOTO_SQL} WHERE p.id = ?1"), [id], photo)
        .optional()
}

/// One user with their counts.
pub fn user(conn: &Connection, id: i64) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        "SELECT u.id, u.name, u.joined,
                (SELECT COUNT(*) FROM logs WHERE user_id = u.id),
                (SELECT COUNT(DISTINCT trig_id) FROM logs WHERE user_id = u.id),
                (SELECT COUNT(*) FROM photos p JOIN logs l ON l.id = p.log_id WHERE l.user_id = u.id)
         FROM users u WHERE u.id = ?1",
        [id],
        |r| {
            Ok(User {
                id: r.get(0)?,
                name: r.get(1)?,
                joined: r.get(2)?,
                log_count: r.get(3)?,
                trigs_logged: r.get(4)?,
                photo_count: r.get(5)?,
            })
        },
    )
    .optional()
}

/// A page of users, by id.
pub fn users(conn: &Connection, page: u32, per_page: u32) -> rusqlite::Result<Page<UserSummary>> {
    let (page, per_page, offset) = bounds(page, per_page);
    let mut st =
        conn.prepare_cached("SELECT id, name, joined FROM users ORDER BY id LIMIT ?1 OFFSET ?2")?;
    let items = st
        .query_map(params![per_page, offset], |r| {
            Ok(UserSummary {
                id: r.get(0)?,
                name: r.get(1)?,
                joined: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Page {
        page,
        per_page,
        total: count(conn, "SELECT COUNT(*) FROM users", [])?,
        items,
    })
}

/// Latitude and longitude of the trigs within `NEIGHBOUR_RADIUS_KM` of `(lat, lon)` are at
/// most this many degrees away: the bounding box the SQL pre-selects before the exact distance.
fn search_box(lat: f64) -> (f64, f64) {
    let dlat = NEIGHBOUR_RADIUS_KM / 110.0 + 0.01;
    let cos = (lat.abs() + dlat).min(89.0).to_radians().cos();
    (dlat, NEIGHBOUR_RADIUS_KM / (111.0 * cos) + 0.01)
}

/// The trigs within `NEIGHBOUR_RADIUS_KM` of trig `id` (`id` itself included), by id, with
/// their coordinates; `None` when the trig does not exist.
fn within_radius(conn: &Connection, id: i64) -> rusqlite::Result<Option<Vec<(i64, f64, f64)>>> {
    let Some((lat, lon)) = conn
        .query_row("SELECT lat, lon FROM trigs WHERE id = ?1", [id], |r| {
            Ok((r.get::<_, f64>(0)?, r.get::<_, f64>(1)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let (dlat, dlon) = search_box(lat);
    let mut st = conn.prepare_cached(
        "SELECT id, lat, lon FROM trigs
         WHERE lat BETWEEN ?1 AND ?2 AND lon BETWEEN ?3 AND ?4 ORDER BY id",
    )?;
    let near = st
        .query_map(
            params![lat - dlat, lat + dlat, lon - dlon, lon + dlon],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<rusqlite::Result<Vec<(i64, f64, f64)>>>()?
        .into_iter()
        .filter(|&(_, la, lo)| distance_km((lat, lon), (la, lo)) <= NEIGHBOUR_RADIUS_KM)
        .collect();
    Ok(Some(near))
}

/// The trigs whose map (`GET /v1/trigs/{id}/map`) shows trig `id`: those within
/// `NEIGHBOUR_RADIUS_KM` of it, itself included. The relation is symmetric ([`distance_km`]
/// is, to the bit), so these are exactly the maps a log write on `id` changes. Empty when the
/// trig does not exist.
pub fn maps_showing(conn: &Connection, id: i64) -> rusqlite::Result<Vec<i64>> {
    Ok(within_radius(conn, id)?
        .unwrap_or_default()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect())
}

/// Log count and latest condition (by date, then id) of trig `id`, over all logs or one
/// user's.
fn trig_status(
    conn: &Connection,
    id: i64,
    user: Option<i64>,
) -> rusqlite::Result<(u64, Option<String>)> {
    let (clause, who) = match user {
        Some(u) => ("user_id = ?2", u),
        None => ("?2 = ?2", 0),
    };
    let logs = count(
        conn,
        &format!("SELECT COUNT(*) FROM logs WHERE trig_id = ?1 AND {clause}"),
        params![id, who],
    )?;
    let condition = conn
        .prepare_cached(&format!(
            "SELECT condition FROM logs WHERE trig_id = ?1 AND {clause}
             ORDER BY date DESC, id DESC LIMIT 1"
        ))?
        .query_row(params![id, who], |r| r.get(0))
        .optional()?;
    Ok((logs, condition))
}

/// What the map of trig `id` draws; `None` when the trig does not exist.
pub fn trig_map(conn: &Connection, id: i64) -> rusqlite::Result<Option<TrigMap>> {
    let Some(near) = within_radius(conn, id)? else {
        return Ok(None);
    };
    let (waypoint, name) = conn.query_row(
        "SELECT waypoint, name FROM trigs WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut nearby = Vec::with_capacity(near.len());
    for (n, lat, lon) in near {
        let (logs, condition) = trig_status(conn, n, None)?;
        nearby.push(MapPoint {
            id: n,
            lat,
            lon,
            logs,
            condition,
        });
    }
    let centre = nearby
        .iter()
        .find(|p| p.id == id)
        .cloned()
        .expect("a trig is within the radius of itself");
    Ok(Some(TrigMap {
        centre,
        waypoint,
        name,
        nearby,
    }))
}

/// What the map of user `id` draws; `None` when the user does not exist.
pub fn user_map(conn: &Connection, id: i64) -> rusqlite::Result<Option<UserMap>> {
    let Some(name) = conn
        .query_row("SELECT name FROM users WHERE id = ?1", [id], |r| r.get(0))
        .optional()?
    else {
        return Ok(None);
    };
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT t.id, t.lat, t.lon FROM logs l JOIN trigs t ON t.id = l.trig_id
         WHERE l.user_id = ?1 ORDER BY t.id",
    )?;
    let logged = st
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<(i64, f64, f64)>>>()?;
    let mut trigs = Vec::with_capacity(logged.len());
    for (t, lat, lon) in logged {
        let (logs, condition) = trig_status(conn, t, Some(id))?;
        trigs.push(MapPoint {
            id: t,
            lat,
            lon,
            logs,
            condition,
        });
    }
    Ok(Some(UserMap {
        user_id: id,
        name,
        trigs,
    }))
}

/// Starts a write transaction that takes SQLite's write lock at `BEGIN` (`BEGIN IMMEDIATE`).
///
/// Every write here reads first (does the trig exist? which photos does the log have?) and
/// then writes. In a default (deferred) transaction the read takes a snapshot and the first
/// write must upgrade it to the write lock; when another connection committed meanwhile the
/// upgrade fails at once with `SQLITE_BUSY` ("database is locked"), without waiting for the
/// busy timeout, and the request answered 500 under concurrent writes. An immediate
/// transaction waits (up to the busy timeout) for the write lock before reading, so the read
/// and the write see the same rows and concurrent writers queue instead of failing.
fn write_tx(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// Inserts a log; `None` when the trig or the user does not exist.
pub fn create_log(
    conn: &mut Connection,
    trig_id: i64,
    new: &NewLog,
    today: &str,
) -> rusqlite::Result<Option<LogSummary>> {
    let tx = write_tx(conn)?;
    let exists = |sql: &str, id: i64| count(&tx, sql, [id]).map(|n| n > 0);
    if !exists("SELECT COUNT(*) FROM trigs WHERE id = ?1", trig_id)?
        || !exists("SELECT COUNT(*) FROM users WHERE id = ?1", new.user_id)?
    {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO logs (trig_id, user_id, date, condition, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![trig_id, new.user_id, today, new.condition, new.text],
    )?;
    let id = tx.last_insert_rowid();
    let log = tx
        .query_row(&format!("{LOG_SQL} WHERE id = ?1"), [id], log_summary)
        .optional()?;
    tx.commit()?;
    Ok(log)
}

/// Deletes a log and its photos; returns the deleted log and its photos' ids.
pub fn delete_log(
    conn: &mut Connection,
    id: i64,
) -> rusqlite::Result<Option<(LogSummary, Vec<i64>)>> {
    let tx = write_tx(conn)?;
    let Some(log) = tx
        .query_row(&format!("{LOG_SQL} WHERE id = ?1"), [id], log_summary)
        .optional()?
    else {
        return Ok(None);
    };
    let photos = {
        let mut st = tx.prepare("SELECT id FROM photos WHERE log_id = ?1")?;
        let ids = st
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        ids
    };
    tx.execute("DELETE FROM photos WHERE log_id = ?1", [id])?;
    tx.execute("DELETE FROM logs WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok(Some((log, photos)))
}

/// Adds a photo to a log; `None` when the log does not exist.
pub fn add_photo(
    conn: &mut Connection,
    log_id: i64,
    new: &NewPhoto,
) -> rusqlite::Result<Option<Photo>> {
    let tx = write_tx(conn)?;
    if count(&tx, "SELECT COUNT(*) FROM logs WHERE id = ?1", [log_id])? == 0 {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO photos (log_id, caption, url) VALUES (?1, ?2, ?3)",
        params![log_id, new.caption, new.url],
    )?;
    let photo = photo_by_id(&tx, tx.last_insert_rowid())?;
    tx.commit()?;
    Ok(photo)
}

/// Changes a log's text and/or condition; `None` when the log does not exist.
pub fn update_log(
    conn: &mut Connection,
    id: i64,
    patch: &LogPatch,
) -> rusqlite::Result<Option<LogSummary>> {
    let tx = write_tx(conn)?;
    let changed = tx.execute(
        "UPDATE logs SET text = COALESCE(?2, text), condition = COALESCE(?3, condition)
         WHERE id = ?1",
        params![id, patch.text, patch.condition],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    let log = tx
        .query_row(&format!("{LOG_SQL} WHERE id = ?1"), [id], log_summary)
        .optional()?;
    tx.commit()?;
    Ok(log)
}

/// Changes a photo's caption and/or address; `None` when the photo does not exist.
pub fn update_photo(
    conn: &mut Connection,
    id: i64,
    patch: &PhotoPatch,
) -> rusqlite::Result<Option<Photo>> {
    let tx = write_tx(conn)?;
    let changed = tx.execute(
        "UPDATE photos SET caption = COALESCE(?2, caption), url = COALESCE(?3, url)
         WHERE id = ?1",
        params![id, patch.caption, patch.url],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    let photo = photo_by_id(&tx, id)?;
    tx.commit()?;
    Ok(photo)
}

/// Deletes a photo; returns it as it was, `None` when it does not exist.
pub fn delete_photo(conn: &mut Connection, id: i64) -> rusqlite::Result<Option<Photo>> {
    let tx = write_tx(conn)?;
    let Some(photo) = photo_by_id(&tx, id)? else {
        return Ok(None);
    };
    tx.execute("DELETE FROM photos WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok(Some(photo))
}

/// Registers a user; `None` when the name is taken.
pub fn create_user(
    conn: &mut Connection,
    new: &NewUser,
    today: &str,
) -> rusqlite::Result<Option<UserSummary>> {
    let tx = write_tx(conn)?;
    let taken = count(
        &tx,
        "SELECT COUNT(*) FROM users WHERE name = ?1",
        [&new.name],
    )?;
    if taken > 0 {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO users (name, joined) VALUES (?1, ?2)",
        params![new.name, today],
    )?;
    let user = UserSummary {
        id: tx.last_insert_rowid(),
        name: new.name.clone(),
        joined: today.to_owned(),
    };
    tx.commit()?;
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::bounds;

    /// Regression: `page = u32::MAX` overflowed `(page - 1) * per_page` in `u32` and panicked.
    #[test]
    fn bounds_never_overflow() {
        assert_eq!(
            bounds(u32::MAX, u32::MAX),
            (u32::MAX, 100, i64::from(u32::MAX - 1) * 100)
        );
        assert_eq!(bounds(0, 0), (1, 1, 0));
        assert_eq!(bounds(3, 20), (3, 20, 40));
    }
}
