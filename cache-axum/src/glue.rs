//! Conversions between Axum's responses and `cache-core`'s, shared by the response layer and
//! the runtime of `#[cached]` handlers (`__private`).

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

/// Reads the whole body if it is at most `max` bytes (`Ok`); otherwise (or on a body error)
/// returns a body replaying what was read followed by the rest (`Err`), so the client still
/// gets the full response, unstored.
pub(crate) async fn read_capped(mut body: Body, max: usize) -> Result<Bytes, Body> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() > max {
                        let head = buf.freeze();
                        let stream =
                            futures_util::stream::once(
                                async move { Ok::<Bytes, axum::Error>(head) },
                            )
                            .chain(body.into_data_stream());
                        return Err(Body::from_stream(stream));
                    }
                }
            }
            Err(e) => {
                let head = buf.freeze();
                let stream = futures_util::stream::iter([Ok(head), Err(e)]);
                return Err(Body::from_stream(stream));
            }
        }
    }
    Ok(buf.freeze())
}

/// An Axum response with this status, headers (appended in order) and body; the body is not
/// copied.
pub(crate) fn response(
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let map = resp.headers_mut();
    map.reserve(headers.len());
    for (name, value) in headers {
        map.append(name, value);
    }
    resp
}
