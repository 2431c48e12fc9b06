//! Clients that try to hold the WebSocket side of the server: handshakes that are not
//! WebSocket ones, messages over the size a client needs, messages begun and never finished,
//! subscriptions without end, a second subscription to a channel, presence user ids of any
//! length, and unsubscribes from channels never joined.

mod support;

use std::time::Duration;

use serde_json::Value;
use soketi_protocol::auth;
use support::{DEADLINE, RawWs, masked_frame, server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Sends `request` as it is and returns the head of the answer.
async fn handshake(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 2048];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed without an answer to {request:?}");
        seen.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn only_a_websocket_handshake_gets_101() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let request = |version: &str, headers: &[&str]| {
        format!(
            "GET /app/app-key?protocol=7 {version}\r\nHost: x\r\n{}\r\n\r\n",
            headers.join("\r\n")
        )
    };
    let upgrade = "Upgrade: websocket";
    let connection = "Connection: Upgrade";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let version = "Sec-WebSocket-Version: 13";
    let cases = [
        (
            "HTTP/1.0",
            request("HTTP/1.0", &[upgrade, connection, key, version]),
            "400",
        ),
        (
            "h2c",
            request("HTTP/1.1", &["Upgrade: h2c", connection, key, version]),
            "400",
        ),
        (
            "no Upgrade",
            request("HTTP/1.1", &[connection, key, version]),
            "400",
        ),
        (
            "no Connection",
            request("HTTP/1.1", &[upgrade, key, version]),
            "400",
        ),
        (
            "no key",
            request("HTTP/1.1", &[upgrade, connection, version]),
            "400",
        ),
        (
            "a short key",
            request(
                "HTTP/1.1",
                &[upgrade, connection, "Sec-WebSocket-Key: abc", version],
            ),
            "400",
        ),
        (
            "version 8",
            request(
                "HTTP/1.1",
                &[upgrade, connection, key, "Sec-WebSocket-Version: 8"],
            ),
            "426",
        ),
    ];
    for (what, request, status) in cases {
        let head = handshake(addr, &request).await;
        // An HTTP/1.0 request is answered in HTTP/1.0.
        assert_eq!(head.get(9..12), Some(status), "{what}: {head}");
        if status == "426" {
            assert!(
                head.to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{what}: {head}"
            );
        }
    }
    let valid = handshake(
        addr,
        &request("HTTP/1.1", &[upgrade, connection, key, version]),
    )
    .await;
    assert!(valid.starts_with("HTTP/1.1 101"), "{valid}");
}

/// A `pusher:ping` padded to `size` bytes: a message the server reads and answers.
fn padded_ping(size: usize) -> Vec<u8> {
    let head = r#"{"event":"pusher:ping","data":{"pad":""#;
    let tail = r#""}}"#;
    let mut message = head.as_bytes().to_vec();
    message.resize(size - tail.len(), b'x');
    message.extend_from_slice(tail.as_bytes());
    message
}

#[tokio::test]
async fn a_message_over_the_size_a_client_needs_closes_with_1009() {
    // The default limits: events of 100 KiB, so messages of 128 KiB.
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let (mut ws, _) = RawWs::connect_app(addr).await;
    ws.send_raw(&masked_frame(0x81, &padded_ping(120 * 1024)))
        .await;
    assert_eq!(ws.next_json().await["event"], "pusher:pong");

    let (mut ws, _) = RawWs::connect_app(addr).await;
    ws.send_raw(&masked_frame(0x81, &padded_ping(129 * 1024)))
        .await;
    assert_eq!(ws.read_to_close().await, Some(1009));

    // In fragments, the message counts whole.
    let (mut ws, _) = RawWs::connect_app(addr).await;
    let message = padded_ping(200 * 1024);
    let (head, tail) = message.split_at(100 * 1024);
    ws.send_raw(&masked_frame(0x01, head)).await;
    ws.send_raw(&masked_frame(0x80, tail)).await;
    assert_eq!(ws.read_to_close().await, Some(1009));
}

#[tokio::test]
async fn a_larger_event_limit_makes_room_for_its_messages() {
    let server = server(|c| c.event_limits.max_payload_in_kb = 400.0).await;
    let (mut ws, _) = RawWs::connect_app(server.local_addr()).await;
    ws.send_raw(&masked_frame(0x81, &padded_ping(300 * 1024)))
        .await;
    assert_eq!(ws.next_json().await["event"], "pusher:pong");
}

