//! The JSON frames of the protocol: what clients send, and builders for what the server sends.
//!
//! Builders return the JSON text of one frame. Following Pusher, the `data` of server events is
//! a JSON-encoded string, except `pusher:error` and `pusher:subscription_error`, whose `data` is
//! an object.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ProtocolError;

/// A frame received from a client. `data` is kept as raw JSON so that client events are
/// forwarded without being parsed and printed again.
#[derive(Debug, Deserialize)]
pub struct ClientMessage {
    /// The event name.
    pub event: String,
    /// The channel, for subscriptions and client events.
    #[serde(default)]
    pub channel: Option<String>,
    /// The payload, as sent.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        serde_json::from_str(text).map_err(|e| ProtocolError::MalformedMessage(e.to_string()))
    }

    /// Reads `data` as `T`. pusher-js sends an object; some clients send the object encoded
    /// as a JSON string, which is accepted too.
    pub fn data_as<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ProtocolError> {
        let raw = self
            .data
            .as_deref()
            .ok_or_else(|| ProtocolError::MalformedMessage("missing data".into()))?;
        let bad = |e: serde_json::Error| ProtocolError::MalformedMessage(e.to_string());
        match serde_json::from_str::<T>(raw.get()) {
            Ok(v) => Ok(v),
            Err(first) => match serde_json::from_str::<String>(raw.get()) {
                Ok(inner) => serde_json::from_str(&inner).map_err(bad),
                Err(_) => Err(bad(first)),
            },
        }
    }
}

/// The `data` of `pusher:subscribe`.
#[derive(Debug, Deserialize)]
pub struct SubscribeData {
    /// The channel to join.
    pub channel: String,
    /// `key:signature` for private, presence and encrypted channels.
    #[serde(default)]
    pub auth: Option<String>,
    /// For presence channels: the JSON text `{"user_id":…,"user_info":…}` that was signed.
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// The `data` of `pusher:unsubscribe`.
#[derive(Debug, Deserialize)]
pub struct UnsubscribeData {
    /// The channel to leave.
    pub channel: String,
}

/// The `data` of `pusher:signin`.
#[derive(Debug, Deserialize)]
pub struct SigninData {
    /// `key:signature` over `socket_id::user::user_data`.
    pub auth: String,
    /// The JSON text of the user object, which must have an `id`.
    pub user_data: String,
}

/// A presence member: a user id and what the app says about the user.
#[derive(Debug, Clone)]
pub struct PresenceMember {
    /// The user id, as a string even when the app sent a number.
    pub user_id: String,
    /// The app's `user_info`, kept as JSON text; `None` when absent.
    pub user_info: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct RawChannelData {
    user_id: serde_json::Value,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
}

/// Turns a JSON id (string or number) into the string form Pusher uses.
fn id_to_string(id: &serde_json::Value) -> Option<String> {
    match id {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl PresenceMember {
    /// Reads presence `channel_data`.
    pub fn from_channel_data(channel_data: &str) -> Result<Self, ProtocolError> {
        let raw: RawChannelData = serde_json::from_str(channel_data)
            .map_err(|e| ProtocolError::InvalidUserData(e.to_string()))?;
        let user_id = id_to_string(&raw.user_id).ok_or_else(|| {
            ProtocolError::InvalidUserData("user_id must be a non-empty string or a number".into())
        })?;
        Ok(Self {
            user_id,
            user_info: raw.user_info.filter(|v| v.get() != "null"),
        })
    }

    /// The size of `user_info` in bytes, as the member size limit counts it.
    pub fn info_size(&self) -> usize {
        self.user_info.as_ref().map_or(0, |v| v.get().len())
    }
}

/// Reads the user id from sign-in `user_data`.
pub fn user_id_from_user_data(user_data: &str) -> Result<String, ProtocolError> {
    let value: serde_json::Value = serde_json::from_str(user_data)
        .map_err(|e| ProtocolError::InvalidUserData(e.to_string()))?;
    value
        .get("id")
        .and_then(id_to_string)
        .ok_or_else(|| ProtocolError::InvalidUserData("user_data has no id".into()))
}

/// The most user ids a watchlist may hold: Pusher's documented limit.
pub const MAX_WATCHLIST: usize = 100;

/// Reads the `watchlist` of sign-in `user_data`: the user ids the user watches, ids as strings
/// (numbers are written out). Absent is empty; anything but a list of ids is an error.
pub fn watchlist_from_user_data(user_data: &str) -> Result<Vec<String>, ProtocolError> {
    let value: serde_json::Value = serde_json::from_str(user_data)
        .map_err(|e| ProtocolError::InvalidUserData(e.to_string()))?;
    match value.get("watchlist") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(ids)) => ids
            .iter()
            .map(|id| {
                id_to_string(id).ok_or_else(|| {
                    ProtocolError::InvalidUserData(
                        "watchlist ids must be non-empty strings or numbers".into(),
                    )
                })
            })
            .collect(),
        Some(_) => Err(ProtocolError::InvalidUserData(
            "watchlist must be a list of user ids".into(),
        )),
    }
}

/// `pusher_internal:watchlist_events`: for each name (`online`, `offline`) with ids, one event
/// `{"name", "user_ids"}`, as pusher-js's `user.watchlist` emits them.
pub fn watchlist_events(events: &[(&str, &[String])]) -> String {
    #[derive(Serialize)]
    struct Event<'a> {
        name: &'a str,
        user_ids: &'a [String],
    }
    #[derive(Serialize)]
    struct D<'a> {
        events: Vec<Event<'a>>,
    }
    let events = events
        .iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(name, user_ids)| Event { name, user_ids })
        .collect();
    to_json(
        "pusher_internal:watchlist_events",
        None,
        &json_string(&D { events }),
        None,
    )
}

