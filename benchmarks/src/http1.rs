//! A minimal HTTP/1.1 client that sends one fixed request over and over on a kept-alive
//! connection: configuration `c`'s load generator, and how the benchmark asks c's nodes
//! for their status.
//!
//! A general client (reqwest) spends most of a core on its own machinery at tens of
//! thousands of requests per second (a task per connection, channels between them, URL
//! parsing per request), and on a 2-core machine that CPU is taken from the nodes being
//! measured. This one writes the prepared bytes, reads the answer in the same task, and
//! keeps nothing but a buffer. It understands exactly what c's nodes send (see
//! [`crate::node`]): a status line, headers with `Content-Length`, and that many bytes of
//! body.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers larger than this are refused.
const MAX_HEADER: usize = 64 * 1024;
/// Bodies larger than this are refused.
const MAX_BODY: usize = 1024 * 1024;

/// One answer.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// A connection to one server, opened on first use and again after a failure.
pub struct Connection {
    addr: SocketAddr,
    request: Vec<u8>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Connection {
    /// A client that will `POST` `body` (raw bytes) to `path` on `addr`.
    pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Connection {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        Connection::with_request(addr, request)
    }

    /// Makes the next requests `POST` `body` to `path`, reusing the request's buffer.
    pub fn set_post(&mut self, path: &str, body: &[u8]) {
        self.set_request("POST", path, body);
    }

    fn set_request(&mut self, method: &str, path: &str, body: &[u8]) {
        use std::io::Write;
        self.request.clear();
        let _ = write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        self.request.extend_from_slice(body);
    }

    /// A client that will `PUT` `body` (raw bytes) to `path` on `addr`, until
    /// [`Connection::set_put`] changes the path and body.
    pub fn put(addr: SocketAddr, path: &str, body: &[u8]) -> Connection {
        let mut c = Connection::with_request(addr, Vec::new());
        c.set_put(path, body);
        c
    }

    /// Makes the next requests `PUT` `body` to `path`, reusing the request's buffer.
    pub fn set_put(&mut self, path: &str, body: &[u8]) {
        self.set_request("PUT", path, body);
    }

    /// A client that will `GET` `path` on `addr`.
    pub fn get(addr: SocketAddr, path: &str) -> Connection {
        let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").into_bytes();
        Connection::with_request(addr, request)
    }

    fn with_request(addr: SocketAddr, request: Vec<u8>) -> Connection {
        Connection {
            addr,
            request,
            stream: None,
            buf: Vec::with_capacity(1024),
        }
    }

    /// Sends the request and reads the answer. After an error the connection is closed,
    /// and the next call opens a new one.
    pub async fn send(&mut self) -> std::io::Result<Response> {
        let result = self.exchange().await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(&self.request).await?;

        // The head: up to the blank line.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEADER {
                return Err(invalid("response headers too large"));
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head =
            std::str::from_utf8(&self.buf[..head_end]).map_err(|_| invalid("response head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| invalid("malformed status line"))?;
        let mut length = None;
        let mut close = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(invalid("chunked responses are not supported"));
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                close = true;
            }
        }
        let length = length.ok_or_else(|| invalid("response without content-length"))?;
        if length > MAX_BODY {
            return Err(invalid("response body too large"));
        }
        while self.buf.len() < head_end + length {
            read_more(stream, &mut self.buf).await?;
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        // One request at a time: anything after the body would be a protocol error, and
        // is dropped with the buffer's content.
        self.buf.clear();
        if close {
            self.stream = None;
        }
        Ok(Response { status, body })
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.reserve(4096);
    if stream.read_buf(buf).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request with `answers[i]`, on one connection.
    async fn server(answers: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            for answer in answers {
                let mut request = Vec::new();
                // The request is small and fixed: read until its body is in.
                while find(&request, b"\r\n\r\n").is_none_or(|i| request.len() < i + 4 + 7) {
                    let mut chunk = [0u8; 1024];
                    let n = socket.read(&mut chunk).await.unwrap();
                    request.extend_from_slice(&chunk[..n]);
                }
                assert!(request.starts_with(b"POST /propose HTTP/1.1\r\n"));
                assert!(request.ends_with(b"payload"));
                // Split the answer, to exercise partial reads.
                let (a, b) = answer.split_at(answer.len() / 2);
                socket.write_all(a.as_bytes()).await.unwrap();
                socket.flush().await.unwrap();
                socket.write_all(b.as_bytes()).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn keeps_the_connection_and_reads_status_and_body() {
        let addr = server(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nbusy",
        ])
        .await;
        let mut c = Connection::post(addr, "/propose", b"payload");
        let first = c.send().await.unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, &b""[..]));
        let second = c.send().await.unwrap();
        assert_eq!((second.status, second.body.as_slice()), (503, &b"busy"[..]));
        // The server is gone after two answers: the next exchange fails, and says so.
        assert!(c.send().await.is_err());
    }
}
