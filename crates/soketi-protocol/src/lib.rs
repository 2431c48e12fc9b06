//! The Pusher Channels protocol (version 7) as plain data and pure functions.
//!
//! This crate owns everything a Pusher server and its clients agree on: the frames sent over the
//! WebSocket ([`message`]), the rules for channel names ([`channel`]), socket ids ([`socket_id`]),
//! the HMAC-SHA256 signatures of channel and user authentication ([`auth`]), the signing of HTTP API
//! requests ([`http_auth`]), the per-app settings and limits ([`app`]), the error codes ([`error`])
//! and the WebSocket framing of outgoing messages ([`ws`]).
//!
//! It does no I/O: no sockets, no tasks, no clock and no randomness of its own. Time and random
//! numbers are passed in, so that other projects can reuse it and tests need no runtime.
#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod channel;
pub mod error;
pub mod http_auth;
pub mod message;
pub mod socket_id;
pub mod ws;

pub use app::{App, AppLimits, Webhook};
pub use channel::{ChannelKind, ChannelName};
pub use error::{CloseCode, ProtocolError};
pub use socket_id::SocketId;
