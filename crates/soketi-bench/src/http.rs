//! The publishing side: signed `POST /apps/{id}/events` requests over keep-alive HTTP/1.1.
//!
//! Requests are written straight on the socket, as wrk does: they have one fixed shape, so a
//! general client would only add cost to the generator's core. Answers are read far enough to
//! know the status and where the body ends (`Content-Length` or chunked).

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use soketi_protocol::http_auth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::Plan;
use crate::error::HttpError;
use crate::stats::{self, Latency};
use crate::ws::find;

/// The app the load runs as.
#[derive(Clone, Debug)]
pub struct App {
    /// The app id of the HTTP API path.
    pub id: String,
    /// The key of WebSocket paths and signatures.
    pub key: String,
    /// The secret that signs API requests and channel authorizations.
    pub secret: String,
}

impl Default for App {
    fn default() -> Self {
        Self {
            id: "app-id".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
        }
    }
}

/// A signed request that publishes `data` as event `name` on `channel`, as whole HTTP/1.1 bytes.
pub(crate) fn publish_request(
    app: &App,
    server: SocketAddr,
    channel: &str,
    name: &str,
    data: &str,
) -> Vec<u8> {
    let body = serde_json::json!({ "name": name, "channel": channel, "data": data }).to_string();
    let path = format!("/apps/{}/events", app.id);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let query = http_auth::sign(
        "POST",
        &path,
        &[],
        body.as_bytes(),
        &app.key,
        &app.secret,
        now,
    );
    let query: Vec<String> = query
        .iter()
        .map(|(key, value)| format!("{}={}", percent_encode(key), percent_encode(value)))
        .collect();
    let mut request = format!(
        "POST {path}?{} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        query.join("&"),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// A signed `GET` of the HTTP API's `path` (such as `/apps/{id}/channels`) with `params`, as
/// whole HTTP/1.1 bytes.
pub(crate) fn get_request(
    app: &App,
    server: SocketAddr,
    path: &str,
    params: &[(String, String)],
) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let query = http_auth::sign("GET", path, params, b"", &app.key, &app.secret, now);
    let query: Vec<String> = query
        .iter()
        .map(|(key, value)| format!("{}={}", percent_encode(key), percent_encode(value)))
        .collect();
    format!(
        "GET {path}?{} HTTP/1.1\r\nHost: {server}\r\n\r\n",
        query.join("&")
    )
    .into_bytes()
}

/// Percent-encodes all but RFC 3986's unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One keep-alive connection to the HTTP API.
pub(crate) struct ApiClient {
    server: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl ApiClient {
    /// A client that connects on its first request.
    pub(crate) fn new(server: SocketAddr) -> Self {
        Self {
            server,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Opens the connection now, if it is not open, so that no request's time includes it.
    pub(crate) async fn connect(&mut self) -> Result<(), HttpError> {
        open(&mut self.stream, self.server).await.map(|_| ())
    }

    /// Sends `request` and returns the answer's status. A broken connection is dropped, and the
    /// next request opens another.
    pub(crate) async fn send(&mut self, request: &[u8]) -> Result<u16, HttpError> {
        let result = self.exchange(request).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<u16, HttpError> {
        let stream = open(&mut self.stream, self.server).await?;
        stream.write_all(request).await?;
        self.buf.clear();
        loop {
            match parse_response(&self.buf)? {
                Some(answer) => {
                    if answer.close {
                        self.stream = None;
                    }
                    return Ok(answer.status);
                }
                None => {
                    self.buf.reserve(4096);
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        return Err(HttpError::Closed);
                    }
                }
            }
        }
    }
}

/// The connection in `slot`, opened to `server` first if there is none.
async fn open(
    slot: &mut Option<TcpStream>,
    server: SocketAddr,
) -> Result<&mut TcpStream, HttpError> {
    match slot {
        Some(stream) => Ok(stream),
        None => {
            let stream = TcpStream::connect(server).await?;
            stream.set_nodelay(true)?;
            Ok(slot.insert(stream))
        }
    }
}

/// What the generator needs of a whole response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The server will close the connection after this answer.
    pub(crate) close: bool,
}

/// What the generator reads of a response's head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// The body's `Content-Length`, when the head gives one.
    pub(crate) length: Option<usize>,
    /// The body comes in chunks (`Transfer-Encoding: chunked`).
    pub(crate) chunked: bool,
    /// The server will close the connection after this answer.
    pub(crate) close: bool,
    /// Bytes of the head, blank line included: where the body starts.
    pub(crate) size: usize,
}

/// The head of the response at the start of `buf`, `None` until it is whole.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| HttpError::Malformed("a head that is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(HttpError::Malformed("no status code"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| HttpError::Malformed("a bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(Head {
        status,
        length,
        chunked,
        close,
        size: head_end + 4,
    }))
}

