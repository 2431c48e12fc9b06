//! The WebSocket framing a client may use: frames sent with the upgrade request, fragments with
//! a ping between them, pings, the close handshake, and frames that break RFC 6455.

mod support;

use support::{RawWs, masked_frame, server};

const SUBSCRIBE: &[u8] = br#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#;

#[tokio::test]
async fn a_subscribe_sent_with_the_upgrade_request_is_read() {
    let server = server(|_| {}).await;
    let early = masked_frame(0x81, SUBSCRIBE);
    let mut ws =
        RawWs::connect_sending(server.local_addr(), "/app/app-key?protocol=7", &early).await;
    assert_eq!(
        ws.next_json().await["event"],
        "pusher:connection_established"
    );
    let ok = ws.next_json().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    assert_eq!(ok["channel"], "news");
}

#[tokio::test]
async fn fragments_join_and_a_ping_between_them_gets_its_pong() {
    let server = server(|_| {}).await;
    let (mut ws, _) = RawWs::connect_app(server.local_addr()).await;
    let (head, tail) = SUBSCRIBE.split_at(20);
    let mut bytes = masked_frame(0x01, head);
    bytes.extend(masked_frame(0x89, b"are you there"));
    bytes.extend(masked_frame(0x80, tail));
    ws.send_raw(&bytes).await;

    let pong = ws.next_frame().await.expect("a pong");
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (0xA, &b"are you there"[..])
    );
    let ok = ws.next_json().await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
}

#[tokio::test]
async fn a_client_close_is_answered_and_the_socket_closed() {
    let server = server(|_| {}).await;
    let (mut ws, _) = RawWs::connect_app(server.local_addr()).await;
    ws.send_raw(&masked_frame(0x88, &1000u16.to_be_bytes()))
        .await;
    assert_eq!(ws.read_to_close().await, Some(1000));
}

#[tokio::test]
async fn frames_that_break_the_rfc_close_the_connection_with_its_code() {
    let server = server(|_| {}).await;
    let addr = server.local_addr();
    let unmasked = {
        let mut frame = vec![0x81, SUBSCRIBE.len() as u8];
        frame.extend_from_slice(SUBSCRIBE);
        frame
    };
    let too_large = {
        // Announces 2 MiB; refused from the header, before any payload.
        let mut frame = vec![0x81, 0x80 | 127];
        frame.extend_from_slice(&(2u64 << 20).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame
    };
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("an unmasked frame", unmasked, 1002),
        ("a reserved bit", masked_frame(0xc1, SUBSCRIBE), 1002),
        ("an unknown opcode", masked_frame(0x83, b"x"), 1002),
        ("a message over 1 MiB", too_large, 1009),
    ];
    for (what, bytes, code) in cases {
        let (mut ws, _) = RawWs::connect_app(addr).await;
        ws.send_raw(&bytes).await;
        assert_eq!(ws.read_to_close().await, Some(code), "{what}");
    }
    // The server goes on serving others.
    let (mut ws, _) = RawWs::connect_app(addr).await;
    ws.subscribe("news").await;
}
