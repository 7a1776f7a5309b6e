//! The API's error type: a status and a JSON `{ "error": ... }` body. Handlers return
//! `Result<_, ApiError>`; `#[cached]` never stores an `Err`, and `#[invalidates]` invalidates
//! nothing when the write failed.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// What went wrong.
#[derive(Debug)]
pub enum ApiError {
    /// 404: no such row.
    NotFound(&'static str),
    /// 400: the request is invalid.
    BadRequest(String),
    /// 409: the write conflicts with a row (a taken user name).
    Conflict(String),
    /// 500: the database failed.
    Internal(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::NotFound(what) => write!(f, "{what} not found"),
            ApiError::BadRequest(m) | ApiError::Conflict(m) => f.write_str(m),
            ApiError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(m) = self {
            tracing::error!(error = %m, "request failed");
        }
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({ "error": self.to_string() }))
    }
}
