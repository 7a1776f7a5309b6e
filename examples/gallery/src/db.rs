//! The embedded SQLite database: schema, deterministic seeding, a small connection pool, and the
//! real (uncached) queries.
//!
//! Every query here is plain SQL over indexed tables; nothing is slowed down on purpose. What the
//! cache saves is what these queries honestly cost: the community gallery ranks every engaged
//! public item by a time-decayed popularity score (a full scan and a sort), lists filtered by tag
//! join `content_tags`, and every list attaches each item's tags.
//!
//! # Schema
//! | table | rows (default seed) | notes |
//! | --- | --- | --- |
//! | `users` | 500 | |
//! | `generation_types` | 4 | `image`, `video`, `audio`, `text` |
//! | `content_items` | 50,000 | `source` is `manual` (the seed's `content_items`) or `auto` (`content_items_auto`); Zipf-like `views`/`likes` |
//! | `tags` | ~260 | the tag vocabulary |
//! | `content_tags` | ~150,000 | 1–5 tags per item, Zipf-distributed over the vocabulary |
//!
//! # Connections
//! SQLite in WAL mode: [`Db::read`] runs a closure on one of a few reader connections, on
//! `tokio::task::spawn_blocking`; [`Db::write`] runs it inside a transaction on the single writer
//! connection (SQLite allows one writer at a time anyway).

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_core::{invalidates, PendingInvalidation};
use rusqlite::{
    params, params_from_iter, Connection, OpenFlags, OptionalExtension, Transaction,
    TransactionBehavior,
};
use tokio::sync::Semaphore;

use crate::model::{
    ContentFilter, ContentItem, GenerationType, NewContent, Page, Sort, Source, TagCount,
    WriteOutcome, GENERATION_TYPES,
};

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The reference "now" of the seeded data (2025-06-15T00:00:00Z): seeded items were created in
/// the year before it, so the same seed always gives the same rows.
pub const SEED_NOW: i64 = 1_749_945_600;

/// How much data to seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedConfig {
    /// Number of users (default 500).
    pub users: u32,
    /// Number of content items, manual and auto (default 50,000).
    pub items: u32,
    /// PRNG seed (default 42).
    pub seed: u64,
}

impl Default for SeedConfig {
    fn default() -> Self {
        SeedConfig {
            users: 500,
            items: 50_000,
            seed: 42,
        }
    }
}

impl SeedConfig {
    /// The marker stored in the `meta` table; a database seeded with another configuration is
    /// re-created.
    fn marker(&self) -> String {
        format!(
            "gallery-v1:users={}:items={}:seed={}",
            self.users, self.items, self.seed
        )
    }
}

/// What [`Db::open`] did.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// The database file.
    pub path: PathBuf,
    /// Whether it was (re)created and seeded now.
    pub seeded: bool,
    /// Time spent seeding (zero when the file was reused).
    pub seed_time: Duration,
    /// Rows in `content_items`.
    pub items: u64,
    /// Rows in `users`.
    pub users: u64,
    /// Size of the database file in bytes.
    pub file_bytes: u64,
}

/// A database error (SQLite or the pool).
#[derive(Debug)]
pub struct DbError(pub String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database error: {}", self.0)
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(e.to_string())
    }
}

/// Why a write was refused.
#[derive(Debug)]
pub enum WriteError {
    /// No such item.
    NotFound,
    /// The caller does not own the item.
    Forbidden,
    /// Bad input.
    Invalid(String),
    /// The database failed.
    Db(DbError),
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Db(e.into())
    }
}

impl From<DbError> for WriteError {
    fn from(e: DbError) -> Self {
        WriteError::Db(e)
    }
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    permits: Semaphore,
    writer: Mutex<Connection>,
}

