//! What one address may hold: the per-address caps on open and new WebSocket connections,
//! the address a trusted proxy reports, and the origins an app lets in.

mod support;

use std::net::SocketAddr;

use serde_json::Value;
use support::{DEADLINE, RawWs, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Sends an upgrade request with `extra` header lines; returns the status and the stream.
async fn upgrade(addr: SocketAddr, extra: &str) -> (u16, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        let n = timeout(DEADLINE, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed without an answer");
        seen.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&seen);
    (head[9..12].parse().expect("a status"), stream)
}

#[tokio::test]
async fn one_address_holds_at_most_its_connections() {
    let server = server(|c| c.ip_limits.max_connections = 3).await;
    let addr = server.local_addr();
    let mut open = Vec::new();
    for _ in 0..3 {
        let (status, stream) = upgrade(addr, "").await;
        assert_eq!(status, 101);
        open.push(stream);
    }
    let (status, _) = upgrade(addr, "").await;
    assert_eq!(status, 429, "the fourth connection of one address");
    drop(open.pop());
    support::eventually("a closed connection frees its place", || async {
        upgrade(addr, "").await.0 == 101
    })
    .await;
}

#[tokio::test]
async fn one_address_opens_at_most_its_connections_per_second() {
    let server = server(|c| c.ip_limits.max_connects_per_sec = 5).await;
    let addr = server.local_addr();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(upgrade(addr, "").await.0);
    }
    let admitted = statuses.iter().filter(|s| **s == 101).count();
    // Twelve connects may straddle two seconds: at most two windows' worth get in.
    assert!((5..=10).contains(&admitted), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn a_trusted_proxy_reports_the_address_and_an_untrusted_peer_cannot() {
    // The test's connections come from 127.0.0.1: trusted here, so each forwarded address
    // has its own count.
    let trusting = server(|c| {
        c.ip_limits.max_connections = 1;
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let addr = trusting.local_addr();
    let (first, _a) = upgrade(addr, "X-Forwarded-For: 203.0.113.1\r\n").await;
    let (second, _b) = upgrade(addr, "X-Forwarded-For: 203.0.113.2\r\n").await;
    let (again, _c) = upgrade(addr, "Forwarded: for=203.0.113.1\r\n").await;
    assert_eq!((first, second, again), (101, 101, 429));

    // Without trust the header is the client's word: every connection counts as 127.0.0.1.
    let wary = server(|c| c.ip_limits.max_connections = 1).await;
    let addr = wary.local_addr();
    let (first, _a) = upgrade(addr, "X-Forwarded-For: 203.0.113.1\r\n").await;
    let (second, _b) = upgrade(addr, "X-Forwarded-For: 203.0.113.2\r\n").await;
    assert_eq!((first, second), (101, 429));
}

#[tokio::test]
async fn a_bad_trusted_proxy_stops_start_up() {
    let config = soketi_server::Config {
        trusted_proxies: vec!["10.0.0.0/33".into()],
        ..soketi_server::Config::default()
    };
    let error = soketi_server::start(config).await.err().expect("refused");
    assert!(error.to_string().contains("trustedProxies"), "{error}");
}

#[tokio::test]
async fn an_app_lets_in_only_the_origins_it_lists() {
    let server = server(|c| {
        c.app_manager.array.apps[0].allowed_origins = Some(vec!["https://*.example.com".into()]);
    })
    .await;
    let addr = server.local_addr();
    let (mut refused, error) = connect_from(addr, Some("https://evil.test")).await;
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], 4009, "{error}");
    assert_eq!(refused.read_to_close().await, Some(4009));

    for origin in [Some("https://app.example.com"), None] {
        let (mut ws, hello) = connect_from(addr, origin).await;
        assert_eq!(
            hello["event"], "pusher:connection_established",
            "{origin:?}"
        );
        ws.subscribe("news").await;
    }
}

/// Connects to the default app with `origin`; returns the socket and its first frame.
async fn connect_from(addr: SocketAddr, origin: Option<&str>) -> (RawWs, Value) {
    let path = "/app/app-key?protocol=7";
    let mut ws = match origin {
        Some(origin) => {
            RawWs::connect_with_headers(addr, path, &format!("Origin: {origin}\r\n")).await
        }
        None => RawWs::connect(addr, path).await,
    };
    let first = ws.next_json().await;
    (ws, first)
}