/// The response at the start of `buf`, `None` until it is whole.
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<Answer>, HttpError> {
    let Some(head) = parse_head(buf)? else {
        return Ok(None);
    };
    let body = &buf[head.size..];
    let whole = if head.chunked {
        find(body, b"0\r\n\r\n").is_some_and(|at| at == 0 || body[..at].ends_with(b"\r\n"))
    } else {
        body.len() >= head.length.unwrap_or(0)
    };
    Ok(whole.then_some(Answer {
        status: head.status,
        close: head.close,
    }))
}

/// Publishes one pre-signed event as fast as `connections` keep-alive connections allow, for
/// `duration`, to a channel nobody subscribes to: the cost of the API alone.
pub(crate) async fn throughput(
    plan: &crate::Plan,
    connections: usize,
    duration: std::time::Duration,
    progress: &crate::progress::Progress,
) -> Result<crate::HttpThroughput, crate::BenchError> {
    use std::time::Instant;

    use crate::{percent, procfs, stats};

    // One signature serves the whole run: its timestamp stays valid for ten minutes.
    let request = Arc::new(publish_request(
        &plan.app,
        plan.api,
        "bench-http",
        "bench",
        "x",
    ));
    // A first request fails fast on an unreachable API, instead of counting every failure.
    ApiClient::new(plan.api).send(&request).await?;
    let meter = procfs::Meter::start(&plan.server_pids)?;
    let end = tokio::time::Instant::now() + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let request = Arc::clone(&request);
            let mut client = ApiClient::new(plan.api);
            tokio::spawn(async move {
                let mut latencies = stats::histogram();
                let (mut ok, mut failed) = (0u64, 0u64);
                while tokio::time::Instant::now() < end {
                    let sent = Instant::now();
                    match client.send(&request).await {
                        Ok(200) => ok += 1,
                        _ => failed += 1,
                    }
                    stats::record(&mut latencies, sent.elapsed().as_micros() as u64);
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    progress.phase("http", 0);
    progress.until_done(&tasks, meter.started(), duration).await;
    let spent = meter.read(&plan.server_pids)?;
    let mut latencies = stats::histogram();
    let (mut ok, mut failed) = (0, 0);
    for task in tasks {
        if let Ok((task_ok, task_failed, task_latencies)) = task.await {
            ok += task_ok;
            failed += task_failed;
            let _ = latencies.add(&task_latencies);
        }
    }
    Ok(crate::HttpThroughput {
        ok,
        failed,
        per_sec: ok as f64 / spent.wall.as_secs_f64().max(1e-3),
        latency: stats::Latency::of(&latencies),
        server_cpu_us_per_request: if ok == 0 {
            0.0
        } else {
            spent.server_cpu.as_secs_f64() * 1e6 / ok as f64
        },
        generator_cpu_percent: percent(spent.own_cpu, spent.wall),
    })
}

/// Publishes to a channel without subscribers, one request at a time every 10 ms, until `stop`
/// turns true; returns the answers' latencies and how many requests failed. A request that
/// is not answered counts with the time it waited.
pub(crate) async fn probe(plan: Plan, mut stop: watch::Receiver<bool>) -> (Latency, u64) {
    let mut client = ApiClient::new(plan.api);
    let request = publish_request(&plan.app, plan.api, "bench-probe", "probe", "{}");
    let mut latencies = stats::histogram();
    let mut failed = 0;
    while !*stop.borrow_and_update() {
        let started = Instant::now();
        let answer = tokio::time::timeout(PROBE_TIMEOUT, client.send(&request)).await;
        stats::record(&mut latencies, started.elapsed().as_micros() as u64);
        if !matches!(answer, Ok(Ok(200))) {
            failed += 1;
            client = ApiClient::new(plan.api);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = stop.changed() => {}
        }
    }
    (Latency::of(&latencies), failed)
}

/// The longest one probe request waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
