//! Entry points for the fuzz targets of `fuzz/`: the server's own code, run on input from
//! outside without sockets. Not an API: hidden from the docs, and free to change.

use std::io::Cursor;
use std::sync::Arc;

use soketi_protocol::{App, SocketId};

use crate::config::Config;
use crate::error::StartError;
use crate::state::State;
use crate::{build_state, http, websocket};

/// The frames an HTTP API body turns into, one per channel (`batch`: a `POST /batch_events`
/// body, else a `POST /events` one), or the HTTP status the HTTP API refuses it with.
pub fn publish_frames(app: &App, body: &[u8], batch: bool) -> Result<Vec<String>, u16> {
    http::frames_of(app, body, batch).map_err(|e| e.into_response().status().as_u16())
}

/// A server without listeners: connections are fed from memory.
pub struct Node {
    state: Arc<State>,
}

impl Node {
    /// Builds the server's state as [`crate::start`] does, on the current tokio runtime.
    pub async fn new(config: Config) -> Result<Self, StartError> {
        let (state, _transport) = build_state(config, 0).await?;
        Ok(Self { state })
    }

    /// Runs one connection to the app `app_key`, named `socket_id`, whose client sends `input`
    /// (WebSocket frames as they come off the socket) and then closes its side; returns once
    /// the connection has ended and left everything it joined. What the server writes back is
    /// dropped.
    pub async fn connect(&self, app_key: &str, socket_id: SocketId, input: Vec<u8>) {
        websocket::serve(
            self.state.clone(),
            socket_id,
            Box::new(Cursor::new(input)),
            Box::pin(tokio::io::sink()),
            Vec::new(),
            app_key,
            Some("7"),
            None,
        )
        .await;
    }

    /// The connections the server still holds: none once every [`Node::connect`] returned.
    pub fn connections(&self) -> usize {
        self.state.connections.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked text frame with a zero mask, as the fuzz target frames its lines.
    fn client_text(payload: &str) -> Vec<u8> {
        let mut frame = vec![
            0x81,
            0x80 | u8::try_from(payload.len()).unwrap(),
            0,
            0,
            0,
            0,
        ];
        frame.extend_from_slice(payload.as_bytes());
        frame
    }

    #[tokio::test]
    async fn a_connection_from_memory_leaves_nothing_behind() {
        let config = Config::load_from(None, |_| None).unwrap();
        let node = Node::new(config).await.unwrap();
        let mut input = client_text(r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#);
        input.extend(client_text(r#"{"event":"pusher:ping","data":{}}"#));
        node.connect("app-key", SocketId::from_parts(1, 1), input)
            .await;
        node.connect("no-such-key", SocketId::from_parts(1, 2), Vec::new())
            .await;
        assert_eq!(node.connections(), 0);
        let occupied = node.state.adapter.channels("app-id").await.unwrap();
        assert!(occupied.is_empty(), "{occupied:?}");
    }

    #[test]
    fn bodies_turn_into_frames_or_client_errors() {
        let app = App::new("app-id", "app-key", "app-secret");
        let body = br#"{"name":"e","channels":["a","b"],"data":"{\"x\":1}"}"#;
        let frames = publish_frames(&app, body, false).unwrap();
        assert_eq!(frames.len(), 2);
        assert!(frames[1].contains(r#""channel":"b""#), "{}", frames[1]);
        let batch = br#"{"batch":[{"name":"e","channel":"a","data":"d"}]}"#;
        assert_eq!(publish_frames(&app, batch, true).unwrap().len(), 1);
        assert_eq!(publish_frames(&app, b"{", false), Err(400));
        let big = format!(
            r#"{{"name":"e","channel":"a","data":"{}"}}"#,
            "x".repeat(1 << 20)
        );
        assert_eq!(publish_frames(&app, big.as_bytes(), false), Err(413));
    }
}
