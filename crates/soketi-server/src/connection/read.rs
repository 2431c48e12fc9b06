//! Running a connection: the upgrade's split into a reading and a writing half, the session
//! it drives, and the loop that reads the client's frames until the connection closes.

use super::*;

/// Runs an upgraded connection until it closes.
pub(crate) async fn run(
    state: Arc<State>,
    io: Upgraded,
    app_key: String,
    protocol: Option<String>,
) {
    // A plain TCP socket is split without a lock, so that the flusher writes while the reader
    // waits; TLS streams share their state and go through a split that locks.
    // What the client sent after its upgrade request is copied out of hyper's read buffer, so
    // that the buffer is freed.
    let (mut reader, sink, pending): (Box<dyn AsyncRead + Send + Unpin>, Sink, Vec<u8>) =
        match io.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let (read, write) = parts.io.into_inner().into_split();
                (Box::new(read), Box::pin(write), parts.read_buf.to_vec())
            }
            Err(io) => {
                let (read, write) = tokio::io::split(TokioIo::new(io));
                (Box::new(read), Box::pin(write), Vec::new())
            }
        };
    let socket_id = SocketId::from_parts(rand::random(), rand::random());
    let key = state.next_connection_key();
    let conn = Connection::new(socket_id, sink, state.flushers.shard(key), &state);

    // The session's futures are boxed: they run briefly, and inline they would size the future
    // that every idle connection keeps.
    let session = Box::pin(Session::open(
        state.clone(),
        conn.clone(),
        &app_key,
        protocol.as_deref(),
    ))
    .await;
    let writer = write_loop(conn.clone());
    tokio::pin!(writer);
    match session {
        Some(mut session) => {
            state.connections.insert(key, conn.clone());
            {
                let reader = read_loop(&state, &conn, &mut reader, pending, &mut session);
                tokio::pin!(reader);
                tokio::select! {
                    () = &mut reader => {
                        conn.request_close(CloseRequest { frame: None, drain: true });
                        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut writer).await;
                    }
                    () = &mut writer => {
                        // The server closed the connection; give the client a moment to
                        // answer the close frame, then let go.
                        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut reader).await;
                    }
                }
            }
            Box::pin(session.close()).await;
            state.connections.remove(&key);
        }
        None => {
            // Refused at the door: the error and close frames are queued; write them out.
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut writer).await;
        }
    }
    // Whoever still holds the connection for a moment holds no socket.
    conn.out.lock().sink = None;
}

async fn read_loop(
    state: &State,
    conn: &Connection,
    reader: &mut (dyn AsyncRead + Send + Unpin),
    mut pending: Vec<u8>,
    session: &mut Session,
) {
    let mut frames = FrameReader::new(MAX_INBOUND_MESSAGE);
    loop {
        let mut at = 0;
        loop {
            let step = match frames.next(&pending[at..]) {
                Ok(Some(step)) => step,
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
            at += step.consumed;
            conn.touch(state.uptime_ms());
            let Some(message) = step.message else {
                continue;
            };
            match message {
                Incoming::Text(bytes) => {
                    conn.count_received(bytes.len());
                    match std::str::from_utf8(&bytes) {
                        Ok(text) => Box::pin(session.handle(text)).await,
                        Err(_) => session.reject_malformed("Text frames must be UTF-8."),
                    }
                }
                Incoming::Binary(bytes) => {
                    conn.count_received(bytes.len());
                    session.reject_malformed("Binary frames are not supported.");
                }
                // Pongs and close echoes go through the connection's queue, so that they
                // never interleave with a frame being written.
                Incoming::Ping(payload) => conn.send(ws::frame(Opcode::Pong, &payload)),
                Incoming::Pong => {}
                Incoming::Close(code) => {
                    let payload = code.map(u16::to_be_bytes);
                    conn.send(ws::frame(
                        Opcode::Close,
                        payload.as_ref().map_or(&[], |p| p),
                    ));
                    return;
                }
            }
            if conn.is_closing() {
                return;
            }
        }
        pending.drain(..at);
        if pending.is_empty() && pending.capacity() > READ_CHUNK {
            // Between messages an idle connection keeps no buffer.
            pending = Vec::new();
        }
        match poll_fn(|cx| read_some(&mut *reader, cx, &mut pending)).await {
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
