//! The JSON shapes of the API. Every cached one is `Serialize + Deserialize`: the cache stores
//! it as JSON and reads it back on a hit.

use serde::{Deserialize, Serialize};

/// `GET /v1/stats/site`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteStats {
    /// Trig points.
    pub trigs: u64,
    /// Registered users.
    pub users: u64,
    /// Logs (visits).
    pub logs: u64,
    /// Photos.
    pub photos: u64,
    /// Trigs with at least one log.
    pub trigs_logged: u64,
}

/// `GET /v1/trigs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trig {
    /// Id.
    pub id: i64,
    /// Waypoint, `TP0042`.
    pub waypoint: String,
    /// Name.
    pub name: String,
    /// Pillar, bolt, ...
    pub kind: String,
    /// County.
    pub county: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Condition when surveyed.
    pub condition: String,
    /// Logs of this trig.
    pub log_count: u64,
    /// Photos of this trig's logs.
    pub photo_count: u64,
    /// Date of the latest log.
    pub last_logged: Option<String>,
}

/// A row of `GET /v1/trigs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrigSummary {
    /// Id.
    pub id: i64,
    /// Waypoint.
    pub waypoint: String,
    /// Name.
    pub name: String,
    /// Pillar, bolt, ...
    pub kind: String,
    /// County.
    pub county: String,
    /// Logs of this trig.
    pub log_count: u64,
}

/// A log (a visit to a trig), as lists show it; also the reply of `POST /v1/trigs/{id}/logs`
/// and `DELETE /v1/logs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSummary {
    /// Id.
    pub id: i64,
    /// The trig visited.
    pub trig_id: i64,
    /// The visitor.
    pub user_id: i64,
    /// Date of the visit.
    pub date: String,
    /// Condition found.
    pub condition: String,
    /// Notes.
    pub text: String,
}

/// `GET /v1/logs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDetail {
    /// The log.
    #[serde(flatten)]
    pub log: LogSummary,
    /// Name of the trig.
    pub trig_name: String,
    /// Name of the user.
    pub user_name: String,
    /// Photos attached.
    pub photos: Vec<Photo>,
}

/// `GET /v1/photos/{id}`, rows of `GET /v1/trigs/{id}/photos`, reply of
/// `POST /v1/logs/{id}/photos`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Photo {
    /// Id.
    pub id: i64,
    /// The log it is attached to.
    pub log_id: i64,
    /// The log's trig.
    pub trig_id: i64,
    /// The log's user.
    pub user_id: i64,
    /// Caption.
    pub caption: String,
    /// Where the image is.
    pub url: String,
}

/// `GET /v1/users/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Registration date.
    pub joined: String,
    /// Logs written.
    pub log_count: u64,
    /// Distinct trigs logged.
    pub trigs_logged: u64,
    /// Photos uploaded.
    pub photo_count: u64,
}

/// A row of `GET /v1/users`; the reply of `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Registration date.
    pub joined: String,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Page number, from 1.
    pub page: u32,
    /// Rows per page.
    pub per_page: u32,
    /// Rows in the whole list.
    pub total: u64,
    /// This page's rows.
    pub items: Vec<T>,
}

/// `?page=&per_page=` of the list endpoints (defaults 1 and 20). Part of the cache key: each
/// page is its own entry, and one tag invalidates them all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageQuery {
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Rows per page, at most 100.
    pub per_page: Option<u32>,
}

impl PageQuery {
    /// `(page, per_page)` with the defaults applied.
    pub fn get(&self) -> (u32, u32) {
        (self.page.unwrap_or(1), self.per_page.unwrap_or(20))
    }
}

/// Body of `POST /v1/trigs/{id}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewLog {
    /// The visitor.
    pub user_id: i64,
    /// Notes.
    pub text: String,
    /// Condition found: one of [`CONDITIONS`](crate::db::CONDITIONS).
    pub condition: String,
}

/// Body of `POST /v1/logs/{id}/photos`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewPhoto {
    /// Caption.
    pub caption: String,
    /// Where the image is.
    pub url: String,
}

/// Body of `POST /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    /// Name, unique.
    pub name: String,
}
