//! [`ResponseEntry`]: a whole HTTP response as a cacheable value, for `#[cached]` handlers that
//! return a finished response (`HttpResponse`, `impl Responder`).

use serde::{Deserialize, Serialize};

use super::{is_unstorable_header, HeaderSource, HttpRules};

/// A response stored by `#[cached]`: status, the headers that belong in a cache, and the body
/// (as text when it is UTF-8, so a JSON body stays compact under the JSON codec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseEntry {
    /// Status code.
    pub status: u16,
    /// Stored headers (lowercase names), in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: EntryBody,
}

/// The body of a [`ResponseEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryBody {
    /// A UTF-8 body.
    Text(String),
    /// Any other body.
    Binary(Vec<u8>),
}

impl EntryBody {
    /// The bytes of the body.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            EntryBody::Text(s) => s.into_bytes(),
            EntryBody::Binary(b) => b,
        }
    }
}

impl ResponseEntry {
    /// The entry for a response, or `None` when the default [`HttpRules`] forbid storing it
    /// (status other than 200, `Cache-Control: no-store`/`private`/`no-cache`, `Set-Cookie`,
    /// `Vary: *`) or a kept header value is not valid UTF-8. Hop-by-hop and the cache's own
    /// headers are dropped.
    pub fn new<H: HeaderSource + ?Sized>(
        status: u16,
        headers: &H,
        body: Vec<u8>,
    ) -> Option<ResponseEntry> {
        HttpRules::default().storable(status, headers).ok()?;
        let mut kept = Vec::new();
        for (name, value) in headers.entries() {
            if is_unstorable_header(name, headers) {
                continue;
            }
            kept.push((name.to_owned(), std::str::from_utf8(value).ok()?.to_owned()));
        }
        let body = match String::from_utf8(body) {
            Ok(text) => EntryBody::Text(text),
            Err(e) => EntryBody::Binary(e.into_bytes()),
        };
        Some(ResponseEntry {
            status,
            headers: kept,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn storable_responses_keep_their_headers_and_text_bodies() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("connection", HeaderValue::from_static("close"));
        let e = ResponseEntry::new(200, &h, b"{\"a\":1}".to_vec()).expect("storable");
        assert_eq!(
            e.headers,
            vec![("content-type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(e.body, EntryBody::Text("{\"a\":1}".into()));
        let bin = ResponseEntry::new(200, &h, vec![0xff, 0x00]).expect("storable");
        assert_eq!(bin.body.into_bytes(), vec![0xff, 0x00]);
    }

    #[test]
    fn unstorable_responses_are_refused() {
        let mut h = HeaderMap::new();
        assert!(ResponseEntry::new(500, &h, Vec::new()).is_none());
        h.insert("set-cookie", HeaderValue::from_static("a=b"));
        assert!(ResponseEntry::new(200, &h, Vec::new()).is_none());
    }
}
