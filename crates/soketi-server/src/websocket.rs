//! Running one WebSocket connection from its upgrade to its end: the connection, the session
//! it drives, the reading and the writing, and the session's close.
//!
//! The modules meet in one direction: this one uses the session, the state and the
//! connection; the session uses the state and the connection; the state holds connections and
//! their flushers; a connection knows only its flusher and its metrics.

use std::net::IpAddr;
use std::sync::Arc;

use hyper::upgrade::Upgraded;
use soketi_protocol::SocketId;

use crate::client_ip::IpSlot;
use crate::connection::{self, CLOSE_FLUSH_TIMEOUT, Connection, Reader, Settings, Sink};
use crate::session::Session;
use crate::state::State;

/// What the upgrade request said, and the place it holds in its address's count.
pub(crate) struct Handshake {
    /// The app key of the path.
    pub(crate) app_key: String,
    /// The `protocol` query parameter.
    pub(crate) protocol: Option<String>,
    /// The `Origin` header, which browsers send.
    pub(crate) origin: Option<String>,
    /// The client's address, as the per-address caps count it.
    pub(crate) ip: IpAddr,
    /// Held until the connection ends.
    pub(crate) ip_slot: IpSlot,
}

/// Runs an upgraded connection until it closes.
pub(crate) async fn run(state: Arc<State>, io: Upgraded, handshake: Handshake) {
    let Handshake {
        app_key,
        protocol,
        origin,
        ip,
        ip_slot: _held,
    } = handshake;
    let (reader, sink, pending) = connection::split(io);
    serve(
        state,
        SocketId::from_parts(rand::random(), rand::random()),
        reader,
        sink,
        pending,
        &app_key,
        protocol.as_deref(),
        origin.as_deref(),
        Some(ip),
    )
    .await;
}

/// Runs a connection over its two halves until it closes: `pending` is what the client sent
/// before the reading began, `app_key`, `protocol` and `origin` what its upgrade request said.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of an upgraded connection, each used once"
)]
pub(crate) async fn serve(
    state: Arc<State>,
    socket_id: SocketId,
    mut reader: Reader,
    sink: Sink,
    pending: Vec<u8>,
    app_key: &str,
    protocol: Option<&str>,
    origin: Option<&str>,
    ip: Option<IpAddr>,
) {
    let key = state.next_connection_key();
    let settings = Settings {
        max_queued_bytes: state.config.max_backpressure,
        counters: state.counters.clone(),
        now_ms: state.uptime_ms(),
    };
    let conn = Connection::new(socket_id, sink, state.flushers.shard(key), settings);

    // The session's futures are boxed: they run briefly, and inline they would size the future
    // that every idle connection keeps.
    let mut session = Box::pin(Session::open(
        state.clone(),
        conn.clone(),
        app_key,
        protocol,
        origin,
        ip,
    ))
    .await;
    let writer = connection::write_loop(conn.clone());
    tokio::pin!(writer);
    // The session stays where `open` left it: moving it out of the option would give it a
    // second place in this future, which every connection keeps for its whole life. The
    // timeouts of the last moments are boxed for the same reason.
    match &mut session {
        Some(session) => {
            state.connections.insert(key, conn.clone());
            {
                let clock = || state.uptime_ms();
                let timeout = state.config.message_timeout();
                let reader =
                    connection::read_loop(&conn, clock, timeout, &mut reader, pending, session);
                tokio::pin!(reader);
                tokio::select! {
                    () = &mut reader => {
                        conn.finish();
                        let _ = Box::pin(tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut writer)).await;
                    }
                    () = &mut writer => {
                        // The server closed the connection; give the client a moment to
                        // answer the close frame, then let go.
                        let _ = Box::pin(tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut reader)).await;
                    }
                }
            }
            Box::pin(session.close()).await;
            state.connections.remove(&key);
        }
        None => {
            // Refused at the door: the error and close frames are queued; write them out.
            let _ = Box::pin(tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut writer)).await;
        }
    }
    conn.release();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection keeps its whole task for its life, so a byte here is a byte of each
    /// idle connection's memory (the idle-memory benchmark measures the whole). A wait that
    /// comes rarely, such as the last moments of a close or the rest of a message begun, is
    /// boxed rather than held inline; this bound fails when one is not.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let node = crate::fuzzing::Node::new(crate::config::Config::default())
            .await
            .expect("a node starts");
        let connection = serve(
            node.state.clone(),
            SocketId::from_parts(1, 1),
            Box::new(std::io::Cursor::new(Vec::new())),
            Box::pin(tokio::io::sink()),
            Vec::new(),
            "app-key",
            Some("7"),
            None,
            None,
        );
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 900, "the connection task takes {size} bytes");
    }
}
