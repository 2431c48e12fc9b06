//! The console's HTTP side on the main port: the page and its two scripts, the key lookup the
//! page makes when it was given an app's id and secret only, and the signed stream of an app's
//! lines (`GET /apps/{app_id}/console`, Server-Sent Events).
//!
//! The stream is signed as any HTTP API request is, so a request without a valid signature of
//! the app's own secret gets 401 and not a line; the page signs in the browser, and the secret
//! never reaches the server.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;
use soketi_protocol::{App, http_auth};
use tokio::sync::mpsc;

use super::Watching;
use crate::error::ApiError;
use crate::state::{State, unix_now};

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page.html");
/// The page's signing code: SHA-256, HMAC-SHA256 and MD5 for the browser, which has no
/// WebCrypto over plain http on a private address.
const CRYPTO_JS: &str = include_str!("crypto.js");
/// The page's logic.
const CONSOLE_JS: &str = include_str!("console.js");

/// How often the stream sends the app's counts (and so at least one line).
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Encoded lines the stream holds for the socket before it stops reading the console's queue.
const FRAMES_AHEAD: usize = 64;

/// The page (`""`) or one of its scripts, by the name after `/console/`.
pub(crate) fn asset(name: &str) -> Option<Response<Full<Bytes>>> {
    let (body, content_type) = match name {
        "" => (PAGE, "text/html; charset=utf-8"),
        "crypto.js" => (CRYPTO_JS, "text/javascript; charset=utf-8"),
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page runs its own scripts only, and sends requests to this server only.
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'",
        ),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

/// `GET /console/key?app_id=…&auth_timestamp=…&auth_signature=…`: the app's key, for a page
/// that knows its id and secret. The signature covers the method, `path` and query with the
/// app's secret, and the timestamp must be as fresh as the HTTP API's.
pub(crate) async fn key(
    state: &State,
    path: &str,
    query: &[(String, String)],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let app_id = query
        .iter()
        .find(|(k, _)| k == "app_id")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "The app_id is missing."))?;
    let app = crate::http::find_app(state, app_id).await?;
    http_auth::verify_secret_only("GET", path, query, &app.secret, unix_now())
        .map_err(crate::http::unauthorized)?;
    Ok(crate::http::json_response(&json!({ "key": app.key })))
}

/// Opens a console on `app` (whose request's signature held): the stream of its lines.
pub(crate) fn open(state: &Arc<State>, app: &App) -> Response<ConsoleBody> {
    let (watching, lines) = state.console.watch(&app.id);
    let (frames, body) = mpsc::channel(FRAMES_AHEAD);
    tokio::spawn(pump(state.clone(), app.id.clone(), watching, lines, frames));
    let mut response = Response::new(ConsoleBody { frames: body });
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx would otherwise hold the lines back to fill a buffer.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Moves an open console's lines to its socket, with the app's counts every second, until the
/// page goes away or the server closes.
async fn pump(
    state: Arc<State>,
    app_id: String,
    watching: Watching,
    mut lines: mpsc::Receiver<Bytes>,
    frames: mpsc::Sender<Bytes>,
) {
    let console = &state.console;
    // The nodes of the fleet this one hears, itself included.
    let nodes = || {
        state
            .transport
            .as_ref()
            .map_or(1, |transport| transport.live_nodes().len() + 1)
    };
    let hello = console.line("hello", json!({ "app_id": app_id, "nodes": nodes() }));
    if frames.send(event(hello.as_bytes())).await.is_err() {
        return;
    }
    let mut ticks = tokio::time::interval(STATS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = tokio::select! {
            line = lines.recv() => match line {
                Some(line) => event(&line),
                None => return,
            },
            _ = ticks.tick() => {
                if state.is_closing() {
                    return;
                }
                let dropped = watching.take_dropped();
                if dropped > 0 {
                    let line = console.line("dropped", json!({ "count": dropped }));
                    if frames.send(event(line.as_bytes())).await.is_err() {
                        return;
                    }
                }
                let connections = state.adapter.socket_count(&app_id).await.ok();
                let channels = state.adapter.channels(&app_id).await.ok().map(|c| c.len());
                let line = console.line(
                    "stats",
                    json!({ "connections": connections, "channels": channels, "nodes": nodes() }),
                );
                event(line.as_bytes())
            }
        };
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

/// One Server-Sent Event whose data is `line` (JSON, without line breaks).
fn event(line: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(line.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(line);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// The body of a console's stream: its events as the pump sends them; it ends when the pump
/// does.
pub(crate) struct ConsoleBody {
    frames: mpsc::Receiver<Bytes>,
}

impl Body for ConsoleBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|data| Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
