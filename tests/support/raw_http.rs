//! Raw HTTP/1.1 over TCP, for tests that need to see what happens on the wire: partial
//! responses, `Connection: close`, and connections the server closes.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What became of one request sent over a raw TCP connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A complete response: status line, headers and the whole body.
    Complete {
        status: u16,
        body: Vec<u8>,
        close: bool,
    },
    /// The connection was closed or reset before any byte of a response.
    NoResponse(String),
    /// Some of a response, then the connection ended: the failure this test is about.
    Partial(String),
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes `request` and reads one response (Content-Length bodies, or to EOF).
pub async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Outcome {
    if let Err(e) = stream.write_all(request).await {
        return Outcome::NoResponse(format!("write: {e}"));
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut want: Option<usize> = None;
    let mut close = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(w) = want
            && buf.len() >= w
        {
            let head_end = find(&buf, b"\r\n\r\n").map_or(0, |i| i + 4);
            let status = std::str::from_utf8(&buf[9..12])
                .ok()
                .and_then(|s| s.parse().ok());
            return match status {
                Some(status) => Outcome::Complete {
                    status,
                    body: buf[head_end..w].to_vec(),
                    close,
                },
                None => Outcome::Partial(format!("bad status line {:?}", &buf[..12])),
            };
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        let n = match read {
            Err(_) => return Outcome::Partial(format!("timed out after {} bytes", buf.len())),
            Ok(Err(e)) if buf.is_empty() => return Outcome::NoResponse(format!("read: {e}")),
            Ok(Err(e)) => return Outcome::Partial(format!("{e} after {} bytes", buf.len())),
            Ok(Ok(0)) if buf.is_empty() => return Outcome::NoResponse("closed".into()),
            Ok(Ok(0)) if want.is_none() && close && find(&buf, b"\r\n\r\n").is_some() => {
                // A close-delimited body ends here.
                want = Some(buf.len());
                continue;
            }
            Ok(Ok(0)) => return Outcome::Partial(format!("closed after {} bytes", buf.len())),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if want.is_none()
            && let Some(i) = find(&buf, b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            close = head.contains("\r\nconnection: close");
            if let Some(len) = head
                .split("\r\n")
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                want = Some(i + 4 + len);
            }
        }
    }
}

pub fn post_request(port: u16, path: &str, body: &Value, close: bool) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

/// Reads until the server closes `stream` or `limit` passes; the time it took to close,
/// or `None` if it stayed open. Bytes the server sends first are returned too.
pub async fn wait_closed(stream: &mut TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let started = tokio::time::Instant::now();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(started + limit, stream.read(&mut chunk)).await {
            Err(_) => return (None, seen),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(started.elapsed()), seen),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `GET path` on a keep-alive connection.
pub fn get_request(port: u16, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes()
}
