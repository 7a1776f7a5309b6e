//! The invalidation outbox on SQLite: [`cache_core::durable::Outbox`] over the `cache_outbox`
//! table of the service's own database.
//!
//! Every write records the tags it invalidates in `cache_outbox`, **in its own transaction**
//! ([`record`], called by [`Db::write_recorded`]), so the record exists exactly when the data
//! changed. After the commit, the write delivers the invalidation itself
//! ([`PendingInvalidation::commit_recorded`](cache_core::PendingInvalidation::commit_recorded)),
//! which deletes the record. If Redis did not take it (paused, unreachable from this instance,
//! or this instance crashed before delivering), the record stays, and the cache of **every**
//! instance reading this database delivers it: at start, as soon as its Redis answers again,
//! and every `outbox_poll` (1 s). See `cache_core::durable` for the guarantee.
//!
//! The table:
//!
//! ```sql
//! CREATE TABLE cache_outbox (
//!     id INTEGER PRIMARY KEY AUTOINCREMENT,  -- delivery order
//!     tags TEXT NOT NULL,                    -- a JSON array of tags
//!     created_at INTEGER NOT NULL            -- seconds since the epoch
//! );
//! ```

use async_trait::async_trait;
use cache_core::durable::{Outbox, OutboxEntry};
use cache_core::error::BoxError;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{params, params_from_iter, Connection, Transaction};

use crate::db::{now_secs, Db, DbError};

/// The table, created with the schema (`CREATE TABLE IF NOT EXISTS`, so an existing database
/// gains it at the next start).
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS cache_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tags TEXT NOT NULL,
    created_at INTEGER NOT NULL
);";

/// Records an invalidation of `tags` in the write's transaction `tx`; the record's id.
///
/// # Errors
/// SQLite errors (they fail the write: its invalidation could not be made durable).
pub fn record(tx: &Transaction<'_>, tags: &[String]) -> rusqlite::Result<u64> {
    let json = serde_json::to_string(tags).expect("a list of strings encodes");
    tx.prepare_cached("INSERT INTO cache_outbox (tags, created_at) VALUES (?1, ?2)")?
        .execute(params![json, now_secs()])?;
    Ok(tx.last_insert_rowid() as u64)
}

/// Undelivered records, oldest first (for tests and the admin's curiosity).
///
/// # Errors
/// SQLite errors.
pub async fn pending(db: &Db) -> Result<Vec<OutboxEntry>, DbError> {
    db.read(|c| Ok(undelivered(c, i64::MAX)?)).await
}

fn undelivered(c: &Connection, limit: i64) -> rusqlite::Result<Vec<OutboxEntry>> {
    let mut stmt = c.prepare_cached("SELECT id, tags FROM cache_outbox ORDER BY id LIMIT ?1")?;
    let rows = stmt.query_map([limit], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, tags) = row?;
        // A record this code did not write is delivered as no tags rather than blocking the
        // ones after it.
        let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
        out.push(OutboxEntry::new(id as u64, tags));
    }
    Ok(out)
}

/// [`Outbox`] over the `cache_outbox` table of a [`Db`].
///
/// Reads go through a connection of its own, so a poll never queues behind the service's
/// queries (when Redis is down, every read is a database query); deletes go through the
/// database's writer.
#[derive(Clone)]
pub struct SqliteOutbox {
    db: Db,
    reader: Arc<Mutex<Connection>>,
}

impl fmt::Debug for SqliteOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteOutbox")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl SqliteOutbox {
    /// The outbox of `db` (opens one more connection to its file).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn new(db: Db) -> Result<SqliteOutbox, DbError> {
        let reader = crate::db::open_conn(db.path())?;
        Ok(SqliteOutbox {
            db,
            reader: Arc::new(Mutex::new(reader)),
        })
    }
}

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn undelivered(&self, limit: usize) -> Result<Vec<OutboxEntry>, BoxError> {
        let reader = Arc::clone(&self.reader);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = tokio::task::spawn_blocking(move || {
            let c = reader.lock().unwrap_or_else(PoisonError::into_inner);
            undelivered(&c, limit)
        })
        .await??;
        Ok(rows)
    }

    async fn delivered(&self, ids: &[u64]) -> Result<(), BoxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        self.db
            .write(move |tx| {
                let marks = vec!["?"; ids.len()].join(",");
                tx.execute(
                    &format!("DELETE FROM cache_outbox WHERE id IN ({marks})"),
                    params_from_iter(ids.iter()),
                )?;
                Ok(())
            })
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }
}
