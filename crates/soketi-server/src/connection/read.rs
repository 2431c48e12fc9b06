//! Reading a connection: the upgrade's split into a reading and a writing half, and the loop
//! that reads the client's frames until the connection closes, handing each message to a
//! [`Handler`].

use std::future::Future;

use super::*;

/// What a connection's messages go to: the session of the Pusher protocol.
pub(crate) trait Handler {
    /// Acts on one text frame. The future is boxed: it runs briefly, and inline it would size
    /// the future that every idle connection keeps.
    fn text<'a>(&'a mut self, text: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// Answers a frame that cannot be read as a message, leaving the connection open.
    fn reject(&self, why: &str);

    /// The largest message the client may send; a larger one closes the connection (1009).
    fn max_message_bytes(&self) -> usize;
}

/// The reading half of a socket.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Splits an upgraded connection into its reading and writing halves, and what the client sent
/// after its upgrade request.
pub(crate) fn split(io: Upgraded) -> (Reader, Sink, Vec<u8>) {
    // A plain TCP socket is split without a lock, so that the flusher writes while the reader
    // waits; TLS streams share their state and go through a split that locks.
    // What the client sent after its upgrade request is copied out of hyper's read buffer, so
    // that the buffer is freed.
    match io.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (read, write) = parts.io.into_inner().into_split();
            (Box::new(read), Box::pin(write), parts.read_buf.to_vec())
        }
        Err(io) => {
            let (read, write) = tokio::io::split(TokioIo::new(io));
            (Box::new(read), Box::pin(write), Vec::new())
        }
    }
}

/// Reads the client's frames, starting with `pending`, until the connection closes; `now_ms`
/// is the server's clock, for the activity check. A message the client has begun (a frame in
/// part, or fragments) must be complete within `message_timeout`, whatever else it sends
/// meanwhile; the connection is closed with 1008 otherwise.
pub(crate) async fn read_loop(
    conn: &Connection,
    now_ms: impl Fn() -> u64,
    message_timeout: Duration,
    reader: &mut (dyn AsyncRead + Send + Unpin),
    mut pending: Vec<u8>,
    handler: &mut impl Handler,
) {
    let mut frames = FrameReader::new(handler.max_message_bytes());
    // When the message being received began, while one is.
    let mut begun: Option<tokio::time::Instant> = None;
    loop {
        let mut at = 0;
        loop {
            if conn.is_closing() {
                return;
            }
            // Taken apart at once, and everything but a text message's bytes handled before
            // the await: what lives across it sizes the future every connection keeps.
            let (consumed, message) = match frames.next(&pending[at..]) {
                Ok(Some(step)) => (step.consumed, step.message),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "closing a connection after a WebSocket error");
                    conn.request_close(CloseRequest {
                        frame: Some((CloseCode(e.close_code()), e.to_string())),
                        drain: true,
                    });
                    return;
                }
            };
            at += consumed;
            conn.touch(now_ms());
            let text = match message {
                None => continue,
                Some(Incoming::Text(bytes)) => bytes,
                Some(Incoming::Binary(bytes)) => {
                    conn.count_received(bytes.len());
                    handler.reject("Binary frames are not supported.");
                    continue;
                }
                // Pongs and close echoes go through the connection's queue, so that they
                // never interleave with a frame being written.
                Some(Incoming::Ping(payload)) => {
                    conn.send(ws::frame(Opcode::Pong, &payload));
                    continue;
                }
                Some(Incoming::Pong) => continue,
                Some(Incoming::Close(code)) => {
                    let payload = code.map(u16::to_be_bytes);
                    conn.send(ws::frame(
                        Opcode::Close,
                        payload.as_ref().map_or(&[], |p| p),
                    ));
                    return;
                }
            };
            conn.count_received(text.len());
            match std::str::from_utf8(&text) {
                Ok(text) => handler.text(text).await,
                Err(_) => handler.reject("Text frames must be UTF-8."),
            }
        }
        pending.drain(..at);
        if pending.is_empty() && pending.capacity() > READ_CHUNK {
            // Between messages an idle connection keeps no buffer.
            pending = Vec::new();
        }
        let unfinished = !pending.is_empty() || frames.in_message();
        begun = unfinished.then(|| begun.unwrap_or_else(tokio::time::Instant::now));
        let read = poll_fn(|cx| read_some(&mut *reader, cx, &mut pending));
        let read = match begun {
            None => read.await,
            // Boxed: the timer is needed only while a message is unfinished, and inline it
            // would size the future that every idle connection keeps.
            Some(begun) => match Box::pin(tokio::time::timeout_at(begun + message_timeout, read))
                .await
            {
                Ok(read) => read,
                Err(_) => {
                    tracing::debug!("closing a connection whose message did not complete in time");
                    conn.request_close(CloseRequest {
                        frame: Some((
                            CloseCode::POLICY_VIOLATION,
                            "The message was not completed in time.".into(),
                        )),
                        drain: true,
                    });
                    return;
                }
            },
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads what the socket holds, up to [`READ_CHUNK`] bytes, onto the end of `pending`. The
/// chunk lives on the stack for the one poll, not in the connection.
fn read_some(
    reader: &mut (dyn AsyncRead + Send + Unpin),
    cx: &mut Context<'_>,
    pending: &mut Vec<u8>,
) -> Poll<io::Result<usize>> {
    let mut chunk = [0u8; READ_CHUNK];
    let mut buf = ReadBuf::new(&mut chunk);
    ready!(Pin::new(reader).poll_read(cx, &mut buf))?;
    pending.extend_from_slice(buf.filled());
    Poll::Ready(Ok(buf.filled().len()))
}
