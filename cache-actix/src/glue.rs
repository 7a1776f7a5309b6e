//! Conversions between Actix's types (built on `http` 0.2) and `cache-core`'s (`http` 1).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use cache_core::http::{CachedResponse, HeaderSource};

/// The route template of a request (`/trigs/{id}`), before or after routing.
///
/// Actix routes on the path with its unreserved escapes decoded (`/%69tems/1` is `/items/1`), not
/// on the raw `req.path()` that [`HttpRequest::match_pattern`](actix_web::HttpRequest::match_pattern)
/// matches before routing: a middleware that used it would see no route for a request the router
/// sends to one (and, for a write, invalidate nothing). The match uses the router's own path.
pub(crate) fn route_pattern(req: &actix_web::HttpRequest) -> Option<String> {
    req.resource_map()
        .match_pattern(req.match_info().as_str())
        .or_else(|| req.match_pattern())
}

/// An Actix header map seen through [`HeaderSource`].
pub(crate) struct Headers<'a>(pub(crate) &'a HeaderMap);

impl HeaderSource for Headers<'_> {
    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.0.get_all(name).map(HeaderValue::as_bytes)
    }

    fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// The `http` 1 method of an Actix method (no allocation for the standard ones).
pub(crate) fn method(m: &Method) -> http::Method {
    match *m {
        Method::GET => http::Method::GET,
        Method::HEAD => http::Method::HEAD,
        Method::POST => http::Method::POST,
        Method::PUT => http::Method::PUT,
        Method::PATCH => http::Method::PATCH,
        Method::DELETE => http::Method::DELETE,
        Method::OPTIONS => http::Method::OPTIONS,
        _ => http::Method::from_bytes(m.as_str().as_bytes()).unwrap_or(http::Method::OPTIONS),
    }
}

/// Converts a `cache-core` header pair to Actix's types (`None` never happens for valid input).
pub(crate) fn header(
    name: &http::HeaderName,
    value: &http::HeaderValue,
) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_bytes(name.as_str().as_bytes()).ok()?,
        HeaderValue::from_bytes(value.as_bytes()).ok()?,
    ))
}

/// Sets (replacing) each header on `headers`.
pub(crate) fn insert_all(headers: &mut HeaderMap, pairs: &[(http::HeaderName, http::HeaderValue)]) {
    for (n, v) in pairs {
        if let Some((n, v)) = header(n, v) {
            headers.insert(n, v);
        }
    }
}

/// An Actix response from a cache hit.
pub(crate) fn cached_response(hit: CachedResponse) -> HttpResponse {
    let status = StatusCode::from_u16(hit.status).unwrap_or(StatusCode::OK);
    let mut resp = HttpResponse::with_body(status, hit.body).map_into_boxed_body();
    let headers = resp.headers_mut();
    for (n, v) in &hit.headers {
        if let Some((n, v)) = header(n, v) {
            headers.append(n, v);
        }
    }
    resp
}

/// Reads the whole body if it is at most `max` bytes (`Ok`); otherwise (or on a body error)
/// returns a body replaying what was read followed by the rest (`Err`), so the client still
/// gets the full response, unstored.
pub(crate) async fn read_capped(body: BoxBody, max: usize) -> Result<Bytes, BoxBody> {
    let body = match body.try_into_bytes() {
        Ok(bytes) if bytes.len() <= max => return Ok(bytes),
        Ok(bytes) => return Err(BoxBody::new(bytes)),
        Err(body) => body,
    };
    let mut body = body;
    let mut buf = BytesMut::new();
    loop {
        match poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await {
            None => return Ok(buf.freeze()),
            Some(Ok(chunk)) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > max {
                    return Err(BoxBody::new(Replay {
                        head: Some(buf.freeze()),
                        rest: body,
                        error: None,
                    }));
                }
            }
            Some(Err(e)) => {
                return Err(BoxBody::new(Replay {
                    head: Some(buf.freeze()),
                    rest: BoxBody::new(()),
                    error: Some(e),
                }))
            }
        }
    }
}

/// A body that yields `head`, then `rest` (or `error`).
struct Replay {
    head: Option<Bytes>,
    rest: BoxBody,
    error: Option<Box<dyn std::error::Error>>,
}

impl MessageBody for Replay {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        Pin::new(&mut self.rest).poll_next(cx)
    }
}
