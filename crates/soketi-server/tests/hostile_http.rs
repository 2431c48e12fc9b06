//! Clients without credentials that try to hold the HTTP side of the server: request heads
//! dripped a byte at a time, idle keep-alive connections, unsigned uploads, bodies announced
//! over the limit and bodies that never finish.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use soketi_server::RunningServer;
use support::{DEADLINE, server, signed_query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// The headers timeout of these tests: short, so that a test waits little.
const HEADERS_TIMEOUT: Duration = Duration::from_millis(500);

async fn strict_server() -> RunningServer {
    server(|c| {
        c.http_api.headers_timeout = HEADERS_TIMEOUT.as_millis() as u64;
        c.http_api.body_timeout = 700;
        c.http_api.request_limit_in_mb = 1.0;
    })
    .await
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn until_closed(stream: &mut TcpStream) -> (String, Instant) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match timeout(DEADLINE, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&seen).into(), Instant::now()),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the server kept the connection open past {DEADLINE:?}"),
        }
    }
}

/// Sends `head` one byte every 100 ms until the server closes the socket; returns how long
/// the server kept it.
async fn drip(addr: SocketAddr, head: &'static [u8]) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut chunk = [0u8; 1024];
    for byte in head.iter().cycle() {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        match timeout(Duration::from_millis(100), stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {
                // An answer (408, 400): the server then closes.
                let _ = until_closed(&mut stream).await;
                break;
            }
            Err(_) => {}
        }
        assert!(
            started.elapsed() < DEADLINE,
            "a dripped request head held its socket past {DEADLINE:?}"
        );
    }
    started.elapsed()
}

#[tokio::test]
async fn request_heads_dripped_a_byte_at_a_time_are_cut_off_on_both_ports() {
    let server = strict_server().await;
    let main = server.local_addr();
    let ops = server.metrics_addr();
    let upgrade: &[u8] = b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let api: &[u8] = b"POST /apps/app-id/events HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let probe: &[u8] = b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // Many at once, as an attack does: each is cut off, and the server answers meanwhile.
    let mut drips = Vec::new();
    for (addr, head) in [(main, upgrade), (main, api), (ops, probe)] {
        for _ in 0..20 {
            drips.push(tokio::spawn(drip(addr, head)));
        }
    }
    tokio::time::sleep(HEADERS_TIMEOUT / 2).await;
    let ready = support::get(ops, "/ready").await;
    assert_eq!(
        ready.status, 200,
        "the operations port answers during the attack"
    );
    for held in drips {
        let held = held.await.expect("the drip task ends");
        assert!(
            held >= HEADERS_TIMEOUT,
            "closed after {held:?}, before the headers timeout: the server cut a head short"
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_headers_timeout() {
    let server = strict_server().await;
    for addr in [server.local_addr(), server.metrics_addr()] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let (status, body) = answer(&mut stream).await;
        assert_eq!((status, body.as_str()), (200, "OK"));
        let answered = Instant::now();
        let (rest, closed) = until_closed(&mut stream).await;
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
            "{rest:?}"
        );
        assert!(
            closed - answered >= HEADERS_TIMEOUT - Duration::from_millis(50),
            "an idle keep-alive connection was closed after {:?}",
            closed - answered
        );
    }
}

/// Sends a request head announcing a body of `length` bytes, and nothing of the body.
async fn head_only(addr: SocketAddr, target: &str, length: u64) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream
}

/// The status line's code and the body of the first answer on `stream`, within [`DEADLINE`].
async fn answer(stream: &mut TcpStream) -> (u16, String) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        seen.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let status = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .expect("a status");
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length || n == 0 {
                return (status, body.to_owned());
            }
        }
        assert!(n > 0, "the connection closed without an answer: {text:?}");
    }
}

#[tokio::test]
async fn an_unsigned_upload_is_refused_before_its_body_is_read() {
    let server = strict_server().await;
    // 90 MB announced, none sent: the answer cannot wait for the body.
    let mut stream = head_only(server.local_addr(), "/apps/app-id/events", 90 << 20).await;
    let (status, body) = answer(&mut stream).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature"), "{body}");
}

#[tokio::test]
async fn a_signed_body_announced_over_the_limit_is_refused_at_once() {
    let server = strict_server().await;
    let path = "/apps/app-id/events";
    let target = format!("{path}?{}", signed_query("POST", path, b"{}"));
    let mut stream = head_only(server.local_addr(), &target, 2 << 20).await;
    let (status, body) = answer(&mut stream).await;
    assert_eq!(status, 413, "{body}");
}

#[tokio::test]
async fn a_signed_body_that_stops_arriving_gets_408() {
    let server = strict_server().await;
    let path = "/apps/app-id/events";
    let body = br#"{"name":"e","channel":"news","data":"{}"}"#;
    let target = format!("{path}?{}", signed_query("POST", path, body));
    let mut stream = head_only(server.local_addr(), &target, body.len() as u64).await;
    stream.write_all(&body[..10]).await.expect("send");
    let started = Instant::now();
    let (status, answer) = answer(&mut stream).await;
    assert_eq!(status, 408, "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "408 after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_does_not_match_its_signed_md5_is_refused() {
    let server = strict_server().await;
    let path = "/apps/app-id/events";
    let signed = br#"{"name":"e","channel":"news","data":"{}"}"#;
    let sent = br#"{"name":"x","channel":"news","data":"{}"}"#;
    let target = format!("{path}?{}", signed_query("POST", path, signed));
    let mut stream = head_only(server.local_addr(), &target, sent.len() as u64).await;
    stream.write_all(sent).await.expect("send");
    let (status, body) = answer(&mut stream).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("body_md5"), "{body}");
}

#[tokio::test]
async fn an_app_with_very_many_channels_lists_them_all() {
    let server = support::server(|_| {}).await;
    let addr = server.local_addr();
    // 20 connections of 1000 subscriptions each (the cap per connection): 20k channels.
    let mut sockets = Vec::new();
    for connection in 0..20 {
        let (mut ws, _) = support::RawWs::connect_app(addr).await;
        let mut batch = Vec::new();
        for i in 0..1000 {
            let subscribe = format!(
                r#"{{"event":"pusher:subscribe","data":{{"channel":"room-{connection}-{i}"}}}}"#
            );
            batch.extend(support::masked_frame(0x81, subscribe.as_bytes()));
        }
        ws.send_raw(&batch).await;
        for _ in 0..1000 {
            let ok = ws.next_json().await;
            assert_eq!(
                ok["event"], "pusher_internal:subscription_succeeded",
                "{ok}"
            );
        }
        sockets.push(ws);
    }
    let (status, answer) = support::api(addr, "GET", "/apps/app-id/channels", "").await;
    assert_eq!(status, 200);
    let channels = answer["channels"].as_object().expect("a map of channels");
    assert_eq!(channels.len(), 20_000);
    assert!(
        channels
            .values()
            .all(|attributes| attributes == &serde_json::json!({ "subscription_count": 1 })),
        "each listed once, with its one subscriber"
    );
    drop(sockets);
}
