//! One WebSocket connection: its outbound queue, and the reading of its frames. What the frames
//! mean is the [`Handler`]'s business (the session's); what runs a connection from its upgrade
//! to its end is [`crate::websocket`].
//!
//! Publishing only queues: a frame goes onto the connection's queue, and a connection whose
//! queue was empty is handed to its [`Flusher`](crate::flusher), which writes every such
//! connection in one pass once the tasks that are ready have run. A lone publish is written at
//! once; publishes that arrive together leave several frames per connection, which go out in
//! one vectored write. Only when the socket does not take everything does the connection's
//! own writer task wait for it. A connection whose queue holds more than `max_backpressure`
//! bytes is closed with 4100 instead of growing without bound.
//!
//! Frames are read with [`FrameReader`] from a buffer that exists only while a message is
//! being received, so an idle connection holds no read buffer.
//!
//! A connection counts the messages it receives and queues into its app's metrics, through the
//! [`AppMetrics`] handle it gets once its app accepted it.

mod read;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use soketi_channels::Outbox;
use soketi_protocol::ws::{self, FrameReader, Incoming, Opcode};
use soketi_protocol::{CloseCode, SocketId, message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::flusher::{Flush, Shard};
use crate::metrics::AppMetrics;

pub(crate) use read::{Handler, Reader, read_loop, split};

/// Bytes counted for each queued frame on top of its length, so that a flood of tiny frames
/// is bounded too.
const FRAME_OVERHEAD: usize = 64;

/// How long a closing connection waits for its last frames to be written.
pub(crate) const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How much one read takes from the socket. Client messages are small; a larger one takes
/// several reads.
const READ_CHUNK: usize = 8 * 1024;

/// The most frames one vectored write carries.
const MAX_SLICES: usize = 64;

struct CloseRequest {
    /// The close code and reason to send, or `None` when the client closed first.
    frame: Option<(CloseCode, String)>,
    /// Whether queued frames go out before the close frame.
    drain: bool,
}

/// The writing half of the socket.
pub(crate) type Sink = Pin<Box<dyn AsyncWrite + Send>>;

/// Who writes a connection's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteState {
    /// Nothing is queued; the next frame schedules the connection with its flusher.
    Idle,
    /// Frames wait for the flusher's next pass.
    Scheduled,
    /// The socket did not take everything; the writer task waits until it can.
    Stalled,
    /// The writer task writes the last frames and closes the socket; nothing more is queued.
    Closing,
}

/// A connection's queue of encoded frames, and the socket they go to.
struct Outbound {
    /// `None` once the connection ended.
    sink: Option<Sink>,
    queue: Queue,
    state: WriteState,
}

/// Encoded frames waiting to be written.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// How many bytes of the first frame are already written.
    head: usize,
    /// The queued bytes as the budget counts them.
    bytes: usize,
}

impl Outbound {
    /// Writes queued frames, several per vectored write, until none is left (then flushes)
    /// or the socket would block.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(sink) = self.sink.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        while !self.queue.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.queue.slices(&mut slices);
            let written = ready!(sink.as_mut().poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.queue.advance(written);
        }
        sink.as_mut().poll_flush(cx)
    }
}

impl Queue {
    /// Fills `slices` with the unwritten bytes of the first frames; returns how many it filled.
    fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for (slot, frame) in slices.iter_mut().zip(&self.frames) {
            let skip = if count == 0 { self.head } else { 0 };
            *slot = IoSlice::new(&frame[skip..]);
            count += 1;
        }
        count
    }

    /// Drops what a write of `n` bytes took from the front of the queue.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(first) = self.frames.front() else {
                return;
            };
            let left = first.len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.bytes = self.bytes.saturating_sub(first.len() + FRAME_OVERHEAD);
            self.head = 0;
            self.frames.pop_front();
        }
    }
}

/// The server's handle on one connection; what the registry holds.
pub(crate) struct Connection {
    socket_id: SocketId,
    /// The connection itself, for its flusher.
    me: Weak<Connection>,
    out: Mutex<Outbound>,
    max_queued_bytes: usize,
    flusher: Arc<Shard<Connection>>,
    counters: Arc<Counters>,
    /// The app's metrics, set once the app accepted the connection; frames queued before that
    /// (a refusal) belong to no app and are not counted.
    metrics: OnceLock<AppMetrics>,
    close: OnceLock<CloseRequest>,
    /// Wakes the writer task: the socket stalled, or the connection is closing.
    wake_writer: Notify,
    last_seen_ms: AtomicU64,
    pinged_at_ms: AtomicU64,
    /// When a connection that must sign in is closed if it has not; 0 when it need not.
    sign_in_deadline_ms: AtomicU64,
}

/// Counts of notable events of every connection since the server started.
#[derive(Default)]
pub(crate) struct Counters {
    /// Connections closed with 4100 because their outbound queue passed `max_backpressure`.
    pub(crate) slow_closes: AtomicU64,
}

/// What a new connection is given by the server.
pub(crate) struct Settings {
    /// The outbound budget (`max_backpressure`) past which the connection is closed with 4100.
    pub(crate) max_queued_bytes: usize,
    /// Where it counts a close for not reading.
    pub(crate) counters: Arc<Counters>,
    /// The server's clock now, in milliseconds of uptime: the connection was last seen then.
    pub(crate) now_ms: u64,
}

