//! Error codes of the Pusher protocol and the errors of this crate.

/// A Pusher error code, sent in `pusher:error` and used as the WebSocket close code.
///
/// pusher-js reads the range: 4000–4099 means "do not reconnect", 4100–4199 "reconnect after a
/// back-off" and 4200–4299 "reconnect at once". Each code is chosen for that effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// The client broke the server's policy (RFC 6455): it left a message unfinished too
    /// long.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// The app key is unknown.
    pub const APP_NOT_FOUND: CloseCode = CloseCode(4001);
    /// The app is disabled.
    pub const APP_DISABLED: CloseCode = CloseCode(4003);
    /// The client speaks a protocol version this server does not support.
    pub const UNSUPPORTED_PROTOCOL: CloseCode = CloseCode(4007);
    /// The connection is not authorized: failed sign-in or terminated by the app.
    pub const UNAUTHORIZED: CloseCode = CloseCode(4009);
    /// Over a limit: the app's connection quota, or a client that does not read fast enough.
    pub const OVER_CAPACITY: CloseCode = CloseCode(4100);
    /// The server is shutting down; clients should reconnect.
    pub const SERVER_CLOSING: CloseCode = CloseCode(4200);
    /// The client did not answer a ping in time; clients should reconnect.
    pub const PONG_NOT_RECEIVED: CloseCode = CloseCode(4201);
    /// A client event was refused (not enabled, wrong channel, too large, too fast).
    pub const CLIENT_EVENT_REJECTED: CloseCode = CloseCode(4301);
    /// The server failed while handling a presence join.
    pub const PRESENCE_SERVER_ERROR: CloseCode = CloseCode(4302);
}

/// Why a message, a name or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The channel name is empty, too long or has characters outside Pusher's set.
    #[error("invalid channel name: {0}")]
    InvalidChannelName(String),
    /// The channel name is longer than the app allows.
    #[error("channel name is longer than {max} characters")]
    ChannelNameTooLong {
        /// The app's limit.
        max: usize,
    },
    /// A socket id that is not two decimal numbers joined by a dot.
    #[error("invalid socket id: {0}")]
    InvalidSocketId(String),
    /// The message is not JSON, or lacks a field the event requires.
    #[error("malformed message: {0}")]
    MalformedMessage(String),
    /// An auth string that is not `key:signature`, names another key, or does not match.
    #[error("invalid signature")]
    InvalidSignature,
    /// Presence `channel_data` or sign-in `user_data` that is not the JSON Pusher defines.
    #[error("invalid user data: {0}")]
    InvalidUserData(String),
}
