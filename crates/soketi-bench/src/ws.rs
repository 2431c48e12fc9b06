//! A minimal WebSocket client, written for cost rather than generality: the load generator must
//! read hundreds of thousands of small frames per second on one core.
//!
//! Reads go into one scratch buffer per thread, so an idle connection holds no read buffer; only
//! a frame split across reads is copied into the connection's own `pending` bytes. Frames from
//! the server are unmasked; frames to it are masked, as RFC 6455 requires.

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::future::poll_fn;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Poll, ready};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use crate::error::WsError;

/// Bytes of the per-thread read buffer.
const SCRATCH_LEN: usize = 64 * 1024;

/// The largest message this client accepts, far above any Pusher frame.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Opcode of a text frame.
pub(crate) const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// One open WebSocket connection to a Pusher server, past `pusher:connection_established`.
pub(crate) struct Client {
    stream: TcpStream,
    /// Received bytes of a frame that is not complete yet.
    pending: Vec<u8>,
    /// The parts so far of a fragmented message.
    fragments: Vec<u8>,
    /// Pongs owed for pings read but not answered yet.
    pongs: Vec<Vec<u8>>,
    mask: u32,
    /// The id the server gave this connection.
    pub(crate) socket_id: String,
}

/// Where to connect and as whom.
pub(crate) struct Dial<'a> {
    pub(crate) server: SocketAddr,
    pub(crate) source: Option<Ipv4Addr>,
    pub(crate) key: &'a str,
    pub(crate) deadline: Duration,
}

impl Client {
    /// Opens a TCP connection (from `source` when given, so that many connections do not exhaust
    /// one address's ephemeral ports), upgrades it and reads `pusher:connection_established`.
    pub(crate) async fn connect(dial: &Dial<'_>) -> Result<Self, WsError> {
        let socket = TcpSocket::new_v4()?;
        if let Some(source) = dial.source {
            socket.bind(SocketAddr::new(source.into(), 0))?;
        }
        let stream = timeout(dial.deadline, socket.connect(dial.server))
            .await
            .map_err(|_| WsError::Timeout("the TCP connection"))??;
        stream.set_nodelay(true)?;
        let mut client = Self {
            stream,
            pending: Vec::new(),
            fragments: Vec::new(),
            pongs: Vec::new(),
            mask: 0x9e37_79b9,
            socket_id: String::new(),
        };
        timeout(dial.deadline, client.upgrade(dial))
            .await
            .map_err(|_| WsError::Timeout("the upgrade"))??;
        let hello = timeout(dial.deadline, client.next_text())
            .await
            .map_err(|_| WsError::Timeout("pusher:connection_established"))??;
        client.socket_id = socket_id(&hello)?;
        Ok(client)
    }

    async fn upgrade(&mut self, dial: &Dial<'_>) -> Result<(), WsError> {
        let request = format!(
            "GET /app/{}?protocol=7&client=soketi-bench&version=0.1.0 HTTP/1.1\r\nHost: {}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c29rZXRpLWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            dial.key, dial.server
        );
        self.stream.write_all(request.as_bytes()).await?;
        loop {
            if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                self.pending.drain(..end + 4);
                let status = head.lines().next().unwrap_or_default();
                if status.split(' ').nth(1) != Some("101") {
                    return Err(WsError::Refused(status.to_owned()));
                }
                return Ok(());
            }
            if self.pending.len() > 16 * 1024 {
                return Err(WsError::Refused("an answer head over 16 KiB".into()));
            }
            self.pending.reserve(4096);
            if self.stream.read_buf(&mut self.pending).await? == 0 {
                return Err(WsError::Closed);
            }
        }
    }

    /// Sends one masked text frame.
    pub(crate) async fn send_text(&mut self, text: &[u8]) -> Result<(), WsError> {
        self.mask = self
            .mask
            .wrapping_mul(0x0101_0101)
            .wrapping_add(0x6f4a_7c15);
        let frame = encode_masked(TEXT, text, self.mask.to_be_bytes());
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// Waits for bytes, then calls `on_message` with the opcode and payload of every whole message
    /// they complete, in order. Pings are answered after the call; a close frame ends the stream.
    pub(crate) async fn read_messages(
        &mut self,
        on_message: &mut impl FnMut(u8, &[u8]),
    ) -> Result<(), WsError> {
        self.read_once(on_message).await?;
        for payload in std::mem::take(&mut self.pongs) {
            self.mask = self.mask.rotate_left(7) ^ 0x5bd1_e995;
            let frame = encode_masked(PONG, &payload, self.mask.to_be_bytes());
            self.stream.write_all(&frame).await?;
        }
        Ok(())
    }

    async fn read_once(&mut self, on_message: &mut impl FnMut(u8, &[u8])) -> Result<(), WsError> {
        if !self.pending.is_empty() {
            // Whole frames may wait from an earlier read (see `next_text`).
            let mut sink = Sink {
                fragments: &mut self.fragments,
                pongs: &mut self.pongs,
            };
            let used = sink.parse_all(&self.pending, on_message)?;
            if used > 0 {
                self.pending.drain(..used);
                return Ok(());
            }
        }
        if self.pending.len() >= SCRATCH_LEN / 2 {
            // A large message in progress: read straight into its own buffer.
            self.pending.reserve(SCRATCH_LEN);
            if self.stream.read_buf(&mut self.pending).await? == 0 {
                return Err(WsError::Closed);
            }
            let mut sink = Sink {
                fragments: &mut self.fragments,
                pongs: &mut self.pongs,
            };
            let used = sink.parse_all(&self.pending, on_message)?;
            self.pending.drain(..used);
            return Ok(());
        }
        let Self {
            stream,
            pending,
            fragments,
            pongs,
            ..
        } = self;
        poll_fn(|cx| {
            SCRATCH.with_borrow_mut(|scratch| {
                let kept = pending.len();
                scratch[..kept].copy_from_slice(pending);
                let mut buf = ReadBuf::new(&mut scratch[kept..]);
                ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
                let read = buf.filled().len();
                if read == 0 {
                    return Poll::Ready(Err(WsError::Closed));
                }
                let total = kept + read;
                let mut sink = Sink {
                    fragments: &mut *fragments,
                    pongs: &mut *pongs,
                };
                let used = sink.parse_all(&scratch[..total], on_message)?;
                pending.clear();
                pending.extend_from_slice(&scratch[used..total]);
                Poll::Ready(Ok(()))
            })
        })
        .await
    }

    /// The next text message, skipping others.
    pub(crate) async fn next_text(&mut self) -> Result<Vec<u8>, WsError> {
        loop {
            let mut found = None;
            let mut rest = Vec::new();
            self.read_messages(&mut |opcode, payload| {
                if opcode == TEXT {
                    if found.is_none() {
                        found = Some(payload.to_vec());
                    } else {
                        rest.push(payload.to_vec());
                    }
                }
            })
            .await?;
            if let Some(text) = found {
                // Messages that came in the same read wait in `pending` again, re-encoded, so
                // that the next read returns them first. This happens only during set-up.
                if !rest.is_empty() {
                    let mut again = Vec::new();
                    for payload in rest {
                        again.extend_from_slice(&encode_unmasked(TEXT, &payload));
                    }
                    again.extend_from_slice(&self.pending);
                    self.pending = again;
                }
                return Ok(text);
            }
        }
    }
}

