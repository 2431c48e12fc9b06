//! Why a run, a connection or a request failed.

use std::io;

/// Why a whole run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No connection could be opened and subscribed, so nothing can be measured.
    #[error("no connection subscribed ({failed} failed; first failure: {first})")]
    NoConnection {
        /// How many connections failed.
        failed: usize,
        /// The first failure, as text.
        first: String,
    },
    /// The HTTP API could not be reached at all.
    #[error("the HTTP API is unreachable: {0}")]
    Api(#[from] HttpError),
    /// A setting makes no sense (zero connections, an empty rate list).
    #[error("invalid plan: {0}")]
    Plan(String),
    /// The thread or runtime of publishers that run apart could not start or ended abnormally.
    #[error("the publishers' thread: {0}")]
    Publishers(#[source] io::Error),
    /// The console stream (`--console`) was answered with another status than 200.
    #[error("the console stream was refused: HTTP status {status}")]
    ConsoleRefused {
        /// The status of the answer.
        status: u16,
    },
    /// The console stream could not be opened, or gave no first line in time.
    #[error("the console stream failed: {0}")]
    Console(String),
    /// Reading `/proc` failed for a pid the plan names.
    #[error("cannot read /proc for pid {pid}")]
    Proc {
        /// The process.
        pid: u32,
        /// The cause.
        source: io::Error,
    },
}

/// Why one WebSocket connection failed to open, subscribe or keep reading.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// A socket call failed (connect, read, write).
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The server closed the stream.
    #[error("closed by the server")]
    Closed,
    /// The server answered the upgrade with something else than 101.
    #[error("upgrade refused: {0}")]
    Refused(String),
    /// The server sent bytes that are no WebSocket frame this client reads.
    #[error("bad frame: {0}")]
    Frame(&'static str),
    /// The server sent a Pusher message other than the one expected.
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// A step of the handshake or the subscription took too long.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

/// Why one HTTP API request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A socket call failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection before a whole answer.
    #[error("connection closed before a whole answer")]
    Closed,
    /// The answer is no HTTP/1.1 response this client reads.
    #[error("bad answer: {0}")]
    Malformed(&'static str),
}
