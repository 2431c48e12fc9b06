//! The frame around every payload on a pub/sub bus (Redis, NATS): its kind and the sending node, so
//! that a receiver can ignore its own frames and track liveness without decoding envelopes.
//!
//! Layout: one byte of kind, one byte of node id length, the node id, then the payload.

use bytes::{BufMut, Bytes, BytesMut};

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An envelope for the adapter.
    Message = 0,
    /// "I am alive."
    Heartbeat = 1,
    /// "I am leaving."
    Goodbye = 2,
}

/// A decoded frame, borrowing the received bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the frame carries.
    pub kind: Kind,
    /// The sending node.
    pub node_id: &'a str,
    /// The envelope, for messages.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The bytes of a frame.
    pub fn encode(kind: Kind, node_id: &str, payload: &[u8]) -> Bytes {
        // At most 255 bytes, cut where a character begins, so that the id stays UTF-8.
        let mut cut = node_id.len().min(255);
        while !node_id.is_char_boundary(cut) {
            cut -= 1;
        }
        let id = &node_id.as_bytes()[..cut];
        let mut out = BytesMut::with_capacity(2 + id.len() + payload.len());
        out.put_u8(kind as u8);
        out.put_u8(id.len() as u8);
        out.put_slice(id);
        out.put_slice(payload);
        out.freeze()
    }

    /// Reads a frame; `None` for bytes that are not one (another program on the channel).
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        let (&kind, rest) = bytes.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if rest.len() < len {
            return None;
        }
        let kind = match kind {
            0 => Kind::Message,
            1 => Kind::Heartbeat,
            2 => Kind::Goodbye,
            _ => return None,
        };
        let node_id = std::str::from_utf8(&rest[..len]).ok()?;
        Some(Self {
            kind,
            node_id,
            payload: &rest[len..],
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_frame_reads_back(
            kind in prop_oneof![Just(Kind::Message), Just(Kind::Heartbeat), Just(Kind::Goodbye)],
            node_id in "\\PC{0,300}",
            payload in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let bytes = Frame::encode(kind, &node_id, &payload);
            let frame = Frame::decode(&bytes).expect("a frame it wrote");
            prop_assert_eq!(frame.kind, kind);
            prop_assert!(node_id.starts_with(frame.node_id));
            prop_assert!(frame.node_id.len() <= 255);
            prop_assert!(frame.node_id.len() == node_id.len() || node_id.len() > 255);
            prop_assert_eq!(frame.payload, &payload[..]);
        }
    }

    #[test]
    fn round_trip_and_garbage() {
        let bytes = Frame::encode(Kind::Message, "node-1", b"payload");
        assert_eq!(
            Frame::decode(&bytes),
            Some(Frame {
                kind: Kind::Message,
                node_id: "node-1",
                payload: b"payload"
            })
        );
        let hb = Frame::encode(Kind::Heartbeat, "n", &[]);
        assert_eq!(Frame::decode(&hb).map(|f| f.kind), Some(Kind::Heartbeat));
        for garbage in [
            &b""[..],
            b"\x00",
            b"\x09\x00",
            b"\x00\x05ab",
            b"\x00\x02\xff\xfe",
        ] {
            assert_eq!(Frame::decode(garbage), None, "{garbage:?}");
        }
    }
}
