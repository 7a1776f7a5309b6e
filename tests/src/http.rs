//! A minimal keep-alive HTTP/1.1 client over one `TcpStream`, for load and fault tests that
//! drive a server on loopback with many concurrent connections and want no client library in
//! the measurement.
//!
//! It sends `Content-Length` bodies and reads `Content-Length`, chunked and close-delimited
//! bodies (none for `HEAD`, 1xx, 204 and 304). A server's `Connection: close` is honoured: the
//! next request reconnects. On any error the connection is dropped and the next request
//! reconnects too, so a caller may keep one client per task for the whole run. An idempotent
//! request (`GET`, `HEAD`, `PUT`, `DELETE`) that finds its reused connection closed before any
//! response (the server's idle timeout) is sent once more on a new connection.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr) -> std::io::Result<()> {
//! use cache_tests::http::HttpClient;
//! let mut client = HttpClient::new(addr);
//! let reply = client.get("/v1/trigs/1").await?;
//! assert_eq!(reply.status, 200);
//! println!("{:?}", reply.header("x-cache-status"));
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response, read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `X-Cache-Status`, if any.
    pub fn cache_status(&self) -> Option<&str> {
        self.header("x-cache-status")
    }

    /// The body as (lossy) text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn is_idempotent(method: &str) -> bool {
    ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// A keep-alive HTTP/1.1 client of one server (see the module docs).
#[derive(Debug)]
pub struct HttpClient {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// Whether the current exchange has read a status line.
    response_started: bool,
}

impl HttpClient {
    /// A client of `addr`; it connects on the first request.
    pub fn new(addr: SocketAddr) -> HttpClient {
        HttpClient {
            addr,
            stream: None,
            buf: Vec::with_capacity(8192),
            response_started: false,
        }
    }

    /// A client of `addr`, connected now.
    ///
    /// # Errors
    /// If the connection fails.
    pub async fn connect(addr: SocketAddr) -> io::Result<HttpClient> {
        let mut client = HttpClient::new(addr);
        client.ensure_connected().await?;
        Ok(client)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path`.
    ///
    /// # Errors
    /// Connection or protocol errors (the connection is then dropped).
    pub async fn get(&mut self, path: &str) -> io::Result<HttpResponse> {
        self.request("GET", path, &[], None).await
    }

    /// Sends one request and reads its response. `headers` are sent as given; `Host` and, with
    /// a body, `Content-Length` are added (give `Content-Type` yourself).
    ///
    /// # Errors
    /// Connection or protocol errors; the connection is dropped and the next request
    /// reconnects.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<HttpResponse> {
        let reused = self.stream.is_some();
        let result = self.exchange(method, path, headers, body).await;
        if result.is_err() {
            self.stream = None;
            self.buf.clear();
        }
        match result {
            // A server may close a keep-alive connection that sat idle (Actix after 5 s) just
            // as a request goes out on it. Like other clients, resend an idempotent request
            // once on a new connection when the old one ended before any response.
            Err(_) if reused && !self.response_started && is_idempotent(method) => {
                let retry = self.exchange(method, path, headers, body).await;
                if retry.is_err() {
                    self.stream = None;
                    self.buf.clear();
                }
                retry
            }
            other => other,
        }
    }

    async fn ensure_connected(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        Ok(())
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<HttpResponse> {
        self.response_started = false;
        self.ensure_connected().await?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            req.push_str(name);
            req.push_str(": ");
            req.push_str(value);
            req.push_str("\r\n");
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        self.stream_mut()?.write_all(&bytes).await?;

        let status_line = self.line().await?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
        self.response_started = true;
        let mut headers = Vec::new();
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            match name.as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
            headers.push((name, value));
        }
        let no_body = method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304;
        let body = if no_body {
            Vec::new()
        } else if chunked {
            let mut body = Vec::new();
            loop {
                let size_line = self.line().await?;
                let size_hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                body.extend_from_slice(&self.take(size).await?);
                self.take(2).await?;
            }
            body
        } else if let Some(n) = length {
            self.take(n).await?
        } else {
            // Close-delimited.
            close = true;
            let mut rest = std::mem::take(&mut self.buf);
            self.stream_mut()?.read_to_end(&mut rest).await?;
            rest
        };
        if close {
            self.stream = None;
            self.buf.clear();
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    fn stream_mut(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream_mut()?.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads until `\r\n` and returns the line (without it), consuming it.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    /// Consumes and returns `n` bytes.
    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }
}