impl Connection {
    /// A connection writing to `sink`, scheduled with `flusher` whenever its queue fills.
    pub(crate) fn new(
        socket_id: SocketId,
        sink: Sink,
        flusher: Arc<Shard<Connection>>,
        settings: Settings,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            socket_id,
            me: me.clone(),
            out: Mutex::new(Outbound {
                sink: Some(sink),
                queue: Queue::default(),
                state: WriteState::Idle,
            }),
            max_queued_bytes: settings.max_queued_bytes,
            flusher,
            counters: settings.counters,
            metrics: OnceLock::new(),
            close: OnceLock::new(),
            wake_writer: Notify::new(),
            last_seen_ms: AtomicU64::new(settings.now_ms),
            pinged_at_ms: AtomicU64::new(0),
            sign_in_deadline_ms: AtomicU64::new(0),
        })
    }

    /// The client is done, or nothing more will be read: queued frames go out, then the socket
    /// closes.
    pub(crate) fn finish(&self) {
        self.request_close(CloseRequest {
            frame: None,
            drain: true,
        });
    }

    /// Lets go of the socket once the connection ended; whoever still holds the connection
    /// for a moment holds no socket.
    pub(crate) fn release(&self) {
        self.out.lock().sink = None;
    }
}

impl Flush for Connection {
    /// Writes what is queued without waiting, as the flusher's pass does: a socket that does
    /// not take everything hands the rest to the writer task.
    fn flush(&self) {
        let mut out = self.out.lock();
        if out.state != WriteState::Scheduled {
            return;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match out.poll_write_queued(&mut cx) {
            Poll::Ready(Ok(())) => out.state = WriteState::Idle,
            Poll::Pending => {
                out.state = WriteState::Stalled;
                drop(out);
                self.wake_writer.notify_one();
            }
            Poll::Ready(Err(_)) => {
                out.state = WriteState::Stalled;
                drop(out);
                self.abort();
            }
        }
    }
}

impl Connection {
    /// Writes a stalled queue, waiting on the socket; ready once the queue is empty.
    fn poll_stalled(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.out.lock();
        if out.state != WriteState::Stalled {
            return Poll::Ready(Ok(()));
        }
        let written = ready!(out.poll_write_queued(cx));
        if written.is_ok() {
            out.state = WriteState::Idle;
        }
        Poll::Ready(written)
    }

    fn is_stalled(&self) -> bool {
        self.out.lock().state == WriteState::Stalled
    }

    /// Ends a connection whose socket failed: a frame may be half written, so nothing more
    /// can go on this stream.
    fn abort(&self) {
        self.request_close(CloseRequest {
            frame: None,
            drain: false,
        });
    }

    /// Closes a connection that does not read fast enough.
    fn over_capacity(&self, queued_bytes: usize) {
        if !self.is_closing() {
            self.counters.slow_closes.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                socket_id = %self.socket_id,
                queued_bytes,
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
        let payload = payload_len(&frame);
        let mut out = self.out.lock();
        if out.state == WriteState::Closing {
            return;
        }
        // One frame always fits an empty queue, however large: the budget bounds a backlog,
        // not the size of an event the app was allowed to publish.
        if out.queue.bytes > 0 && out.queue.bytes + cost > self.max_queued_bytes {
            let queued = out.queue.bytes;
            drop(out);
            self.over_capacity(queued);
            return;
        }
        out.queue.bytes += cost;
        out.queue.frames.push_back(frame);
        let schedule = out.state == WriteState::Idle;
        if schedule {
            out.state = WriteState::Scheduled;
        }
        drop(out);
        if let Some(metrics) = self.metrics.get() {
            metrics.ws_sent(payload);
        }
        if schedule && let Some(me) = self.me.upgrade() {
            self.flusher.schedule(me);
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

/// Writes what the flusher could not, and the last frames of a closing connection.
pub(crate) async fn write_loop(conn: Arc<Connection>) {
    loop {
        if conn.is_closing() {
            break;
        }
        if conn.is_stalled() {
            tokio::select! {
                biased;
                written = poll_fn(|cx| conn.poll_stalled(cx)) => {
                    if written.is_err() {
                        // The socket failed: a frame may be half written, so nothing more is
                        // queued or written.
                        conn.abort();
                        return;
                    }
                }
                // A close while the socket is stalled; seen at the top of the loop.
                () = conn.wake_writer.notified() => {}
            }
            continue;
        }
        conn.wake_writer.notified().await;
    }
    let Some(request) = conn.close.get() else {
        return;
    };
    {
        let mut out = conn.out.lock();
        out.state = WriteState::Closing;
        if !request.drain {
            // The client stopped reading, or the socket failed: what is queued is dropped,
            // except a frame already half written, and the close frame goes out only if the
            // socket takes it at once.
            let keep = usize::from(out.queue.head > 0);
            out.queue.frames.truncate(keep);
        }
        if let Some((code, reason)) = &request.frame {
            out.queue.frames.push_back(ws::close(code.0, reason));
        }
    }
    // A client that does not read must not keep the connection alive: the last frames get a
    // bounded time.
    let timeout = if request.drain {
        CLOSE_FLUSH_TIMEOUT
    } else {
        Duration::from_millis(50)
    };
    // Boxed: inline, this last wait would size the future that every connection keeps.
    let _ = Box::pin(tokio::time::timeout(timeout, async {
        poll_fn(|cx| conn.out.lock().poll_write_queued(cx)).await?;
        if request.frame.is_some() {
            // The server closes: the socket stays open for the client's close frame, and
            // closes once it comes or the wait is over (RFC 6455, section 7.1.1).
            return Ok(());
        }
        poll_fn(|cx| match conn.out.lock().sink.as_mut() {
            Some(sink) => sink.as_mut().poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        })
        .await
    }))
    .await;
}