/// Where parsed frames go besides the caller: fragments being joined and pings to answer.
struct Sink<'a> {
    fragments: &'a mut Vec<u8>,
    pongs: &'a mut Vec<Vec<u8>>,
}

impl Sink<'_> {
    /// Parses every whole frame at the start of `buf`; returns how many bytes they took.
    fn parse_all(
        &mut self,
        buf: &[u8],
        on_message: &mut impl FnMut(u8, &[u8]),
    ) -> Result<usize, WsError> {
        let mut at = 0;
        while let Some(frame) = parse_frame(&buf[at..])? {
            at += frame.len;
            match frame.opcode {
                TEXT | BINARY if frame.fin => on_message(frame.opcode, frame.payload),
                TEXT | BINARY => {
                    self.fragments.clear();
                    self.fragments.push(frame.opcode);
                    self.fragments.extend_from_slice(frame.payload);
                }
                CONTINUATION => {
                    if self.fragments.is_empty() {
                        return Err(WsError::Frame("a continuation without a first fragment"));
                    }
                    if self.fragments.len() + frame.payload.len() > MAX_MESSAGE {
                        return Err(WsError::Frame("a message over 16 MiB"));
                    }
                    self.fragments.extend_from_slice(frame.payload);
                    if frame.fin {
                        let message = std::mem::take(self.fragments);
                        on_message(message[0], &message[1..]);
                    }
                }
                PING => self.pongs.push(frame.payload.to_vec()),
                PONG => {}
                CLOSE => return Err(WsError::Closed),
                _ => return Err(WsError::Frame("an unknown opcode")),
            }
        }
        Ok(at)
    }
}

/// One frame parsed in place.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    pub(crate) payload: &'a [u8],
    /// Bytes of header and payload.
    pub(crate) len: usize,
}

/// The frame at the start of `buf`, `None` if it is not whole yet.
pub(crate) fn parse_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, WsError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err(WsError::Frame("a masked frame from the server"));
    }
    let (len, header) = match second & 0x7f {
        126 => match buf.get(2..4) {
            Some(bytes) => (usize::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(bytes) => {
                let mut array = [0u8; 8];
                array.copy_from_slice(bytes);
                let len = u64::from_be_bytes(array);
                if len > MAX_MESSAGE as u64 {
                    return Err(WsError::Frame("a frame over 16 MiB"));
                }
                (len as usize, 10)
            }
            None => return Ok(None),
        },
        short => (usize::from(short), 2),
    };
    let Some(payload) = buf.get(header..header + len) else {
        return Ok(None);
    };
    Ok(Some(Frame {
        fin: first & 0x80 != 0,
        opcode: first & 0x0f,
        payload,
        len: header + len,
    }))
}

/// A client frame: FIN, `opcode`, masked with `mask`.
pub(crate) fn encode_masked(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    push_len(&mut frame, payload.len(), 0x80);
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, mask)| byte ^ mask),
    );
    frame
}

fn encode_unmasked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | opcode);
    push_len(&mut frame, payload.len(), 0);
    frame.extend_from_slice(payload);
    frame
}

fn push_len(frame: &mut Vec<u8>, len: usize, mask_bit: u8) {
    if len < 126 {
        frame.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        frame.push(mask_bit | 126);
        frame.extend_from_slice(&short.to_be_bytes());
    } else {
        frame.push(mask_bit | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// The socket id in a `pusher:connection_established` message.
fn socket_id(hello: &[u8]) -> Result<String, WsError> {
    let unexpected = || WsError::Unexpected(String::from_utf8_lossy(hello).into_owned());
    let message: Value = serde_json::from_slice(hello).map_err(|_| unexpected())?;
    if message["event"] != "pusher:connection_established" {
        return Err(unexpected());
    }
    // `data` is a JSON string holding JSON, as the protocol sends it.
    let data: Value = match &message["data"] {
        Value::String(text) => serde_json::from_str(text).map_err(|_| unexpected())?,
        other => other.clone(),
    };
    data["socket_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(unexpected)
}

/// The index of the first `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
