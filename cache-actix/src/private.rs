//! Runtime support for `#[cached]` on Actix handlers that return a finished response
//! (`HttpResponse`, `impl Responder`). Not a stable API: only the macro's generated code calls
//! it.

use std::future::Future;

use actix_web::body::MessageBody;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{Either, HttpRequest, HttpResponse, Responder};
use cache_core::http::ResponseEntry;

use crate::glue::{read_capped, Headers};

/// Largest response body `#[cached]` stores; larger ones are returned unstored.
const MAX_BODY: usize = 1024 * 1024;

pub use actix_web::HttpRequest as Request;

/// What a cached handler's body produced: a storable entry (`Ok`), or a response to return
/// unstored (`Err`).
pub type Produced<R> = Result<ResponseEntry, Either<HttpResponse, R>>;

/// Turns a response into an entry, or gives it back when it cannot be stored.
async fn entry_of(resp: HttpResponse) -> Result<ResponseEntry, HttpResponse> {
    let (head, body) = resp.into_parts();
    let status = head.status().as_u16();
    if status != 200 {
        return Err(head.set_body(body));
    }
    match read_capped(body, MAX_BODY).await {
        Ok(bytes) => match ResponseEntry::new(status, &Headers(head.headers()), bytes.to_vec()) {
            Some(entry) => Ok(entry),
            None => Err(head.set_body(actix_web::body::BoxBody::new(bytes))),
        },
        Err(partial) => Err(head.set_body(partial)),
    }
}

/// The body of a `#[cached]` handler returning `HttpResponse`.
pub async fn response_entry<B, F>(body: F) -> Produced<HttpResponse>
where
    B: MessageBody + 'static,
    F: Future<Output = HttpResponse<B>>,
{
    entry_of(body.await.map_into_boxed_body())
        .await
        .map_err(Either::Left)
}

/// The body of a `#[cached]` handler returning `impl Responder`: the responder is turned into
/// a response with the request (a hidden `HttpRequest` argument the macro adds).
pub async fn responder_entry<R, F>(req: HttpRequest, body: F) -> Produced<R>
where
    R: Responder,
    F: Future<Output = R>,
{
    let resp = body.await.respond_to(&req).map_into_boxed_body();
    entry_of(resp).await.map_err(Either::Left)
}

/// Rebuilds the response of an entry.
pub fn response_of(entry: ResponseEntry) -> HttpResponse {
    let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    let mut resp = HttpResponse::with_body(status, entry.body.into_bytes()).map_into_boxed_body();
    let headers = resp.headers_mut();
    for (name, value) in entry.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(n, v);
        }
    }
    resp
}

/// The value of a `#[cached]` handler returning `HttpResponse`.
pub fn respond_response(produced: Produced<HttpResponse>) -> HttpResponse {
    match produced {
        Ok(entry) => response_of(entry),
        Err(Either::Left(resp) | Either::Right(resp)) => resp,
    }
}

/// The value of a `#[cached]` handler returning `impl Responder`.
pub fn respond<R: Responder>(produced: Produced<R>) -> Either<HttpResponse, R> {
    match produced {
        Ok(entry) => Either::Left(response_of(entry)),
        Err(either) => either,
    }
}
