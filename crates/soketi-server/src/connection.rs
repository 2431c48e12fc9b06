//! One WebSocket connection: its outbound queue and writer, and the reading of its frames.
//!
//! Each connection runs as one task that drives two futures: the reader, which parses frames
//! and acts on them, and the writer, which drains a queue of already-encoded frames into the
//! socket. Publishing only queues; a connection whose queue holds more than
//! `max_backpressure` bytes is closed with 4100 instead of growing without bound.
//!
//! A connection counts the messages it receives and queues into its app's metrics, through the
//! [`AppMetrics`] handle it gets once its app accepted it.

#[cfg(test)]
mod tests;

use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{FragmentCollectorRead, OpCode, Role, WebSocketError};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use soketi_channels::Outbox;
use soketi_protocol::ws::{self, Opcode};
use soketi_protocol::{CloseCode, SocketId, message};
use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{Notify, mpsc};

use crate::metrics::AppMetrics;
use crate::session::Session;
use crate::state::{Counters, State};

/// Bytes counted for each queued frame on top of its length, so that a flood of tiny frames
/// is bounded too.
const FRAME_OVERHEAD: usize = 64;

/// The largest frame a client may send. Client events are limited to 100 KB by default; a
/// frame beyond this is a protocol violation and closes the connection.
const MAX_INBOUND_MESSAGE: usize = 1024 * 1024;

/// How long a closing connection waits for its last frames to be written.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

struct CloseRequest {
    /// The close code and reason to send, or `None` when the client closed first.
    frame: Option<(CloseCode, String)>,
    /// Whether queued frames go out before the close frame.
    drain: bool,
}

/// The server's handle on one connection; what the registry holds.
pub(crate) struct Connection {
    socket_id: SocketId,
    tx: mpsc::UnboundedSender<Bytes>,
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    counters: Arc<Counters>,
    /// The app's metrics, set once the app accepted the connection; frames queued before that
    /// (a refusal) belong to no app and are not counted.
    metrics: OnceLock<AppMetrics>,
    close: OnceLock<CloseRequest>,
    wake_writer: Notify,
    last_seen_ms: AtomicU64,
    pinged_at_ms: AtomicU64,
    /// When a connection that must sign in is closed if it has not; 0 when it need not.
    sign_in_deadline_ms: AtomicU64,
}

impl Connection {
    fn new(
        socket_id: SocketId,
        max_queued_bytes: usize,
        counters: Arc<Counters>,
        now_ms: u64,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Self {
            socket_id,
            tx,
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes,
            counters,
            metrics: OnceLock::new(),
            close: OnceLock::new(),
            wake_writer: Notify::new(),
            last_seen_ms: AtomicU64::new(now_ms),
            pinged_at_ms: AtomicU64::new(0),
            sign_in_deadline_ms: AtomicU64::new(0),
        });
        (conn, rx)
    }

    /// Queues the JSON text of one Pusher frame.
    pub(crate) fn send_json(&self, json: &str) {
        self.send(ws::text(json.as_bytes()));
    }

    /// Sends `pusher:error` and closes with the same code (`close` sends the error).
    pub(crate) fn fail(&self, code: CloseCode, message: &str) {
        self.close(code, message);
    }

    /// Counts what this connection sends and receives from now on into `metrics`.
    pub(crate) fn attach_metrics(&self, metrics: AppMetrics) {
        // Set once, by `Session::open`; a second call would be a bug, and keeping the first
        // handle is the harmless outcome.
        let _ = self.metrics.set(metrics);
    }

    /// Counts a message the client sent.
    fn count_received(&self, payload_len: usize) {
        if let Some(metrics) = self.metrics.get() {
            metrics.ws_received(payload_len);
        }
    }

    fn request_close(&self, request: CloseRequest) {
        if self.close.set(request).is_ok() {
            self.wake_writer.notify_one();
        }
    }

    fn is_closing(&self) -> bool {
        self.close.get().is_some()
    }

    /// Notes that the client sent something.
    fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
        self.pinged_at_ms.store(0, Ordering::Relaxed);
    }

    /// Pings a client quiet for `activity_ms`, and closes one that stayed quiet for `pong_ms`
    /// after the ping.
    pub(crate) fn check_activity(&self, now_ms: u64, activity_ms: u64, pong_ms: u64) {
        let pinged = self.pinged_at_ms.load(Ordering::Relaxed);
        if pinged != 0 {
            if now_ms.saturating_sub(pinged) >= pong_ms {
                self.close(
                    CloseCode::PONG_NOT_RECEIVED,
                    "Pong reply not received in time.",
                );
            }
        } else if now_ms.saturating_sub(self.last_seen_ms.load(Ordering::Relaxed)) >= activity_ms {
            self.pinged_at_ms.store(now_ms.max(1), Ordering::Relaxed);
            self.send_json(&message::ping());
        }
    }
}

