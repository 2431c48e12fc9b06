//! Socket ids: two decimal numbers joined by a dot, unique per connection.

use std::fmt;
use std::sync::Arc;

use crate::error::ProtocolError;

/// The id of one WebSocket connection, as `"{a}.{b}"`. Cloning is a reference count, since
/// the id is a key in every channel the connection joins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(Arc<str>);

impl SocketId {
    /// Builds an id from two random numbers; the caller supplies the randomness.
    pub fn from_parts(a: u64, b: u64) -> Self {
        // Pusher's ids are two numbers below 10^10; keep the same shape so that clients which
        // parse them see nothing new.
        const MAX: u64 = 10_000_000_000;
        SocketId(format!("{}.{}", a % MAX, b % MAX).into())
    }

    /// Checks a socket id received from outside (an HTTP `socket_id`, a signature input).
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        if is_valid(s) {
            Ok(SocketId(s.into()))
        } else {
            Err(ProtocolError::InvalidSocketId(s.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is two non-empty runs of ASCII digits joined by one dot.
pub fn is_valid(s: &str) -> bool {
    match s.split_once('.') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.len() <= 20
                && b.len() <= 20
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        for (s, ok) in [
            ("123.456", true),
            ("1.2", true),
            ("123", false),
            (".1", false),
            ("1.", false),
            ("1.2.3", false),
            ("a.1", false),
            ("1.2 ", false),
            ("", false),
        ] {
            assert_eq!(is_valid(s), ok, "{s:?}");
        }
        let id = SocketId::from_parts(123_456_789_012, 7);
        assert_eq!(id.as_str(), "3456789012.7");
        assert!(is_valid(id.as_str()));
    }
}
