//! Reading of client-to-server frames (RFC 6455, section 5), without I/O.
//!
//! The caller keeps the bytes it has read and hands them to [`FrameReader::next`], which
//! returns one [`Step`] per frame: how many bytes the frame took and, once a message is whole,
//! the message. Fragments of a data message are joined here; control frames may come between
//! them, as the RFC allows. Nothing is kept between messages, so an idle connection holds no
//! buffer.

#[cfg(test)]
mod tests;

/// A message from the client, unmasked and whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message; its bytes are not yet checked to be UTF-8.
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame: its status code, if it had one.
    Close(Option<u16>),
}

/// One frame read: the bytes it took, and the message it completed, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// How many bytes of the input the frame took.
    pub consumed: usize,
    /// The message the frame completed; `None` for a fragment that is not the last.
    pub message: Option<Incoming>,
}

/// Why the client's bytes are not a valid WebSocket stream. Each maps to a close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A client frame without a mask.
    #[error("client frames must be masked")]
    Unmasked,
    /// A reserved bit is set, while no extension was agreed.
    #[error("reserved bits are set")]
    ReservedBits,
    /// An opcode the RFC does not define.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    #[error("control frames must be whole and at most 125 bytes")]
    BadControlFrame,
    /// A continuation frame with no message to continue, or a new message before the last one
    /// ended.
    #[error("fragments out of order")]
    BadFragments,
    /// A close frame whose payload is one byte, or whose code may not be sent.
    #[error("invalid close frame")]
    BadClose,
    /// A message longer than the limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
}

impl FrameError {
    /// The close code that answers this error: 1009 for a message too large, 1002 otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooLarge(_) => 1009,
            _ => 1002,
        }
    }
}

/// Reads client frames and joins fragmented messages.
#[derive(Debug)]
pub struct FrameReader {
    max_message: usize,
    /// The fragments of a data message received so far: whether it is text, and its bytes.
    fragments: Option<(bool, Vec<u8>)>,
}

impl FrameReader {
    /// A reader that refuses messages longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            fragments: None,
        }
    }

    /// Whether a fragmented message has begun and is not complete yet.
    pub fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// Reads the frame at the start of `input`. Returns `Ok(None)` when `input` does not yet
    /// hold a whole frame; a frame whose announced length is over the limit is refused before
    /// its payload arrives.
    pub fn next(&mut self, input: &[u8]) -> Result<Option<Step>, FrameError> {
        let [first, second, ..] = *input else {
            return Ok(None);
        };
        let fin = first & 0x80 != 0;
        if first & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        let opcode = first & 0x0f;
        if second & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        let (len, header) = match second & 0x7f {
            126 => match input.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match input.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    (u64::from_be_bytes(be), 10)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        let is_control = opcode & 0x08 != 0;
        match opcode {
            0x0..=0x2 | 0x8..=0xa => {}
            other => return Err(FrameError::UnknownOpcode(other)),
        }
        if is_control && (!fin || len > 125) {
            return Err(FrameError::BadControlFrame);
        }
        let so_far = self.fragments.as_ref().map_or(0, |(_, bytes)| bytes.len());
        let limit = self.max_message.saturating_sub(so_far);
        if !is_control && len > limit as u64 {
            return Err(FrameError::TooLarge(self.max_message));
        }
        // The length fits in usize: it is at most the limit, or 125.
        let len = len as usize;
        let start = header + 4;
        let Some(masked) = input.get(start..start + len) else {
            return Ok(None);
        };
        let mask = [
            input[header],
            input[header + 1],
            input[header + 2],
            input[header + 3],
        ];
        let payload: Vec<u8> = masked
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i & 3])
            .collect();
        let message = self.complete(opcode, fin, payload)?;
        Ok(Some(Step {
            consumed: start + len,
            message,
        }))
    }

    fn complete(
        &mut self,
        opcode: u8,
        fin: bool,
        payload: Vec<u8>,
    ) -> Result<Option<Incoming>, FrameError> {
        let data = |text: bool, bytes: Vec<u8>| {
            if text {
                Incoming::Text(bytes)
            } else {
                Incoming::Binary(bytes)
            }
        };
        match opcode {
            0x0 => {
                let Some((text, mut bytes)) = self.fragments.take() else {
                    return Err(FrameError::BadFragments);
                };
                bytes.extend_from_slice(&payload);
                if fin {
                    Ok(Some(data(text, bytes)))
                } else {
                    self.fragments = Some((text, bytes));
                    Ok(None)
                }
            }
            0x1 | 0x2 => {
                if self.fragments.is_some() {
                    return Err(FrameError::BadFragments);
                }
                if fin {
                    Ok(Some(data(opcode == 0x1, payload)))
                } else {
                    self.fragments = Some((opcode == 0x1, payload));
                    Ok(None)
                }
            }
            0x8 => close_code(&payload).map(|code| Some(Incoming::Close(code))),
            0x9 => Ok(Some(Incoming::Ping(payload))),
            _ => Ok(Some(Incoming::Pong)),
        }
    }
}

/// The status code of a close frame's payload, checked against the codes a peer may send
/// (RFC 6455, section 7.4).
fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::BadClose),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed || std::str::from_utf8(reason).is_err() {
                return Err(FrameError::BadClose);
            }
            Ok(Some(code))
        }
    }
}