impl Connection {
    /// Requires a sign-in by `deadline_ms` (server uptime), or clears the requirement with 0.
    pub(crate) fn set_sign_in_deadline(&self, deadline_ms: u64) {
        self.sign_in_deadline_ms
            .store(deadline_ms, Ordering::Relaxed);
    }

    /// Closes a connection that had to sign in and did not, in time.
    pub(crate) fn check_sign_in(&self, now_ms: u64) {
        let deadline = self.sign_in_deadline_ms.load(Ordering::Relaxed);
        if deadline != 0 && now_ms >= deadline {
            self.close(
                CloseCode::UNAUTHORIZED,
                "Connection not authorized within timeout.",
            );
        }
    }
}

impl Outbox for Connection {
    fn socket_id(&self) -> &SocketId {
        &self.socket_id
    }

    fn send(&self, frame: Bytes) {
        if self.is_closing() {
            return;
        }
        let cost = frame.len() + FRAME_OVERHEAD;
        let before = self.queued_bytes.fetch_add(cost, Ordering::AcqRel);
        // One frame always fits an empty queue, however large: the budget bounds a backlog,
        // not the size of an event the app was allowed to publish.
        if before > 0 && before + cost > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
            if !self.is_closing() {
                self.counters.slow_closes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    socket_id = %self.socket_id,
                    queued_bytes = before,
                    "closing a connection that does not read fast enough (4100)"
                );
            }
            self.request_close(CloseRequest {
                frame: Some((
                    CloseCode::OVER_CAPACITY,
                    "The connection does not read fast enough.".into(),
                )),
                drain: false,
            });
            return;
        }
        let payload = payload_len(&frame);
        if self.tx.send(frame).is_err() {
            self.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
        } else if let Some(metrics) = self.metrics.get() {
            metrics.ws_sent(payload);
        }
    }

    fn close(&self, code: CloseCode, reason: &str) {
        if !self.is_closing() {
            self.send_json(&message::error(Some(code.0), reason, None));
        }
        self.request_close(CloseRequest {
            frame: Some((code, reason.to_owned())),
            drain: true,
        });
    }
}

type Io = TokioIo<Upgraded>;

/// Runs an upgraded connection until it closes.
pub(crate) async fn run(state: Arc<State>, io: Io, app_key: String, protocol: Option<String>) {
    let (read, write) = tokio::io::split(io);
    let (mut ws_read, _) =
        fastwebsockets::after_handshake_split(read, tokio::io::sink(), Role::Server);
    ws_read.set_max_message_size(MAX_INBOUND_MESSAGE);
    let mut ws_read = FragmentCollectorRead::new(ws_read);
    let socket_id = SocketId::from_parts(rand::random(), rand::random());
    let key = state.next_connection_key();
    let (conn, rx) = Connection::new(
        socket_id,
        state.config.max_backpressure,
        state.counters.clone(),
        state.uptime_ms(),
    );

    let session = Session::open(state.clone(), conn.clone(), &app_key, protocol.as_deref()).await;
    let writer = write_loop(conn.clone(), rx, write);
    tokio::pin!(writer);
    match session {
        Some(mut session) => {
            state.connections.insert(key, conn.clone());
            {
                let reader = read_loop(&state, &conn, &mut ws_read, &mut session);
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
            session.close().await;
            state.connections.remove(&key);
        }
        None => {
            // Refused at the door: the error and close frames are queued; write them out.
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut writer).await;
        }
    }
}

