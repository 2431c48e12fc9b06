//! Helpers for in-process end-to-end tests: a server on a free port, a minimal WebSocket client
//! over a raw TCP stream (so that a test can stop reading, as a slow client does), and a signed
//! HTTP API request.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use soketi_protocol::http_auth;
use soketi_server::{Config, RunningServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long any single wait in a test may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1 and a free port, its operations server on another, with `tweak`
/// applied to the default configuration. Several run at once, so no port is fixed.
pub async fn server(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        ..Config::default()
    };
    config.metrics.host = "127.0.0.1".into();
    config.metrics.port = 0;
    tweak(&mut config);
    soketi_server::start(config).await.expect("server starts")
}

/// A WebSocket frame as the client reads it.
#[derive(Debug)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A WebSocket client that reads only when told to.
pub struct RawWs {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawWs {
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::connect_sending(addr, path, &[]).await
    }

    /// Connects, writing `early` (frames, say) in the same write as the upgrade request.
    pub async fn connect_sending(addr: SocketAddr, path: &str, early: &[u8]) -> Self {
        Self::upgrade(addr, path, "", early).await
    }

    /// Connects with `headers` (whole lines, each ending in CRLF) added to the request.
    pub async fn connect_with_headers(addr: SocketAddr, path: &str, headers: &str) -> Self {
        Self::upgrade(addr, path, headers, &[]).await
    }

    async fn upgrade(addr: SocketAddr, path: &str, headers: &str, early: &[u8]) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
        )
        .into_bytes();
        request.extend_from_slice(early);
        stream.write_all(&request).await.expect("send upgrade");
        let mut buffer = Vec::new();
        let end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = timeout(DEADLINE, stream.read(&mut chunk))
                .await
                .expect("upgrade answer in time")
                .expect("read upgrade answer");
            assert!(n > 0, "server closed during the upgrade");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        buffer.drain(..end);
        Self { stream, buffer }
    }

    /// Connects to the default app and reads `pusher:connection_established`.
    pub async fn connect_app(addr: SocketAddr) -> (Self, String) {
        let mut ws = Self::connect(addr, "/app/app-key?protocol=7").await;
        let hello = ws.next_json().await;
        assert_eq!(hello["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(hello["data"].as_str().unwrap_or("{}")).unwrap();
        let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
        (ws, socket_id)
    }

    /// Sends a masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_raw(&masked_frame(0x81, text.as_bytes())).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send frame");
    }

    /// Sends bytes as they are; an error once the server has closed the socket.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    pub async fn subscribe(&mut self, channel: &str) {
        self.send_text(&format!(
            r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#
        ))
        .await;
        let ok = self.next_json().await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
    }

    /// The next frame, or `None` when the server closed the stream.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = match timeout(DEADLINE, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
                Err(_) => panic!("no frame within {DEADLINE:?}"),
            };
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next text frame as JSON.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await.expect("a frame before the close");
            if frame.opcode == 0x1 {
                return frame.json();
            }
        }
    }

    /// Reads until the server closes; returns the close code it sent, if any.
    pub async fn read_to_close(&mut self) -> Option<u16> {
        let mut code = None;
        while let Some(frame) = self.next_frame().await {
            if frame.opcode == 0x8 {
                code = frame.close_code();
            }
        }
        code
    }
}

/// A client frame: the first byte (FIN, opcode) as given, the payload masked.
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![first];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else if payload.len() <= usize::from(u16::MAX) {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf[1] & 0x80 != 0 {
        at += 4;
    }
    if buf.len() < at + len {
        return None;
    }
    Some((
        Frame {
            opcode,
            payload: buf[at..at + len].to_vec(),
        },
        at + len,
    ))
}

/// The query string that signs a request of the default app, as the Pusher SDKs do.
pub fn signed_query(method: &str, path: &str, body: &[u8]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let query = http_auth::sign(method, path, &[], body, "app-key", "app-secret", now);
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish()
}

/// A signed request to the HTTP API of the default app; returns the status and the JSON body.
pub async fn api(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let query = signed_query(method, path, body.as_bytes());
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path}?{query} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .expect("answer in time")
        .expect("read answer");
    let text = String::from_utf8_lossy(&response);
    let status = text[9..12].parse().expect("status code");
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, json)
}

/// An HTTP answer as a test reads it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The header lines, as sent.
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of the header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A plain `GET` of `path` (with its query) on `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .expect("answer in time")
        .expect("read answer");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    HttpResponse {
        status: head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .expect("status code"),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Polls `check` until it returns true, failing after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
