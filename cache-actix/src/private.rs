//! Runtime support for `#[cached]` on Actix handlers that return a finished response
//! (`HttpResponse`, `impl Responder`, `(R, StatusCode)`). Not a stable API: only the macro's generated code calls
//! it. The response is cached through the same engine and stored format as the response layer
//! (`cache_core::__private::run_http`).

use std::future::Future;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, Responder};
use cache_core::http::{Disposition, HttpRules, Origin, StoredResponse};

use crate::glue::{read_capped, Headers};

/// Largest response body `#[cached]` stores; larger ones are returned unstored.
const MAX_BODY: usize = 1024 * 1024;

pub use actix_web::HttpRequest as Request;
pub use actix_web::HttpResponse;

/// Classifies a handler's response with the default HTTP rules (200 stored; other statuses
/// shared with concurrent identical requests only; `Set-Cookie`, `private`, `no-store`, over
/// 1 MiB: passed through).
async fn origin_of(resp: HttpResponse<BoxBody>) -> Origin<HttpResponse> {
    let status = resp.status().as_u16();
    let disposition = HttpRules::default().disposition(status, &Headers(resp.headers()), MAX_BODY);
    if disposition == Disposition::Pass {
        return Origin::Own {
            status,
            response: resp,
        };
    }
    let (head, body) = resp.into_parts();
    match read_capped(body, MAX_BODY).await {
        Ok(bytes) => {
            let stored = StoredResponse::new(status, &Headers(head.headers()), bytes);
            if disposition == Disposition::Store {
                Origin::Store(stored)
            } else {
                Origin::Share(stored)
            }
        }
        Err(partial) => Origin::Own {
            status,
            response: head.set_body(partial),
        },
    }
}

/// The body of a `#[cached]` handler returning `HttpResponse`.
pub async fn response_origin<B, F>(body: F) -> Origin<HttpResponse>
where
    B: MessageBody + 'static,
    F: Future<Output = HttpResponse<B>>,
{
    origin_of(body.await.map_into_boxed_body()).await
}

/// The body of a `#[cached]` handler returning `impl Responder` or `(R, StatusCode)`: the
/// responder is turned into a response with the request (a hidden `HttpRequest` argument the
/// macro adds).
pub async fn responder_origin<R, F>(req: HttpRequest, body: F) -> Origin<HttpResponse>
where
    R: Responder,
    F: Future<Output = R>,
{
    origin_of(body.await.respond_to(&req).map_into_boxed_body()).await
}

/// Rebuilds the response of a stored (or shared) entry; the body is not copied.
pub fn response_of(stored: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut resp = HttpResponse::with_body(status, stored.body).map_into_boxed_body();
    let headers = resp.headers_mut();
    for (name, value) in &stored.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    resp
}

/// The value of a `#[cached]` handler returning `HttpResponse` or `impl Responder`.
pub fn respond(produced: Result<StoredResponse, HttpResponse>) -> HttpResponse {
    match produced {
        Ok(stored) => response_of(stored),
        Err(resp) => resp,
    }
}