async fn read_loop(
    state: &State,
    conn: &Connection,
    ws_read: &mut FragmentCollectorRead<tokio::io::ReadHalf<Io>>,
    session: &mut Session,
) {
    loop {
        // Pongs and close echoes that the protocol obliges go through the connection's queue,
        // so that they never interleave with a frame being written.
        let mut obligated = |frame: fastwebsockets::Frame<'_>| {
            if let Some(opcode) = map_opcode(frame.opcode) {
                conn.send(ws::frame(opcode, &frame.payload));
            }
            std::future::ready(Ok::<(), std::convert::Infallible>(()))
        };
        let frame = match ws_read.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(WebSocketError::ConnectionClosed | WebSocketError::UnexpectedEOF) => return,
            Err(e) => {
                tracing::debug!(error = %e, "closing a connection after a WebSocket error");
                return;
            }
        };
        conn.touch(state.uptime_ms());
        if matches!(frame.opcode, OpCode::Text | OpCode::Binary) {
            conn.count_received(frame.payload.len());
        }
        match frame.opcode {
            OpCode::Text => match std::str::from_utf8(&frame.payload) {
                Ok(text) => session.handle(text).await,
                Err(_) => session.reject_malformed("Text frames must be UTF-8."),
            },
            OpCode::Binary => session.reject_malformed("Binary frames are not supported."),
            OpCode::Close => return,
            _ => {}
        }
        if conn.is_closing() {
            return;
        }
    }
}

/// The length of the payload of a frame the server encoded (unmasked), as soketi counts bytes:
/// the message, without the WebSocket header.
fn payload_len(frame: &[u8]) -> usize {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        None => return 0,
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
    };
    frame.len().saturating_sub(header)
}

fn map_opcode(opcode: OpCode) -> Option<Opcode> {
    match opcode {
        OpCode::Pong => Some(Opcode::Pong),
        OpCode::Close => Some(Opcode::Close),
        OpCode::Ping => Some(Opcode::Ping),
        _ => None,
    }
}

async fn write_loop(
    conn: Arc<Connection>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    mut out: WriteHalf<Io>,
) {
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = conn.wake_writer.notified() => break,
            n = rx.recv_many(&mut batch, 64) => {
                if n == 0 {
                    break;
                }
                if !write_unless_aborted(&conn, &mut out, &mut batch).await {
                    // The socket failed, or the client stopped reading: a frame may be half
                    // written, so nothing more can go on this stream.
                    return;
                }
            }
        }
    }
    let Some(request) = conn.close.get() else {
        return;
    };
    if request.drain {
        while let Ok(frame) = rx.try_recv() {
            batch.push(frame);
        }
    } else {
        // The client stopped reading: what is queued is dropped, and the close frame goes
        // out only if the socket takes it at once.
        batch.clear();
    }
    // Every frame in `batch` is whole here: a batch cut short ends the writer above.
    if let Some((code, reason)) = &request.frame {
        batch.push(ws::close(code.0, reason));
    }
    // A client that does not read must not keep the connection alive: the last frames get a
    // bounded time.
    let timeout = if request.drain {
        CLOSE_FLUSH_TIMEOUT
    } else {
        Duration::from_millis(50)
    };
    let _ = tokio::time::timeout(timeout, async {
        write_batch(&mut out, &mut batch).await?;
        out.shutdown().await
    })
    .await;
}

/// Writes one batch, unless a close that drops the queue arrives while the write waits on a
/// client that does not read. Returns whether the writer should go on.
async fn write_unless_aborted(
    conn: &Connection,
    out: &mut WriteHalf<Io>,
    batch: &mut Vec<Bytes>,
) -> bool {
    let write = write_batch(out, batch);
    tokio::pin!(write);
    tokio::select! {
        biased;
        written = &mut write => match written {
            Ok(n) => {
                conn.queued_bytes.fetch_sub(n, Ordering::AcqRel);
                true
            }
            Err(_) => false,
        },
        () = conn.wake_writer.notified() => {
            let drain = conn.close.get().is_some_and(|r| r.drain);
            if drain && matches!(tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, write).await, Ok(Ok(_))) {
                // Let the main loop see the close request again and finish it.
                conn.wake_writer.notify_one();
                return true;
            }
            false
        }
    }
}

/// Writes every frame of `batch` with vectored writes and empties it. Returns the bytes
/// written, counted as the queue counts them.
async fn write_batch<W: AsyncWrite + Unpin>(
    out: &mut W,
    batch: &mut Vec<Bytes>,
) -> std::io::Result<usize> {
    let accounted: usize = batch.iter().map(|b| b.len() + FRAME_OVERHEAD).sum();
    let mut first = 0;
    let mut offset = 0;
    while first < batch.len() {
        let slices: Vec<IoSlice<'_>> = batch[first..]
            .iter()
            .enumerate()
            .map(|(i, b)| IoSlice::new(if i == 0 { &b[offset..] } else { &b[..] }))
            .collect();
        let mut n = out.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let left = batch[first].len() - offset;
            if n >= left {
                n -= left;
                first += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    batch.clear();
    out.flush().await?;
    Ok(accounted)
}
