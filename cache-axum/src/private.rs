//! Runtime support for `#[cached]` on Axum handlers that return a finished response
//! (`Response`, `impl IntoResponse`, a response tuple such as `(StatusCode, Json<T>)`). Not a stable API: only the macro's generated code calls
//! it. The response is cached through the same engine and stored format as the response layers
//! (`cache_core::__private::run_http`), and a hit is served from the stored bytes without
//! copying them.

use std::future::Future;

use axum::response::IntoResponse;
use cache_core::http::{Disposition, HttpRules, Origin, StoredResponse};

use crate::glue::{read_capped, response};

pub use axum::response::Response;

/// Largest response body `#[cached]` stores; larger ones are returned unstored.
const MAX_BODY: usize = 1024 * 1024;

/// Classifies a handler's response with the default HTTP rules (200 stored; other statuses
/// shared with concurrent identical requests only; `Set-Cookie`, `Cache-Control: private`,
/// `no-store` or `no-cache`, `Vary: *`, a body over 1 MiB: handed back as it is).
async fn origin_of(resp: Response) -> Origin<Response> {
    let status = resp.status().as_u16();
    let disposition = HttpRules::default().disposition(status, resp.headers(), MAX_BODY);
    if disposition == Disposition::Pass {
        return Origin::Own {
            status,
            response: resp,
        };
    }
    let (parts, body) = resp.into_parts();
    match read_capped(body, MAX_BODY).await {
        Ok(bytes) => {
            let stored = StoredResponse::new(status, &parts.headers, bytes);
            if disposition == Disposition::Store {
                Origin::Store(stored)
            } else {
                Origin::Share(stored)
            }
        }
        Err(replay) => Origin::Own {
            status,
            response: Response::from_parts(parts, replay),
        },
    }
}

/// The body of a `#[cached]` handler returning `Response`, `impl IntoResponse` or a response
/// tuple: its value is turned into a response and classified.
pub async fn response_origin<R, F>(body: F) -> Origin<Response>
where
    R: IntoResponse,
    F: Future<Output = R>,
{
    origin_of(body.await.into_response()).await
}

/// Rebuilds the response of a stored (or shared) entry; the body is not copied.
pub fn response_of(stored: StoredResponse) -> Response {
    response(stored.status, stored.headers, stored.body)
}

/// A return type `#[cached]` can give back a whole Axum response as.
#[diagnostic::on_unimplemented(
    message = "`#[cached]` caches a whole Axum response as `axum::response::Response` (`Response<Body>`): `{Self}` is another type",
    label = "`#[cached]` rebuilds the cached response as `Response<axum::body::Body>`",
    note = "return `axum::response::Response` (`Response<Body>`) or `impl IntoResponse`: the handler's response is converted with `into_response()`, cached and rebuilt"
)]
pub trait WholeResponse {
    /// The return value from a stored response or the handler's own.
    fn from_produced(produced: Result<StoredResponse, Response>) -> Self;
}

impl WholeResponse for Response {
    fn from_produced(produced: Result<StoredResponse, Response>) -> Response {
        match produced {
            Ok(stored) => response_of(stored),
            Err(resp) => resp,
        }
    }
}

/// The value of a `#[cached]` handler returning `Response` or `impl IntoResponse` (`T` is
/// `Response`).
pub fn respond<T: WholeResponse>(produced: Result<StoredResponse, Response>) -> T {
    T::from_produced(produced)
}