#[tokio::test]
async fn a_message_begun_and_never_finished_closes_with_1008_whatever_the_pings() {
    const TIMEOUT: Duration = Duration::from_millis(600);
    let server = server(|c| c.websocket.message_timeout = TIMEOUT.as_millis() as u64).await;
    let addr = server.local_addr();
    let fragment = masked_frame(0x01, br#"{"event":"pusher:ping","#);
    let mut partial_frame = masked_frame(0x81, &padded_ping(1000));
    partial_frame.truncate(100);
    for (what, start) in [("fragments", fragment), ("a frame in part", partial_frame)] {
        let (mut ws, _) = RawWs::connect_app(addr).await;
        let started = Instant::now();
        ws.send_raw(&start).await;
        let pinger = async {
            // A ping goes between fragments; in the middle of a frame it would be a byte of it,
            // which extends nothing either.
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let ping = if what == "fragments" {
                    masked_frame(0x89, b"still here")
                } else {
                    vec![b'x']
                };
                if ws.try_send_raw(&ping).await.is_err() {
                    break;
                }
                if started.elapsed() > DEADLINE {
                    panic!("{what}: the connection stayed open past {DEADLINE:?}");
                }
            }
        };
        let _ = timeout(TIMEOUT + Duration::from_millis(300), pinger).await;
        let code = ws.read_to_close().await;
        assert_eq!(code, Some(1008), "{what}");
        assert!(
            started.elapsed() >= TIMEOUT,
            "{what}: closed after {:?}",
            started.elapsed()
        );
    }
}

async fn subscribe_raw(ws: &mut RawWs, channel: &str) -> Value {
    ws.send_text(&format!(
        r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#
    ))
    .await;
    ws.next_json().await
}

#[tokio::test]
async fn subscriptions_per_connection_are_capped_and_the_socket_stays_usable() {
    let server = server(|c| c.channel_limits.max_subscriptions_per_connection = 5).await;
    let (mut ws, _) = RawWs::connect_app(server.local_addr()).await;
    for i in 0..5 {
        ws.subscribe(&format!("news-{i}")).await;
    }
    let refused = subscribe_raw(&mut ws, "news-5").await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert!(
        refused["data"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of 5 subscriptions"),
        "{refused}"
    );
    ws.send_text(r#"{"event":"pusher:unsubscribe","data":{"channel":"news-0"}}"#)
        .await;
    ws.subscribe("news-5").await;
}

#[tokio::test]
async fn a_second_subscribe_to_a_channel_is_an_error_and_no_second_membership() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let (mut ws, socket_id) = RawWs::connect_app(addr).await;
    ws.subscribe("news").await;
    let again = subscribe_raw(&mut ws, "news").await;
    assert_eq!(again["event"], "pusher:error", "{again}");
    assert_eq!(
        again["data"]["message"], "Existing subscription to channel news",
        "{again}"
    );

    // A presence channel joined as alice, then again as bob with a valid signature.
    let channel = "presence-room";
    for user in ["alice", "bob"] {
        ws.send_text(&presence_subscribe(&socket_id, channel, user))
            .await;
        let answer = ws.next_json().await;
        let expected = if user == "alice" {
            "pusher_internal:subscription_succeeded"
        } else {
            "pusher:error"
        };
        assert_eq!(answer["event"], expected, "{user}: {answer}");
    }
    let (status, users) = support::api(
        addr,
        "GET",
        &format!("/apps/app-id/channels/{channel}/users"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(users["users"], serde_json::json!([{ "id": "alice" }]));
}

/// A signed subscribe to a presence channel as `user`.
fn presence_subscribe(socket_id: &str, channel: &str, user: &str) -> String {
    let channel_data = serde_json::json!({ "user_id": user }).to_string();
    let to_sign = auth::channel_string_to_sign(socket_id, channel, Some(&channel_data));
    let signature = auth::sign("app-key", "app-secret", &to_sign);
    serde_json::json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": signature, "channel_data": channel_data },
    })
    .to_string()
}

#[tokio::test]
async fn a_presence_user_id_over_the_limit_is_refused() {
    let server = server(|_| {}).await;
    let (mut ws, socket_id) = RawWs::connect_app(server.local_addr()).await;
    let long = "u".repeat(129);
    ws.send_text(&presence_subscribe(&socket_id, "presence-a", &long))
        .await;
    let refused = ws.next_json().await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert!(
        refused["data"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("user_id is over 128"),
        "{refused}"
    );
    let fits = "u".repeat(128);
    ws.send_text(&presence_subscribe(&socket_id, "presence-a", &fits))
        .await;
    let ok = ws.next_json().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
}

#[tokio::test]
async fn an_unsubscribe_from_a_channel_never_joined_is_answered() {
    let server = server(|_| {}).await;
    let (mut ws, _) = RawWs::connect_app(server.local_addr()).await;
    ws.send_text(r#"{"event":"pusher:unsubscribe","data":{"channel":"never"}}"#)
        .await;
    let answer = ws.next_json().await;
    assert_eq!(answer["event"], "pusher:error", "{answer}");
    assert_eq!(
        answer["data"]["message"],
        "No current subscription to channel never, or subscription in progress"
    );
}
