//! Channel kinds and the rules for channel names.

use crate::error::ProtocolError;

/// The prefix of the channel that carries server-to-user events for one signed-in user.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What a channel's name makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// Anyone may subscribe.
    Public,
    /// `private-`: subscribing needs a signature from the app's auth endpoint.
    Private,
    /// `presence-`: private, and the server keeps the list of members.
    Presence,
    /// `private-encrypted-`: private, payloads encrypted end to end; no client events.
    PrivateEncrypted,
    /// `#server-to-user-{id}`: only the signed-in user's own connections.
    ServerToUser,
}

/// A channel name with its kind, parsed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelName<'a> {
    name: &'a str,
    kind: ChannelKind,
    cache: bool,
}

impl<'a> ChannelName<'a> {
    /// Checks `name` against Pusher's rules and `max_len`, and finds its kind.
    pub fn parse(name: &'a str, max_len: usize) -> Result<Self, ProtocolError> {
        if name.is_empty() {
            return Err(ProtocolError::InvalidChannelName(String::new()));
        }
        if name.len() > max_len {
            return Err(ProtocolError::ChannelNameTooLong { max: max_len });
        }
        let body = name.strip_prefix('#').unwrap_or(name);
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_=@,.;".contains(&b);
        if !body.bytes().all(allowed) || (body.len() != name.len() && !is_server_to_user(name)) {
            return Err(ProtocolError::InvalidChannelName(name.to_owned()));
        }
        Ok(Self::classify(name))
    }

    /// Finds the kind of a name without validating it; for names that were checked before.
    pub fn classify(name: &'a str) -> Self {
        let (kind, rest) = if let Some(rest) = name.strip_prefix("private-encrypted-") {
            (ChannelKind::PrivateEncrypted, rest)
        } else if let Some(rest) = name.strip_prefix("private-") {
            (ChannelKind::Private, rest)
        } else if let Some(rest) = name.strip_prefix("presence-") {
            (ChannelKind::Presence, rest)
        } else if is_server_to_user(name) {
            (ChannelKind::ServerToUser, "")
        } else {
            (ChannelKind::Public, name)
        };
        Self {
            name,
            kind,
            cache: rest.starts_with("cache-"),
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &'a str {
        self.name
    }

    /// The channel's kind.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// Whether the channel keeps its last event for new subscribers (`cache-`, `private-cache-`,
    /// `presence-cache-`, `private-encrypted-cache-`).
    pub fn is_cache(&self) -> bool {
        self.cache
    }

    /// Whether subscribing needs a signature.
    pub fn needs_auth(&self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Private | ChannelKind::Presence | ChannelKind::PrivateEncrypted
        )
    }

    /// Whether the server tracks members on this channel.
    pub fn is_presence(&self) -> bool {
        self.kind == ChannelKind::Presence
    }

    /// Whether clients may send `client-` events here: private and presence channels, but not
    /// encrypted ones, whose payloads the server must never see in clear.
    pub fn allows_client_events(&self) -> bool {
        matches!(self.kind, ChannelKind::Private | ChannelKind::Presence)
    }

    /// The user id of a `#server-to-user-` channel.
    pub fn server_to_user_id(&self) -> Option<&'a str> {
        self.name.strip_prefix(SERVER_TO_USER_PREFIX)
    }
}

fn is_server_to_user(name: &str) -> bool {
    name.len() > SERVER_TO_USER_PREFIX.len() && name.starts_with(SERVER_TO_USER_PREFIX)
}

/// The name of the server-to-user channel of `user_id`.
pub fn server_to_user_channel(user_id: &str) -> String {
    format!("{SERVER_TO_USER_PREFIX}{user_id}")
}

#[cfg(test)]
mod tests;
