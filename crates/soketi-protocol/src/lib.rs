//! The Pusher Channels protocol (version 7) as plain data and pure functions.
//!
//! This crate owns everything a Pusher server and its clients agree on: the frames sent over the
//! WebSocket ([`message`]), the rules for channel names ([`channel`]), socket ids ([`socket_id`]),
//! the HMAC-SHA256 signatures of channel and user authentication ([`auth`]), the signing of HTTP API
//! requests ([`http_auth`]), the per-app settings and limits ([`app`]), the error codes ([`error`])
//! and the WebSocket framing ([`ws`]): the frames a server sends, and the [`ws::FrameReader`]
//! that checks, unmasks and joins the frames a client sends.
//!
//! It does no I/O: no sockets, no tasks, no clock and no randomness of its own. Time and random
//! numbers are passed in, so that other projects can reuse it and tests need no runtime.
//!
//! # Example
//!
//! An app's auth endpoint signs a private channel for a socket; the server checks the signature
//! when the client subscribes:
//!
//! ```
//! use soketi_protocol::auth;
//! use soketi_protocol::{ChannelKind, ChannelName};
//!
//! // The auth endpoint: sign `socket_id:channel` with the app's secret.
//! let to_sign = auth::channel_string_to_sign("1234.5678", "private-orders", None);
//! let token = auth::sign("app-key", "app-secret", &to_sign);
//! assert!(token.starts_with("app-key:"));
//!
//! // The server: the channel needs a signature, and this one is the app's.
//! let channel = ChannelName::parse("private-orders", 200)?;
//! assert_eq!(channel.kind(), ChannelKind::Private);
//! assert!(channel.needs_auth());
//! auth::verify(&token, "app-key", "app-secret", &to_sign)?;
//! assert!(auth::verify(&token, "app-key", "another-secret", &to_sign).is_err());
//!
//! // The HTTP API: the back end signs a request with the time of signing, and the server
//! // checks it against its own clock (here, 30 seconds later).
//! use soketi_protocol::http_auth::{self, SignedRequest};
//! let body = br#"{"name":"update","channel":"news","data":"{}"}"#;
//! let query = http_auth::sign("POST", "/apps/app-id/events", &[], body, "app-key", "app-secret", 1_700_000_000);
//! let request = SignedRequest { method: "POST", path: "/apps/app-id/events", query: &query, body };
//! assert!(http_auth::verify(&request, "app-key", "app-secret", 1_700_000_030).is_ok());
//! # Ok::<(), soketi_protocol::ProtocolError>(())
//! ```

pub mod app;
pub mod auth;
pub mod channel;
pub mod error;
pub mod http_auth;
pub mod message;
pub mod socket_id;
pub mod ws;

pub use app::{App, AppLimits, LambdaTarget, Webhook};
pub use channel::{ChannelKind, ChannelName};
pub use error::{CloseCode, ProtocolError};
pub use socket_id::SocketId;

/// Runs the README's example as a doctest, so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
