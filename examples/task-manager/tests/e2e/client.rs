//! A tiny HTTP/1.1 client over a tokio `TcpStream`: one request per connection
//! (`Connection: close`), enough for these tests and nothing more.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The body as JSON (panics, naming the body, when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Asserts the status and that the body is `{"error": "..."}`; returns the message.
    #[track_caller]
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "expected {status}, got {}: {}", self.status, self.body);
        let json = self.json();
        json["error"].as_str().unwrap_or_else(|| panic!("no \"error\" in {json}")).to_owned()
    }

    /// Asserts the status; returns the JSON body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "expected {status}, got {}: {}", self.status, self.body);
        self.json()
    }
}

/// Talks to one server.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Client { addr }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send("GET", path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Response {
        self.send("POST", path, &[], Some(body.as_bytes())).await
    }

    pub async fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        self.send("POST", path, headers, Some(body.as_bytes())).await
    }

    /// Sends a request and reads the whole answer; panics on a connection failure.
    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.try_send(method, path, headers, body)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => panic!("{method} {path} to {}: {e}", self.addr),
            Err(_) => panic!("{method} {path} to {}: no answer within {REQUEST_TIMEOUT:?}", self.addr),
        }
    }

    /// Sends a request; an error when the server cannot be reached or answers garbage.
    pub async fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect(self.addr).await?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());
        // A server may answer (a 413) and close before reading everything: read what it said.
        let written = stream.write_all(&request).await;
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw).await;
        if raw.is_empty() {
            written?;
            read?;
        }
        parse(&raw).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad answer: {:?}", String::from_utf8_lossy(&raw)),
            )
        })
    }
}

fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        match headers.iter().find(|(n, _)| n == "content-length") {
            Some((_, len)) => rest.get(..len.parse::<usize>().ok()?)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some(Response { status, headers, body: String::from_utf8(body).ok()? })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[test]
fn parses_answers() {
    let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nETag: \"1\"\r\n\r\n{}").unwrap();
    assert_eq!((r.status, r.body.as_str(), r.header("etag")), (200, "{}", Some("\"1\"")));
    let r = parse(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").unwrap();
    assert_eq!((r.status, r.body.as_str()), (201, "{}"));
}
