//! Entry points for the fuzz targets of `fuzz/`: the server's own code, run on input from
//! outside without sockets. Not an API: hidden from the docs, and free to change.

use std::io::Cursor;
use std::sync::Arc;

use soketi_protocol::{App, SocketId};
use tokio::task::JoinHandle;

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
    pub(crate) state: Arc<State>,
    /// The flushers' tasks, which end with the node.
    flushers: Vec<JoinHandle<()>>,
}

impl Node {
    /// Builds the server's state and starts its flushers as [`crate::start`] does, on the
    /// current tokio runtime.
    pub async fn new(config: Config) -> Result<Self, StartError> {
        let (state, _transport) = build_state(config, 0).await?;
        // A connection that queues a frame is held in its flusher's list until the flusher's
        // next pass: without the flushers, every connection would be held forever.
        let flushers = state.flushers.spawn();
        Ok(Self { state, flushers })
    }

    /// Runs one connection to the app `app_key`, named `socket_id`, whose client sends `input`
    /// (WebSocket frames as they come off the socket) and then closes its side; returns once
    /// the connection has ended and left everything it joined. What the server writes back is
    /// dropped; its flusher lets go of the connection at its next pass, once the runtime runs
    /// the tasks that are ready.
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
            None,
        )
        .await;
    }

    /// The connections the server still holds: none once every [`Node::connect`] returned.
    pub fn connections(&self) -> usize {
        self.state.connections.len()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for flusher in &self.flushers {
            flusher.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use soketi_protocol::auth;

    use super::*;

    /// A masked text frame with a zero mask, as the fuzz target frames its lines.
    fn client_text(payload: &str) -> Vec<u8> {
        let mut frame = vec![0x81];
        match u8::try_from(payload.len()) {
            Ok(len) if len < 126 => frame.push(0x80 | len),
            _ => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(payload.as_bytes());
        frame
    }

    /// The fuzz target's server (client events, presence channels of at most 3 members), whose
    /// app also has watchlists.
    async fn fuzz_node() -> Node {
        let config = Config::load_from(None, |name| match name {
            "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES"
            | "SOKETI_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS" => Some("true".into()),
            "SOKETI_PRESENCE_MAX_MEMBERS" => Some("3".into()),
            _ => None,
        })
        .unwrap();
        Node::new(config).await.unwrap()
    }

    /// The subscribe message of `channel`, signed for socket 1.1 when `auth`.
    fn subscribe(channel: &str, auth: bool, channel_data: Option<&str>) -> String {
        let mut data = serde_json::json!({ "channel": channel });
        if auth {
            let to_sign = auth::channel_string_to_sign("1.1", channel, channel_data);
            data["auth"] = auth::sign("app-key", "app-secret", &to_sign).into();
        }
        if let Some(channel_data) = channel_data {
            data["channel_data"] = channel_data.into();
        }
        serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string()
    }

    /// What the `i`th client of [`connections_are_let_go_with_what_they_joined`] sends: every
    /// kind of channel, a presence member, client events, a sign-in with a watchlist and
    /// invalid frames, each under names of its own; some unsubscribe, some close, some end
    /// with bytes that are no frame, the others just stop.
    fn varied_input(i: usize) -> Vec<u8> {
        let private = format!("private-{i}");
        let presence = format!("presence-{i}");
        let member = format!(r#"{{"user_id":"member-{i}","user_info":{{"i":{i}}}}}"#);
        let user_data = format!(r#"{{"id":"user-{i}","watchlist":["watched-{i}"]}}"#);
        let to_sign = auth::user_string_to_sign("1.1", &user_data);
        let signin = serde_json::json!({
            "event": "pusher:signin",
            "data": {
                "user_data": user_data,
                "auth": auth::sign("app-key", "app-secret", &to_sign),
            },
        });
        let mut lines = vec![
            subscribe(&format!("public-{i}"), false, None),
            subscribe(&format!("cache-{i}"), false, None),
            subscribe(&private, true, None),
            format!(r#"{{"event":"client-{i}","channel":"{private}","data":{{}}}}"#),
            subscribe(&presence, true, Some(&member)),
            format!(r#"{{"event":"client-{i}","channel":"{presence}","data":{{}}}}"#),
            subscribe(&format!("private-encrypted-{i}"), true, None),
            signin.to_string(),
            subscribe(&format!("#server-to-user-user-{i}"), false, None),
            "{".into(),
            r#"{"event":"pusher:ping","data":{}}"#.into(),
        ];
        if i % 4 == 1 {
            lines.push(format!(
                r#"{{"event":"pusher:unsubscribe","data":{{"channel":"{presence}"}}}}"#
            ));
        }
        let mut input: Vec<u8> = lines.iter().flat_map(|l| client_text(l)).collect();
        match i % 4 {
            2 => input.extend_from_slice(&[0x88, 0x80, 0, 0, 0, 0]),
            3 => input.extend_from_slice(&[0xff; 3]),
            _ => {}
        }
        input
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

    /// The fuzz target's finding: a connection scheduled with a flusher that never ran was
    /// held forever, about 1 KB each.
    #[tokio::test]
    async fn connections_are_let_go_with_what_they_joined() {
        const CONNECTIONS: usize = 200;
        let node = fuzz_node().await;
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        for i in 0..CONNECTIONS {
            node.connect("app-key", SocketId::from_parts(1, 1), varied_input(i))
                .await;
        }
        assert_eq!(node.connections(), 0);
        // Every connection holds the server's counters: only the state does once all are gone.
        // The flushers let go of the last connections at their next pass.
        let held = || Arc::strong_count(&node.state.counters) - 1;
        let all_gone = async {
            while held() > 0 {
                tokio::task::yield_now().await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), all_gone)
            .await
            .is_err()
        {
            panic!("{} of {CONNECTIONS} connections still held", held());
        }
        assert_eq!(tasks(), before, "tasks outlived their connection");
        let adapter = &node.state.adapter;
        let occupied = adapter.channels("app-id").await.unwrap();
        assert!(occupied.is_empty(), "{occupied:?}");
        let app = adapter.local().get_app("app-id").unwrap();
        assert_eq!(app.connection_count(), 0);
        for i in 0..CONNECTIONS {
            let user = format!("user-{i}");
            assert_eq!(app.user_connection_count(&user), 0, "{user}");
            assert!(!adapter.user_online("app-id", &user), "{user}");
        }
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