/// A handle on the database: a few reader connections and one writer. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -32_000)?; // 32 MB page cache per connection
    Ok(conn)
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS generation_types (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS content_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    title TEXT NOT NULL,
    generation_type TEXT NOT NULL REFERENCES generation_types(name),
    source TEXT NOT NULL CHECK (source IN ('manual', 'auto')),
    is_public INTEGER NOT NULL,
    views INTEGER NOT NULL DEFAULT 0,
    likes INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS content_tags (
    content_id INTEGER NOT NULL REFERENCES content_items(id) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags(id),
    PRIMARY KEY (content_id, tag_id)
) WITHOUT ROWID;
"#;

/// Created after the bulk insert (faster than maintaining them row by row).
const INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS content_public_recent ON content_items (is_public, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS content_public_popular ON content_items (is_public, likes DESC, views DESC);
CREATE INDEX IF NOT EXISTS content_owner ON content_items (owner_id, source, created_at DESC);
CREATE INDEX IF NOT EXISTS content_type_recent ON content_items (generation_type, is_public, created_at DESC);
CREATE INDEX IF NOT EXISTS content_tags_by_tag ON content_tags (tag_id, content_id);
ANALYZE;
"#;

impl Db {
    /// Opens (and on first use creates and seeds) the database at `path`, with `readers` reader
    /// connections. A file seeded with another [`SeedConfig`] is deleted and re-created.
    ///
    /// # Errors
    /// SQLite or file-system errors.
    pub fn open(
        path: &Path,
        seed: SeedConfig,
        readers: usize,
    ) -> Result<(Db, OpenReport), DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DbError(format!("{}: {e}", dir.display())))?;
        }
        let mut seeded = false;
        let mut seed_time = Duration::ZERO;
        {
            let mut conn = open_conn(path)?;
            conn.execute_batch(SCHEMA)?;
            conn.execute_batch(crate::outbox::SCHEMA)?;
            let marker: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'seed'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            if marker.as_deref() != Some(seed.marker().as_str()) {
                if marker.is_some() {
                    drop(conn);
                    for suffix in ["", "-wal", "-shm"] {
                        let mut p = path.as_os_str().to_owned();
                        p.push(suffix);
                        let _ = std::fs::remove_file(PathBuf::from(p));
                    }
                    conn = open_conn(path)?;
                    conn.execute_batch(SCHEMA)?;
                    conn.execute_batch(crate::outbox::SCHEMA)?;
                    conn.execute_batch(crate::outbox::SCHEMA)?;
                }
                let start = Instant::now();
                seed_database(&mut conn, seed)?;
                seed_time = start.elapsed();
                seeded = true;
            }
            conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        }
        let writer = open_conn(path)?;
        let mut pool = Vec::with_capacity(readers.max(1));
        for _ in 0..readers.max(1) {
            pool.push(open_conn(path)?);
        }
        let (items, users): (u64, u64) = writer.query_row(
            "SELECT (SELECT COUNT(*) FROM content_items), (SELECT COUNT(*) FROM users)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let db = Db {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                permits: Semaphore::new(pool.len()),
                readers: Mutex::new(pool),
                writer: Mutex::new(writer),
            }),
        };
        Ok((
            db,
            OpenReport {
                path: path.to_owned(),
                seeded,
                seed_time,
                items,
                users,
                file_bytes,
            },
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a reader connection, on the blocking thread pool.
    ///
    /// # Errors
    /// What `f` returns, or a pool failure.
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|e| DbError(e.to_string()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .ok_or_else(|| DbError("no free connection".into()))?;
            let result = f(&conn);
            inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
            result
        })
        .await
        .map_err(|e| DbError(e.to_string()))?
    }

    /// Runs `f` in a transaction on the writer connection (committed when `f` returns `Ok`).
    ///
    /// The transaction is `IMMEDIATE`: it takes SQLite's write lock at `BEGIN`. Every write
    /// reads before it writes (the item's current tags, its owner); in a deferred transaction
    /// that read would take a snapshot, and the first write would have to upgrade it, which
    /// fails at once with `SQLITE_BUSY` ("database is locked", no busy-timeout wait) when
    /// another connection committed meanwhile. Writes here are serialized by the one writer
    /// connection, so that cannot happen inside this process today, but any other writer on
    /// the file (a second instance, a maintenance script) would make it happen.
    ///
    /// # Errors
    /// What `f` returns, or a SQLite failure.
    pub async fn write<T, F>(&self, f: F) -> Result<T, WriteError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, WriteError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| WriteError::Db(DbError(e.to_string())))?
    }
}