#[derive(Serialize)]
struct Frame<'a, D: Serialize + ?Sized> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a D,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

fn to_json<D: Serialize + ?Sized>(
    event: &str,
    channel: Option<&str>,
    data: &D,
    user_id: Option<&str>,
) -> String {
    serde_json::to_string(&Frame {
        event,
        channel,
        data,
        user_id,
    })
    .unwrap_or_else(|_| unreachable!("frames hold only strings, numbers and valid raw JSON"))
}

fn json_string<D: Serialize + ?Sized>(data: &D) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| unreachable!("plain data serializes"))
}

/// `pusher:connection_established`.
pub fn connection_established(socket_id: &str, activity_timeout: u64) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        socket_id: &'a str,
        activity_timeout: u64,
    }
    let data = json_string(&D {
        socket_id,
        activity_timeout,
    });
    to_json("pusher:connection_established", None, &data, None)
}

/// `pusher:error` with a code (`null` for errors Pusher gives no code) and a message.
pub fn error(code: Option<u16>, message: &str, channel: Option<&str>) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    to_json("pusher:error", channel, &D { code, message }, None)
}

/// `pusher:pong`.
pub fn pong() -> String {
    r#"{"event":"pusher:pong","data":"{}"}"#.to_owned()
}

/// `pusher:ping`, sent by the server to a client that has been quiet.
pub fn ping() -> String {
    r#"{"event":"pusher:ping","data":"{}"}"#.to_owned()
}

/// `pusher_internal:subscription_succeeded` for a channel without presence.
pub fn subscription_succeeded(channel: &str) -> String {
    to_json(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        "{}",
        None,
    )
}

/// `pusher_internal:subscription_count`: the channel's subscribers across the fleet, which
/// pusher-js re-emits on the channel as `pusher:subscription_count`.
pub fn subscription_count(channel: &str, count: u64) -> String {
    to_json(
        "pusher_internal:subscription_count",
        Some(channel),
        &format!("{{\"subscription_count\":{count}}}"),
        None,
    )
}

/// `pusher_internal:subscription_succeeded` for a presence channel, with its members.
pub fn presence_subscription_succeeded(channel: &str, members: &[PresenceMember]) -> String {
    let mut hash = serde_json::Map::new();
    let mut ids = Vec::with_capacity(members.len());
    for m in members {
        ids.push(m.user_id.as_str());
        let info = match &m.user_info {
            Some(raw) => serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        };
        hash.insert(m.user_id.clone(), info);
    }
    let data = serde_json::json!({
        "presence": { "ids": ids, "hash": hash, "count": members.len() }
    });
    to_json(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &json_string(&data),
        None,
    )
}

/// `pusher:subscription_error` with Pusher's `{type, error, status}`.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        status: u16,
    }
    to_json(
        "pusher:subscription_error",
        Some(channel),
        &D {
            kind,
            error,
            status,
        },
        None,
    )
}

/// `pusher_internal:member_added`.
pub fn member_added(channel: &str, member: &PresenceMember) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        user_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_info: Option<&'a RawValue>,
    }
    let data = json_string(&D {
        user_id: &member.user_id,
        user_info: member.user_info.as_deref(),
    });
    to_json("pusher_internal:member_added", Some(channel), &data, None)
}

/// `pusher_internal:member_removed`.
pub fn member_removed(channel: &str, user_id: &str) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        user_id: &'a str,
    }
    let data = json_string(&D { user_id });
    to_json("pusher_internal:member_removed", Some(channel), &data, None)
}

/// `pusher:cache_miss`, sent to a new subscriber of a cache channel with nothing cached.
pub fn cache_miss(channel: &str) -> String {
    to_json("pusher:cache_miss", Some(channel), "{}", None)
}

/// `pusher:signin_success`, echoing the signed `user_data`.
pub fn signin_success(user_data: &str) -> String {
    #[derive(Serialize)]
    struct D<'a> {
        user_data: &'a str,
    }
    to_json(
        "pusher:signin_success",
        None,
        &json_string(&D { user_data }),
        None,
    )
}

/// An event on a channel, with `data` as raw JSON (a string for HTTP publishes, anything a
/// client sent for client events) and, for client events on presence channels, the sender.
pub fn channel_event(event: &str, channel: &str, data: &RawValue, user_id: Option<&str>) -> String {
    to_json(event, Some(channel), data, user_id)
}

#[cfg(test)]
mod tests;
