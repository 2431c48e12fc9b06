//! WebSocket framing (RFC 6455, section 5.2): server-to-client frames, and the reading of
//! client frames ([`FrameReader`]).
//!
//! A server's frames are never masked, so the bytes of one event are the same for every
//! subscriber: they are built once per publish and shared as [`Bytes`].

mod reader;

pub use reader::{FrameError, FrameReader, Incoming, Step};

use bytes::{BufMut, Bytes, BytesMut};

/// Frame opcodes the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// A UTF-8 text frame.
    Text = 0x1,
    /// A binary frame.
    Binary = 0x2,
    /// A close frame.
    Close = 0x8,
    /// A ping.
    Ping = 0x9,
    /// A pong.
    Pong = 0xA,
}

/// One complete, unfragmented frame with `payload`.
pub fn frame(opcode: Opcode, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(0x80 | opcode as u8);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
    out.freeze()
}

/// A text frame.
pub fn text(payload: &[u8]) -> Bytes {
    frame(Opcode::Text, payload)
}

/// A close frame with `code` and a reason, cut to the 123 bytes a control frame allows.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    frame(Opcode::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(&text(b"hi")[..], b"\x81\x02hi");
        let f = text(&[b'a'; 126]);
        assert_eq!(&f[..4], &[0x81, 126, 0, 126]);
        assert_eq!(f.len(), 130);
        let f = text(&vec![b'a'; 70_000]);
        assert_eq!(&f[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(f.len(), 70_010);
    }

    #[test]
    fn close_frames() {
        assert_eq!(&close(4001, "x")[..], b"\x88\x03\x0f\xa1x");
        let long = "é".repeat(100);
        let f = close(4000, &long);
        assert_eq!(f[1] as usize, f.len() - 2);
        assert!(f.len() - 2 <= 125);
    }
}
