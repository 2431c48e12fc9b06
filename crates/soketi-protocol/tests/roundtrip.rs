//! What this crate writes, it reads back: frames (as a client masks and fragments them),
//! signed HTTP API queries, and channel and user signatures.

use proptest::prelude::*;
use soketi_protocol::http_auth::{self, HttpAuthError};
use soketi_protocol::ws::{self, FrameReader, Incoming, Opcode};
use soketi_protocol::{SocketId, auth};

/// `frame` as a client sends it: the mask bit set, the key after the length, the payload
/// masked with it.
fn masked(frame: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut out = frame[..header].to_vec();
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    out.extend(
        frame[header..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4]),
    );
    out
}

/// Reads every frame of `input`, which the test knows to be whole.
fn read_all(reader: &mut FrameReader, mut input: &[u8]) -> Vec<Incoming> {
    let mut messages = Vec::new();
    while !input.is_empty() {
        let step = reader
            .next(input)
            .expect("a valid stream")
            .expect("a whole frame");
        messages.extend(step.message);
        input = &input[step.consumed..];
    }
    messages
}

proptest! {
    #[test]
    fn a_masked_message_reads_back(
        payload in proptest::collection::vec(any::<u8>(), 0..70_000),
        key in any::<[u8; 4]>(),
        binary in any::<bool>(),
    ) {
        let opcode = if binary { Opcode::Binary } else { Opcode::Text };
        let input = masked(&ws::frame(opcode, &payload), key);
        let mut reader = FrameReader::new(1 << 20);
        let expected = if binary { Incoming::Binary(payload) } else { Incoming::Text(payload) };
        prop_assert_eq!(read_all(&mut reader, &input), vec![expected]);
        prop_assert!(!reader.in_message());
    }

    #[test]
    fn a_fragmented_message_with_pings_between_reads_back(
        payload in proptest::collection::vec(any::<u8>(), 1..4096),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ping in proptest::collection::vec(any::<u8>(), 0..125),
        key in any::<[u8; 4]>(),
    ) {
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(payload.len())).collect();
        at.push(0);
        at.push(payload.len());
        at.sort_unstable();
        at.dedup();
        let pieces: Vec<&[u8]> = at.windows(2).map(|w| &payload[w[0]..w[1]]).collect();
        let mut input = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let mut frame = ws::frame(Opcode::Text, piece).to_vec();
            // Opcode 0 continues a message; FIN only on the last piece.
            frame[0] = (if i + 1 == pieces.len() { 0x80 } else { 0 }) | if i == 0 { 0x1 } else { 0x0 };
            input.extend(masked(&frame, key));
            if i == 0 {
                input.extend(masked(&ws::frame(Opcode::Ping, &ping), key));
            }
        }
        // The ping follows the first piece: inside the message, or after it when it is whole.
        let whole = pieces.len() == 1;
        let expected = if whole {
            vec![Incoming::Text(payload), Incoming::Ping(ping)]
        } else {
            vec![Incoming::Ping(ping), Incoming::Text(payload)]
        };
        let mut reader = FrameReader::new(1 << 20);
        prop_assert_eq!(read_all(&mut reader, &input), expected);
    }

    #[test]
    fn a_signed_query_verifies_and_a_changed_one_does_not(
        params in proptest::collection::vec(("[a-z_]{1,12}", "\\PC{0,20}"), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..256),
        which in any::<prop::sample::Index>(),
        now in 1_600_000_000u64..2_000_000_000,
    ) {
        // Parameters of the signature's own names are the signer's to add.
        let params: Vec<(String, String)> = params
            .into_iter()
            .filter(|(k, _)| !k.starts_with("auth_") && k != "body_md5")
            .collect();
        let (method, path) = ("POST", "/apps/42/events");
        let query = http_auth::sign(method, path, &params, &body, "key", "secret", now);
        prop_assert_eq!(
            http_auth::verify_query(method, path, &query, "key", "secret", now + 5),
            Ok(())
        );
        prop_assert_eq!(http_auth::verify_body(&query, &body), Ok(()));

        let mut changed = query.clone();
        let i = which.index(changed.len());
        changed[i].1.push('x');
        let verdict = http_auth::verify_query(method, path, &changed, "key", "secret", now);
        prop_assert!(verdict.is_err(), "{:?} still verifies", changed[i]);
        let mut other_body = body.clone();
        other_body.push(b'!');
        prop_assert_eq!(
            http_auth::verify_body(&query, &other_body),
            Err(HttpAuthError::BodyMd5Mismatch)
        );
    }

    #[test]
    fn a_channel_signature_verifies_for_its_socket_only(
        a in any::<u64>(), b in any::<u64>(),
        channel in "[a-z-]{1,30}",
        data in proptest::option::of("\\PC{0,40}"),
    ) {
        let socket = SocketId::from_parts(a, b);
        let other = SocketId::from_parts(a, b.wrapping_add(1));
        let signed = auth::channel_string_to_sign(socket.as_str(), &channel, data.as_deref());
        let token = auth::sign("key", "secret", &signed);
        prop_assert!(auth::verify(&token, "key", "secret", &signed).is_ok());
        let for_other = auth::channel_string_to_sign(other.as_str(), &channel, data.as_deref());
        prop_assert!(auth::verify(&token, "key", "secret", &for_other).is_err());
    }
}