impl Db {
    /// [`Db::write`] for a write that invalidates cache entries: `f` runs in the transaction and
    /// adds the tags to invalidate to `pending` (`#[invalidates(.., defer = pending)]` on a plain
    /// `fn` does that for the tags it names). When `record` is true and there are tags, they are
    /// recorded in the outbox ([`crate::outbox::record`]) **in the same transaction**, so the
    /// invalidation is durable exactly when the data changed. Returns `f`'s value, the collected
    /// invalidation (to commit after this returns) and the record's id.
    ///
    /// # Errors
    /// What `f` returns, or a SQLite failure (nothing committed, nothing recorded).
    pub async fn write_recorded<T, F>(
        &self,
        mut pending: PendingInvalidation,
        record: bool,
        f: F,
    ) -> Result<(T, PendingInvalidation, Option<u64>), WriteError>
    where
        F: FnOnce(&Transaction<'_>, &mut PendingInvalidation) -> Result<T, WriteError>
            + Send
            + 'static,
        T: Send + 'static,
    {
        self.write(move |tx| {
            let out = f(tx, &mut pending)?;
            let id = if record && !pending.tags().is_empty() {
                Some(crate::outbox::record(tx, pending.tags())?)
            } else {
                None
            };
            Ok((out, pending, id))
        })
        .await
    }
}

// ------------------------------------------------------------------------------------ seeding

const SUBJECTS: &[&str] = &[
    "cat",
    "dog",
    "fox",
    "owl",
    "whale",
    "dragon",
    "robot",
    "castle",
    "forest",
    "ocean",
    "mountain",
    "city",
    "desert",
    "river",
    "garden",
    "spaceship",
    "planet",
    "galaxy",
    "portrait",
    "landscape",
    "flower",
    "tree",
    "bird",
    "horse",
    "lion",
    "tiger",
    "wolf",
    "bear",
    "butterfly",
    "car",
    "train",
    "bridge",
    "lighthouse",
    "village",
    "temple",
    "island",
    "volcano",
    "glacier",
    "storm",
    "sunset",
    "sunrise",
    "moon",
    "stars",
    "rain",
    "snow",
    "knight",
    "wizard",
    "samurai",
    "astronaut",
    "pirate",
    "mermaid",
    "unicorn",
    "phoenix",
    "skull",
    "mask",
    "clock",
    "book",
    "tea",
    "coffee",
    "piano",
    "guitar",
    "violin",
    "drum",
    "dance",
    "poem",
    "story",
    "song",
];
const STYLES: &[&str] = &[
    "watercolor",
    "oil",
    "pixel-art",
    "anime",
    "photoreal",
    "noir",
    "vaporwave",
    "cyberpunk",
    "steampunk",
    "minimal",
    "surreal",
    "baroque",
    "isometric",
    "lowpoly",
    "sketch",
    "neon",
    "pastel",
    "gothic",
    "retro",
    "abstract",
    "ambient",
    "lofi",
    "orchestral",
    "haiku",
    "sonnet",
    "3d",
    "clay",
    "ukiyo-e",
    "impressionist",
    "vintage",
];
const MOODS: &[&str] = &[
    "calm",
    "epic",
    "dark",
    "bright",
    "cozy",
    "eerie",
    "joyful",
    "melancholic",
    "dreamy",
    "wild",
    "serene",
    "chaotic",
];
const ADJECTIVES: &[&str] = &[
    "Quiet",
    "Golden",
    "Lost",
    "Electric",
    "Hidden",
    "Ancient",
    "Frozen",
    "Burning",
    "Silent",
    "Velvet",
    "Crimson",
    "Emerald",
    "Midnight",
    "Paper",
    "Glass",
    "Iron",
    "Silver",
    "Wandering",
];
const FIRST_NAMES: &[&str] = &[
    "ada", "alan", "grace", "linus", "barbara", "ken", "dennis", "margaret", "edsger", "donald",
    "frances", "john", "radia", "tim", "sophie", "guido", "bjarne", "yukihiro", "rich", "anders",
];

/// The tag vocabulary: subjects, styles and moods.
fn vocabulary() -> Vec<String> {
    SUBJECTS
        .iter()
        .chain(STYLES)
        .chain(MOODS)
        .map(|s| (*s).to_owned())
        .collect::<Vec<_>>()
        .into_iter()
        .chain(
            SUBJECTS
                .iter()
                .take(40)
                .zip(STYLES.iter().cycle().skip(3))
                .map(|(a, b)| format!("{b}-{a}")),
        )
        .chain(
            SUBJECTS
                .iter()
                .skip(20)
                .zip(MOODS.iter().cycle())
                .map(|(a, b)| format!("{b}-{a}")),
        )
        .collect()
}

/// Zipf(s) over `1..=n` by inverse CDF: `sample` returns a 0-based rank.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A Zipf distribution over `n` ranks with exponent `s`.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut acc = 0.0;
        for k in 1..=n.max(1) {
            acc += 1.0 / (k as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// A 0-based rank (0 is the most popular).
    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Whether there is a single rank only (never empty).
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn seed_database(conn: &mut Connection, cfg: SeedConfig) -> Result<(), DbError> {
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    let tx = conn.transaction()?;
    {
        let mut st =
            tx.prepare("INSERT INTO generation_types (id, name, description) VALUES (?1, ?2, ?3)")?;
        for (i, (name, description)) in GENERATION_TYPES.iter().enumerate() {
            st.execute(params![i as i64 + 1, name, description])?;
        }
        let mut st = tx.prepare("INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3)")?;
        for id in 1..=i64::from(cfg.users) {
            let name = format!("{}_{id}", FIRST_NAMES[rng.usize(..FIRST_NAMES.len())]);
            st.execute(params![
                id,
                name,
                SEED_NOW - rng.i64(400 * 86_400..800 * 86_400)
            ])?;
        }
        let vocab = vocabulary();
        let mut st = tx.prepare("INSERT INTO tags (id, name) VALUES (?1, ?2)")?;
        // Tag ids are assigned in a shuffled order, so popularity is not id order.
        let mut order: Vec<usize> = (0..vocab.len()).collect();
        rng.shuffle(&mut order);
        let mut id_of = vec![0i64; vocab.len()];
        for (id, &i) in order.iter().enumerate() {
            st.execute(params![id as i64 + 1, vocab[i]])?;
            id_of[i] = id as i64 + 1;
        }
        let tag_zipf = Zipf::new(vocab.len(), 1.0);
        let user_zipf = Zipf::new(cfg.users as usize, 0.8);
        let mut user_order: Vec<i64> = (1..=i64::from(cfg.users)).collect();
        rng.shuffle(&mut user_order);
        // Popularity rank per item: a shuffled permutation; 70% of items have engagement.
        let n = cfg.items as usize;
        let mut rank: Vec<usize> = (1..=n).collect();
        rng.shuffle(&mut rank);
        let mut item = tx.prepare(
            "INSERT INTO content_items (id, owner_id, title, generation_type, source, is_public, views, likes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut tag =
            tx.prepare("INSERT OR IGNORE INTO content_tags (content_id, tag_id) VALUES (?1, ?2)")?;
        let engaged = (n as f64 * 0.7) as usize;
        for (i, &r) in rank.iter().enumerate() {
            let id = i as i64 + 1;
            let owner = user_order[user_zipf.sample(&mut rng)];
            let gt = GENERATION_TYPES[match rng.u32(0..100) {
                0..=54 => 0,
                55..=74 => 1,
                75..=89 => 2,
                _ => 3,
            }]
            .0;
            let source = if rng.u32(0..100) < 60 {
                "manual"
            } else {
                "auto"
            };
            let public = rng.u32(0..100) < 90;
            let views: i64 = if r <= engaged {
                (200_000.0 / (r as f64).powf(1.07)).floor() as i64 + rng.i64(0..5)
            } else {
                0
            };
            let likes = (views as f64 * (0.02 + rng.f64() * 0.1)).floor() as i64;
            let created = SEED_NOW - rng.i64(0..365 * 86_400);
            let title = format!(
                "{} {}",
                ADJECTIVES[rng.usize(..ADJECTIVES.len())],
                vocab[tag_zipf.sample(&mut rng)]
            );
            item.execute(params![
                id, owner, title, gt, source, public, views, likes, created
            ])?;
            let k = 1 + rng.usize(..5);
            for _ in 0..k {
                tag.execute(params![id, id_of[tag_zipf.sample(&mut rng)]])?;
            }
        }
    }
    tx.execute_batch(INDEXES)?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('seed', ?1)",
        params![cfg.marker()],
    )?;
    tx.commit()?;
    Ok(())
}

// ------------------------------------------------------------------------------------ reads

/// The ranking of the community gallery: likes and views, decayed by age in days. `now` is
/// truncated to the hour so that the order only moves hourly (two computations a second apart
/// agree).
pub const HOTNESS: &str = "((c.likes * 2 + c.views * 0.1) / ((?1 - c.created_at) / 86400.0 + 2.0))";

/// `now` for [`HOTNESS`]: the current time truncated to the hour.
pub fn hot_now() -> i64 {
    let now = now_secs();
    now - now.rem_euclid(3600)
}

const ITEM_COLUMNS: &str = "c.id, c.owner_id, u.name, c.title, c.generation_type, c.source, \
     c.is_public, c.views, c.likes, c.created_at";

fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContentItem> {
    Ok(ContentItem {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        owner_name: r.get(2)?,
        title: r.get(3)?,
        generation_type: r.get(4)?,
        source: r.get(5)?,
        is_public: r.get(6)?,
        views: r.get(7)?,
        likes: r.get(8)?,
        created_at: r.get(9)?,
        tags: Vec::new(),
    })
}

/// Fills `tags` of each item (one query for all of them).
fn attach_tags(conn: &Connection, items: &mut [ContentItem]) -> rusqlite::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let placeholders = vec!["?"; items.len()].join(",");
    let sql = format!(
        "SELECT ct.content_id, t.name FROM content_tags ct JOIN tags t ON t.id = ct.tag_id \
         WHERE ct.content_id IN ({placeholders}) ORDER BY t.name"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    let mut rows = st.query(params_from_iter(ids.iter()))?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let name: String = row.get(1)?;
        if let Some(item) = items.iter_mut().find(|i| i.id == id) {
            item.tags.push(name);
        }
    }
    Ok(())
}

/// `GET /generation-types`.
pub fn generation_types(conn: &Connection) -> Result<Vec<GenerationType>, DbError> {
    let mut st =
        conn.prepare_cached("SELECT id, name, description FROM generation_types ORDER BY id")?;
    let rows = st.query_map([], |r| {
        Ok(GenerationType {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `GET /tags`: the vocabulary with usage counts over public items, most used first.
pub fn tag_counts(conn: &Connection, limit: u32) -> Result<Vec<TagCount>, DbError> {
    let mut st = conn.prepare_cached(
        "SELECT t.name, COUNT(*) AS n FROM content_tags ct \
         JOIN tags t ON t.id = ct.tag_id \
         JOIN content_items c ON c.id = ct.content_id \
         WHERE c.is_public = 1 \
         GROUP BY t.id ORDER BY n DESC, t.name LIMIT ?1",
    )?;
    let rows = st.query_map([limit], |r| {
        Ok(TagCount {
            name: r.get(0)?,
            count: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `GET /gallery`: engaged public items ranked by [`HOTNESS`], with owner names and tags.
/// Items without views or likes are never ranked (see the crate docs: this is why a create
/// does not invalidate the gallery).
pub fn gallery_page(
    conn: &Connection,
    generation_type: Option<&str>,
    page: u32,
    limit: u32,
) -> Result<Page<ContentItem>, DbError> {
    let type_filter = if generation_type.is_some() {
        "AND c.generation_type = ?4"
    } else {
        "AND ?4 IS NULL"
    };
    let sql = format!(
        "SELECT {ITEM_COLUMNS}, {HOTNESS} AS hot FROM content_items c \
         JOIN users u ON u.id = c.owner_id \
         WHERE c.is_public = 1 AND (c.likes > 0 OR c.views > 0) {type_filter} \
         ORDER BY hot DESC, c.id DESC LIMIT ?2 OFFSET ?3"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let offset = i64::from(page.saturating_sub(1)) * i64::from(limit);
    let mut items: Vec<ContentItem> = st
        .query_map(
            params![hot_now(), limit, offset, generation_type],
            item_from_row,
        )?
        .collect::<Result<_, _>>()?;
    attach_tags(conn, &mut items)?;
    let count_sql = format!(
        "SELECT COUNT(*) FROM content_items c WHERE c.is_public = 1 \
         AND (c.likes > 0 OR c.views > 0) {}",
        if generation_type.is_some() {
            "AND c.generation_type = ?1"
        } else {
            "AND ?1 IS NULL"
        }
    );
    let total: u64 = conn
        .prepare_cached(&count_sql)?
        .query_row(params![generation_type], |r| r.get(0))?;
    Ok(Page {
        items,
        page,
        limit,
        total,
    })
}

/// `GET /content`: the unified, filtered, paginated list (the seed's
/// `get_unified_content_paginated`), public items only.
pub fn content_page(conn: &Connection, f: &ContentFilter) -> Result<Page<ContentItem>, DbError> {
    let mut joins = String::new();
    let mut wh = vec!["c.is_public = 1".to_owned()];
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(tag) = &f.tag {
        args.push(tag.clone().into());
        joins.push_str(&format!(
            " JOIN content_tags ft ON ft.content_id = c.id \
              AND ft.tag_id = (SELECT id FROM tags WHERE name = ?{})",
            args.len()
        ));
    }
    if let Some(t) = &f.generation_type {
        args.push(t.clone().into());
        wh.push(format!("c.generation_type = ?{}", args.len()));
    }
    if let Some(u) = f.user {
        args.push(u.into());
        wh.push(format!("c.owner_id = ?{}", args.len()));
    }
    if let Some(s) = f.source {
        args.push(s.as_str().to_owned().into());
        wh.push(format!("c.source = ?{}", args.len()));
    }
    let order = match f.sort {
        Sort::Recent => "c.created_at DESC, c.id DESC",
        Sort::Popular => "c.likes DESC, c.views DESC, c.id DESC",
    };
    let where_sql = wh.join(" AND ");
    let count_sql = format!("SELECT COUNT(*) FROM content_items c{joins} WHERE {where_sql}");
    let total: u64 = conn
        .prepare_cached(&count_sql)?
        .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
    let n = args.len();
    args.push(i64::from(f.limit).into());
    args.push((i64::from(f.page.saturating_sub(1)) * i64::from(f.limit)).into());
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM content_items c{joins} JOIN users u ON u.id = c.owner_id \
         WHERE {where_sql} ORDER BY {order} LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut items: Vec<ContentItem> = st
        .query_map(params_from_iter(args.iter()), item_from_row)?
        .collect::<Result<_, _>>()?;
    attach_tags(conn, &mut items)?;
    Ok(Page {
        items,
        page: f.page,
        limit: f.limit,
        total,
    })
}

/// `GET /content/{id}`: one item, public or not (the caller decides who may see it).
pub fn content_item(conn: &Connection, id: i64) -> Result<Option<ContentItem>, DbError> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM content_items c JOIN users u ON u.id = c.owner_id WHERE c.id = ?1"
    );
    let item = conn
        .prepare_cached(&sql)?
        .query_row([id], item_from_row)
        .optional()?;
    let Some(item) = item else { return Ok(None) };
    let mut items = [item];
    attach_tags(conn, &mut items)?;
    let [item] = items;
    Ok(Some(item))
}

/// A user's own items of one source (public and private), newest first.
pub fn user_items(
    conn: &Connection,
    owner: i64,
    source: Source,
    page: u32,
    limit: u32,
) -> Result<Page<ContentItem>, DbError> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM content_items c JOIN users u ON u.id = c.owner_id \
         WHERE c.owner_id = ?1 AND c.source = ?2 ORDER BY c.created_at DESC, c.id DESC \
         LIMIT ?3 OFFSET ?4"
    );
    let offset = i64::from(page.saturating_sub(1)) * i64::from(limit);
    let mut items: Vec<ContentItem> = conn
        .prepare_cached(&sql)?
        .query_map(
            params![owner, source.as_str(), limit, offset],
            item_from_row,
        )?
        .collect::<Result<_, _>>()?;
    attach_tags(conn, &mut items)?;
    let total: u64 = conn
        .prepare_cached("SELECT COUNT(*) FROM content_items WHERE owner_id = ?1 AND source = ?2")?
        .query_row(params![owner, source.as_str()], |r| r.get(0))?;
    Ok(Page {
        items,
        page,
        limit,
        total,
    })
}

/// A user's own newest items of one generation type (a fragment of the merged view).
pub fn user_items_of_type(
    conn: &Connection,
    owner: i64,
    generation_type: &str,
    limit: u32,
) -> Result<Vec<ContentItem>, DbError> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM content_items c JOIN users u ON u.id = c.owner_id \
         WHERE c.owner_id = ?1 AND c.generation_type = ?2 \
         ORDER BY c.created_at DESC, c.id DESC LIMIT ?3"
    );
    let mut items: Vec<ContentItem> = conn
        .prepare_cached(&sql)?
        .query_map(params![owner, generation_type, limit], item_from_row)?
        .collect::<Result<_, _>>()?;
    attach_tags(conn, &mut items)?;
    Ok(items)
}

/// Whether user `id` exists.
pub fn user_exists(conn: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

// ------------------------------------------------------------------------------------ writes

/// Normalizes tag names: trimmed, lowercase, no empty or duplicate names, at most 8, each at
/// most 40 characters of `a-z 0-9 -`.
///
/// # Errors
/// A message naming the bad tag.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim().to_lowercase();
        if t.is_empty() {
            continue;
        }
        if t.len() > 40 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "tag {t:?}: use at most 40 characters of a-z, 0-9 and '-'"
            ));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > 8 {
        return Err("at most 8 tags per item".into());
    }
    out.sort();
    Ok(out)
}

fn tag_id(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached("INSERT OR IGNORE INTO tags (name) VALUES (?1)")?
        .execute([name])?;
    tx.prepare_cached("SELECT id FROM tags WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

fn current_tags(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<Vec<String>> {
    let mut st = tx.prepare_cached(
        "SELECT t.name FROM content_tags ct JOIN tags t ON t.id = ct.tag_id \
         WHERE ct.content_id = ?1 ORDER BY t.name",
    )?;
    let rows = st.query_map([id], |r| r.get(0))?;
    rows.collect()
}

fn load_in_tx(tx: &Transaction<'_>, id: i64) -> Result<ContentItem, WriteError> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM content_items c JOIN users u ON u.id = c.owner_id WHERE c.id = ?1"
    );
    let mut item = tx
        .prepare_cached(&sql)?
        .query_row([id], item_from_row)
        .optional()?
        .ok_or(WriteError::NotFound)?;
    item.tags = current_tags(tx, id)?;
    Ok(item)
}

/// Inserts an item owned by `owner`. On success, adds the tags of the route to `pending`
/// (the caller adds [`WriteOutcome::data_tags`]):
///
/// * `content:all`: unfiltered lists gain an item;
/// * `tags:list`: tag counts change;
/// * `content:{result.id}`: defensive (ids are never reused: `AUTOINCREMENT`);
/// * `user:{result.owner_id}:items`: the owner's lists, own fragments and `?user=` lists;
/// * `type:{result.generation_type}`: `?type=` lists.
///
/// Not `gallery`: a new item has no views or likes, and the gallery ranks only engaged items,
/// so it cannot change.
#[invalidates(
    "content:all",
    "tags:list",
    "content:{result.id}",
    "user:{result.owner_id}:items",
    "type:{result.generation_type}",
    defer = pending
)]
pub fn create_content(
    tx: &Transaction<'_>,
    owner: i64,
    input: &NewContent,
    pending: &mut PendingInvalidation,
) -> Result<WriteOutcome, WriteError> {
    let title = input.title.trim();
    if title.is_empty() || title.len() > 200 {
        return Err(WriteError::Invalid("title: 1 to 200 characters".into()));
    }
    if !GENERATION_TYPES
        .iter()
        .any(|(n, _)| *n == input.generation_type)
    {
        return Err(WriteError::Invalid(format!(
            "generation_type {:?}: one of image, video, audio, text",
            input.generation_type
        )));
    }
    let tags = normalize_tags(&input.tags).map_err(WriteError::Invalid)?;
    let exists: bool = tx
        .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
        .query_row([owner], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        return Err(WriteError::Invalid(format!("user {owner} does not exist")));
    }
    tx.prepare_cached(
        "INSERT INTO content_items (owner_id, title, generation_type, source, is_public, views, likes, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, ?6)",
    )?
    .execute(params![
        owner,
        title,
        input.generation_type,
        if input.auto { "auto" } else { "manual" },
        input.is_public,
        now_secs()
    ])?;
    let id = tx.last_insert_rowid();
    for t in &tags {
        let tid = tag_id(tx, t)?;
        tx.prepare_cached("INSERT INTO content_tags (content_id, tag_id) VALUES (?1, ?2)")?
            .execute(params![id, tid])?;
    }
    let item = load_in_tx(tx, id)?;
    Ok(WriteOutcome::new(item, tags, None))
}

/// Replaces the tags of item `id`, owned by `caller`. Route-level tags: `content:{id}` (the
/// item), `content:all`, `tags:list`, `user:{result.owner_id}:items`,
/// `type:{result.generation_type}`; the data tags ([`WriteOutcome::data_tags`]) name the old
/// **and** new tags (lists of a removed tag lose the item, lists of an added tag gain it), and
/// `gallery` + `gallery:type:{g}` when the item is engaged (the gallery shows tags).
#[invalidates(
    "content:{id}",
    "content:all",
    "tags:list",
    "user:{result.owner_id}:items",
    "type:{result.generation_type}",
    defer = pending
)]
pub fn update_tags(
    tx: &Transaction<'_>,
    caller: i64,
    id: i64,
    tags: &[String],
    pending: &mut PendingInvalidation,
) -> Result<WriteOutcome, WriteError> {
    let tags = normalize_tags(tags).map_err(WriteError::Invalid)?;
    let before = load_in_tx(tx, id)?;
    if before.owner_id != caller {
        return Err(WriteError::Forbidden);
    }
    tx.prepare_cached("DELETE FROM content_tags WHERE content_id = ?1")?
        .execute([id])?;
    for t in &tags {
        let tid = tag_id(tx, t)?;
        tx.prepare_cached("INSERT INTO content_tags (content_id, tag_id) VALUES (?1, ?2)")?
            .execute(params![id, tid])?;
    }
    let after = load_in_tx(tx, id)?;
    let touched: HashSet<String> = before.tags.iter().chain(&tags).cloned().collect();
    let mut touched: Vec<String> = touched.into_iter().collect();
    touched.sort();
    Ok(WriteOutcome::new(after, touched, Some(&before)))
}

/// Deletes item `id`, owned by `caller`: the same tags as [`update_tags`], with its tags as the
/// touched ones.
#[invalidates(
    "content:{id}",
    "content:all",
    "tags:list",
    "user:{result.owner_id}:items",
    "type:{result.generation_type}",
    defer = pending
)]
pub fn delete_content(
    tx: &Transaction<'_>,
    caller: i64,
    id: i64,
    pending: &mut PendingInvalidation,
) -> Result<WriteOutcome, WriteError> {
    let before = load_in_tx(tx, id)?;
    if before.owner_id != caller {
        return Err(WriteError::Forbidden);
    }
    tx.prepare_cached("DELETE FROM content_tags WHERE content_id = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM content_items WHERE id = ?1")?
        .execute([id])?;
    let tags = before.tags.clone();
    let mut outcome = WriteOutcome::new(before.clone(), tags, Some(&before));
    outcome.item = None;
    Ok(outcome)
}
