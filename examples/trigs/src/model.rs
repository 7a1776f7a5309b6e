//! The JSON shapes of the API. Every cached one is `Serialize + Deserialize`: the cache stores
//! it as JSON and reads it back on a hit.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

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

/// `?page=&per_page=` of the list endpoints: `page` from 1 to [`PageQuery::MAX_PAGE`]
/// (default 1), `per_page` from 1 to [`PageQuery::MAX_PER_PAGE`] (default 20); anything else
/// (empty, negative, not a number, too large) is a 400 naming the parameter and its range. Part
/// of the cache key: each page is its own entry, and one tag invalidates them all.
///
/// The values are kept as sent and parsed by [`PageQuery::get`], so that the 400 can name the
/// parameter (a typed field would fail in the extractor, with a message that does not).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageQuery {
    /// Page number, from 1.
    pub page: Option<String>,
    /// Rows per page, at most 100.
    pub per_page: Option<String>,
}

impl PageQuery {
    /// The largest page number: 100,000 pages of 100 rows is more than any list holds, and the
    /// row offset stays far from overflowing.
    pub const MAX_PAGE: u32 = 100_000;
    /// The largest page size.
    pub const MAX_PER_PAGE: u32 = 100;

    /// `(page, per_page)` with the defaults applied.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] when a value is not a whole number in its range, e.g.
    /// `page="4294967295": expected a whole number from 1 to 100000`.
    pub fn get(&self) -> Result<(u32, u32), ApiError> {
        Ok((
            number("page", self.page.as_deref(), 1, Self::MAX_PAGE)?,
            number("per_page", self.per_page.as_deref(), 20, Self::MAX_PER_PAGE)?,
        ))
    }
}

/// The value of the query parameter `name` (`default` when absent), a whole number from 1 to
/// `max`.
fn number(name: &str, value: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}={value:?}: expected a whole number from 1 to {max}"
            ))
        })
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

/// Body of `PATCH /v1/logs/{id}`: the fields to change (at least one). A log's trig and user
/// never change; unknown fields are a 400.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPatch {
    /// New notes (not empty).
    pub text: Option<String>,
    /// New condition: one of [`CONDITIONS`](crate::db::CONDITIONS).
    pub condition: Option<String>,
}

/// Body of `PATCH /v1/photos/{id}`: the fields to change (at least one). A photo's log never
/// changes; unknown fields are a 400.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhotoPatch {
    /// New caption.
    pub caption: Option<String>,
    /// New image address (not empty).
    pub url: Option<String>,
}

/// A trig on a map: where it is and what its logs say.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPoint {
    /// The trig.
    pub id: i64,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Logs counted for the map (all logs on a trig's map, the user's own on a user's map).
    pub logs: u64,
    /// Condition reported by the latest of those logs (by date, then id); `None`: never logged.
    pub condition: Option<String>,
}

/// What `GET /v1/trigs/{id}/map` draws: the trig and every trig within
/// [`NEIGHBOUR_RADIUS_KM`](crate::render::NEIGHBOUR_RADIUS_KM) of it (the trig itself included),
/// each marked logged (coloured by its latest condition) or never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct TrigMap {
    /// The trig at the centre.
    pub centre: MapPoint,
    /// Its waypoint.
    pub waypoint: String,
    /// Its name.
    pub name: String,
    /// The trigs within the radius, by id, the centre among them.
    pub nearby: Vec<MapPoint>,
}

/// What `GET /v1/users/{id}/map` draws: every trig the user logged, coloured by the condition
/// of the user's latest log of it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMap {
    /// The user.
    pub user_id: i64,
    /// Their name.
    pub name: String,
    /// The trigs they logged, by id.
    pub trigs: Vec<MapPoint>,
}

/// Body of `POST /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    /// Name, unique.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(page: Option<&str>, per_page: Option<&str>) -> PageQuery {
        PageQuery {
            page: page.map(str::to_owned),
            per_page: per_page.map(str::to_owned),
        }
    }

    #[test]
    fn pages_in_range_are_read_and_defaulted() {
        assert_eq!(q(None, None).get().unwrap(), (1, 20));
        assert_eq!(
            q(Some("100000"), Some("100")).get().unwrap(),
            (100_000, 100)
        );
        assert_eq!(q(Some("1"), Some("1")).get().unwrap(), (1, 1));
    }

    #[test]
    fn pages_out_of_range_are_400s_naming_the_parameter() {
        for (page, per_page, message) in [
            (
                Some("4294967295"),
                None,
                "page=\"4294967295\": expected a whole number from 1 to 100000",
            ),
            (
                Some("0"),
                None,
                "page=\"0\": expected a whole number from 1 to 100000",
            ),
            (
                Some("-1"),
                None,
                "page=\"-1\": expected a whole number from 1 to 100000",
            ),
            (
                Some(""),
                None,
                "page=\"\": expected a whole number from 1 to 100000",
            ),
            (
                Some("99999999999999999999"),
                None,
                "page=\"99999999999999999999\": expected a whole number from 1 to 100000",
            ),
            (
                None,
                Some("0"),
                "per_page=\"0\": expected a whole number from 1 to 100",
            ),
            (
                None,
                Some("101"),
                "per_page=\"101\": expected a whole number from 1 to 100",
            ),
            (
                None,
                Some("1e2"),
                "per_page=\"1e2\": expected a whole number from 1 to 100",
            ),
        ] {
            match q(page, per_page).get() {
                Err(ApiError::BadRequest(m)) => assert_eq!(m, message),
                other => panic!("{page:?} {per_page:?}: {other:?}"),
            }
        }
    }
}
