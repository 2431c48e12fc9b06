//! The Pusher protocol as one connection lives it: the handshake checks, subscriptions,
//! presence, sign-in and client events.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use soketi_adapter_core::ratelimit::LocalBucket;
use soketi_adapter_core::{Adapter, AdapterError, ChannelsError, SocketRef, cache};
use soketi_channels::Outbox;
use soketi_protocol::channel::{ChannelKind, server_to_user_channel};
use soketi_protocol::message::{
    self, ClientMessage, PresenceMember, SigninData, SubscribeData, UnsubscribeData,
};
use soketi_protocol::{App, ChannelName, CloseCode, ProtocolError, auth, ws};

use serde_json::{Value, json};

use crate::connection::{Connection, Handler};
use crate::console;
use crate::metrics::AppMetrics;
use crate::state::State;
use crate::webhooks::{Event, Webhooks};

/// Protocol versions this server speaks; pusher-js sends 7.
const SUPPORTED_PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// One connection's protocol state. Only its own task touches it, so it needs no lock.
pub(crate) struct Session {
    state: Arc<State>,
    app: Arc<App>,
    conn: Arc<Connection>,
    metrics: AppMetrics,
    /// Channels joined, with the user id for presence channels.
    channels: HashMap<String, Option<String>>,
    user_id: Option<String>,
    /// The connection's client-event budget, when the app sets one. A connection lives on one
    /// node, so its budget never needs sharing.
    client_events: Option<LocalBucket>,
    /// The largest message the client may send.
    max_message_bytes: usize,
}

impl Session {
    /// Checks a new connection against its app and the server's state, and greets it.
    /// Returns `None` when it was refused; the refusal is already queued on `conn`.
    pub(crate) async fn open(
        state: Arc<State>,
        conn: Arc<Connection>,
        app_key: &str,
        protocol: Option<&str>,
        origin: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Option<Self> {
        if state.is_closing() {
            conn.fail(
                CloseCode::SERVER_CLOSING,
                "Server is closing. Please reconnect shortly.",
            );
            return None;
        }
        let app = match state.apps.find_by_key(app_key).await {
            Ok(Some(app)) => app,
            Ok(None) => {
                conn.fail(
                    CloseCode::APP_NOT_FOUND,
                    &format!("App key {app_key} does not exist."),
                );
                return None;
            }
            Err(e) => {
                // pusher-js backs off before it reconnects after 4100-4199, so a store that
                // is down is not hammered.
                tracing::warn!(error = %e, "cannot look the app up");
                conn.fail(
                    CloseCode::OVER_CAPACITY,
                    "The app could not be looked up; try again later.",
                );
                return None;
            }
        };
        if let Some(p) = protocol
            && !p
                .parse()
                .is_ok_and(|v: u32| SUPPORTED_PROTOCOLS.contains(&v))
        {
            conn.fail(
                CloseCode::UNSUPPORTED_PROTOCOL,
                &format!("Unsupported protocol version {p}."),
            );
            return None;
        }
        if !app.enabled {
            conn.fail(CloseCode::APP_DISABLED, "The app is disabled.");
            return None;
        }
        if !app.allows_origin(origin) {
            conn.fail(
                CloseCode::UNAUTHORIZED,
                &format!(
                    "The origin {} may not connect to this app.",
                    origin.unwrap_or_default()
                ),
            );
            return None;
        }
        if let Err(e) = state
            .adapter
            .open_connection(&app.id, app.max_connections)
            .await
        {
            tracing::debug!(error = %e, app_id = %app.id, "connection refused");
            conn.fail(
                CloseCode::OVER_CAPACITY,
                "The app has reached its connection limit.",
            );
            return None;
        }
        // From here the connection is the app's: it counts, greeting included.
        let metrics = state.metrics.app(&app.id);
        metrics.connected();
        conn.attach_metrics(metrics.clone());
        conn.send_json(&message::connection_established(
            conn.socket_id().as_str(),
            state.config.activity_timeout,
        ));
        if app.enable_user_authentication {
            let deadline = state.uptime_ms() + state.config.user_authentication_timeout;
            conn.set_sign_in_deadline(deadline.max(1));
        }
        let client_events = app.max_client_events_per_sec.map(LocalBucket::new);
        let max_message_bytes = state.config.max_message_bytes(&app.limits);
        tracing::debug!(socket_id = %conn.socket_id(), app_id = %app.id, "connection opened");
        state.console.emit(&app.id, "connection", || {
            json!({
                "socket_id": conn.socket_id().as_str(),
                "origin": origin,
                "ip": ip.map(|ip| ip.to_string()),
            })
        });
        Some(Self {
            state,
            app,
            conn,
            metrics,
            channels: HashMap::new(),
            user_id: None,
            client_events,
            max_message_bytes,
        })
    }

    fn adapter(&self) -> &dyn Adapter {
        &*self.state.adapter
    }

    fn socket(&self) -> SocketRef {
        self.conn.clone()
    }

    /// Acts on one text frame.
    async fn handle(&mut self, text: &str) {
        let msg = match ClientMessage::parse(text) {
            Ok(msg) => msg,
            Err(e) => return self.reject_malformed(&e.to_string()),
        };
        match msg.event.as_str() {
            "pusher:ping" => self.conn.send_json(&message::pong()),
            "pusher:pong" => {}
            "pusher:subscribe" => self.subscribe(&msg).await,
            "pusher:unsubscribe" => match msg.data_as::<UnsubscribeData>() {
                Ok(data) => self.unsubscribe(&data.channel).await,
                Err(e) => self.reject_malformed(&e.to_string()),
            },
            "pusher:signin" => self.signin(&msg).await,
            event if event.starts_with("client-") => self.client_event(&msg).await,
            // Other events are not for the server; Pusher ignores them too.
            _ => {}
        }
    }

    /// Tells the consoles open on the app what this connection did; `fields` is built only
    /// when one is.
    fn console(&self, kind: &str, fields: impl FnOnce() -> Value) {
        self.state.console.emit(&self.app.id, kind, fields);
    }

    /// Sends the client a `pusher:error`, which the consoles see too.
    fn send_error(&self, code: Option<u16>, text: &str, channel: Option<&str>) {
        self.conn.send_json(&message::error(code, text, channel));
        self.console_error(code, text, channel);
    }

    fn console_error(&self, code: Option<u16>, text: &str, channel: Option<&str>) {
        let socket_id = self.conn.socket_id();
        self.console("error", || {
            json!({
                "socket_id": socket_id.as_str(),
                "code": code,
                "message": text,
                "channel": channel,
            })
        });
    }

    /// Closes the connection with `code` and `text`, which the consoles see too.
    fn fail(&self, code: CloseCode, text: &str) {
        self.console_error(Some(code.0), text, None);
        self.conn.fail(code, text);
    }

    /// Answers a frame the server cannot read, leaving the connection open.
    fn reject_malformed(&self, why: &str) {
        self.send_error(None, &format!("Invalid message: {why}"), None);
    }

    /// Refuses a subscription; `status` is a close code, or HTTP's 401 for a bad signature.
    fn subscription_error(&self, channel: &str, kind: &str, error: &str, status: u16) {
        self.conn
            .send_json(&message::subscription_error(channel, kind, error, status));
        self.console_error(Some(status), error, Some(channel));
    }

    async fn subscribe(&mut self, msg: &ClientMessage) {
        let data: SubscribeData = match msg.data_as() {
            Ok(data) => data,
            Err(e) => return self.reject_malformed(&e.to_string()),
        };
        let name = data.channel.as_str();
        if self.channels.contains_key(name) {
            // As Pusher answers: one membership per channel and connection.
            return self.send_error(
                None,
                &format!("Existing subscription to channel {name}"),
                None,
            );
        }
        let most = self.app.limits.max_subscriptions_per_connection;
        if self.channels.len() >= most {
            return self.subscription_error(
                name,
                "LimitReached",
                &format!("The connection has reached its limit of {most} subscriptions."),
                CloseCode::OVER_CAPACITY.0,
            );
        }
        let channel = match ChannelName::parse(name, self.app.limits.max_channel_name_length) {
            Ok(channel) => channel,
            Err(e @ ProtocolError::ChannelNameTooLong { .. }) => {
                return self.subscription_error(
                    name,
                    "LimitReached",
                    &e.to_string(),
                    CloseCode::UNAUTHORIZED.0,
                );
            }
            Err(e) => {
                return self.subscription_error(
                    name,
                    "InvalidChannel",
                    &e.to_string(),
                    CloseCode::UNAUTHORIZED.0,
                );
            }
        };
        if channel.kind() == ChannelKind::ServerToUser {
            // pusher-js subscribes to its user's channel after sign-in; the user's connections
            // already receive its events, so only the owner is told it succeeded.
            if channel.server_to_user_id() == self.user_id.as_deref() {
                self.conn.send_json(&message::subscription_succeeded(name));
            } else {
                self.subscription_error(
                    name,
                    "AuthError",
                    "Only the signed-in user may subscribe to its own channel.",
                    401,
                );
            }
            return;
        }
        if channel.needs_auth() {
            let to_sign = auth::channel_string_to_sign(
                self.conn.socket_id().as_str(),
                name,
                data.channel_data
                    .as_deref()
                    .filter(|_| channel.is_presence()),
            );
            let signed = data.auth.as_deref().is_some_and(|a| {
                auth::verify(a, &self.app.key, &self.app.secret, &to_sign).is_ok()
            });
            if !signed {
                return self.subscription_error(
                    name,
                    "AuthError",
                    &format!("Invalid signature for channel {name}."),
                    401,
                );
            }
        }
        tracing::debug!(socket_id = %self.conn.socket_id(), channel = name, "subscribe");
        if channel.is_presence() {
            if !self.join_presence(name, data.channel_data.as_deref()).await {
                return;
            }
        } else {
            let subscribed = self
                .adapter()
                .subscribe(&self.app.id, name, self.socket())
                .await;
            self.channels.insert(name.to_owned(), None);
            self.conn.send_json(&message::subscription_succeeded(name));
            if subscribed.is_some_and(|s| s.first_on_channel) {
                self.occupancy(name, true).await;
            }
            if self.app.enable_subscription_count {
                self.adapter()
                    .subscription_count_changed(&self.app.id, name);
            }
        }
        let socket_id = self.conn.socket_id();
        self.console(
            "subscribed",
            || json!({ "socket_id": socket_id.as_str(), "channel": name }),
        );
        if channel.is_cache() {
            let key = cache::channel_key(&self.app.id, name);
            match self.state.cache.get(&key).await {
                Ok(Some(event)) => self.conn.send(ws::text(&event)),
                Ok(None) => self.cache_miss(name),
                Err(e) => {
                    tracing::warn!(error = %e, channel = name, "cache unreachable; a cache miss");
                    self.cache_miss(name);
                }
            }
        }
    }

    /// Joins a presence channel; returns whether the connection is now a member.
    async fn join_presence(&mut self, name: &str, channel_data: Option<&str>) -> bool {
        let member = match channel_data.map(PresenceMember::from_channel_data) {
            Some(Ok(member)) => member,
            Some(Err(e)) => {
                self.subscription_error(name, "AuthError", &e.to_string(), 401);
                return false;
            }
            None => {
                self.subscription_error(
                    name,
                    "AuthError",
                    "Presence channels need channel_data.",
                    401,
                );
                return false;
            }
        };
        let limits = &self.app.limits;
        if member.user_id.chars().count() > limits.max_presence_user_id_length {
            self.subscription_error(
                name,
                "LimitReached",
                &format!(
                    "The presence member's user_id is over {} characters.",
                    limits.max_presence_user_id_length
                ),
                CloseCode::CLIENT_EVENT_REJECTED.0,
            );
            return false;
        }
        if member.info_size() > limits.max_presence_member_size_bytes {
            self.subscription_error(
                name,
                "LimitReached",
                &format!(
                    "The presence member's user_info is over {} bytes.",
                    limits.max_presence_member_size_bytes
                ),
                CloseCode::CLIENT_EVENT_REJECTED.0,
            );
            return false;
        }
        let user_id = member.user_id.clone();
        // The adapter registers the connection, writes its subscription_succeeded with the
        // fleet's members and announces a new user, in an order no other join can cut into.
        let joined = match self
            .adapter()
            .join_presence(
                &self.app.id,
                name,
                self.socket(),
                member,
                limits.max_presence_members_per_channel,
            )
            .await
        {
            Ok(joined) => joined,
            Err(AdapterError::Channels(e @ ChannelsError::PresenceFull { .. })) => {
                self.subscription_error(
                    name,
                    "LimitReached",
                    &e.to_string(),
                    CloseCode::OVER_CAPACITY.0,
                );
                return false;
            }
            Err(e) => {
                self.subscription_error(
                    name,
                    "ServerError",
                    &e.to_string(),
                    CloseCode::PRESENCE_SERVER_ERROR.0,
                );
                return false;
            }
        };
        self.channels.insert(name.to_owned(), Some(user_id.clone()));
        if joined.first_on_channel {
            self.occupancy(name, true).await;
        }
        if joined.first_anywhere {
            self.webhook(Event::MemberAdded {
                channel: name.to_owned(),
                user_id,
            });
        }
        true
    }

    /// Queues a webhook event when the app has webhooks.
    fn webhook(&self, event: Event) {
        if !self.app.webhooks.is_empty() {
            self.state.webhooks.fire(&self.app, event);
        }
    }

    /// Tells the fleet that a channel became occupied or empty here, and hands the event to
    /// the webhooks, which announce it once for the fleet. Only apps with webhooks pay for it.
    async fn occupancy(&self, name: &str, occupied: bool) {
        if self.app.webhooks.is_empty() {
            return;
        }
        if let Err(e) = self
            .adapter()
            .occupancy_changed(&self.app.id, name, occupied)
            .await
        {
            tracing::warn!(error = %e, channel = name, "occupancy not shared");
        }
        // Whether this node speaks for the fleet is decided once the other nodes' reports are
        // in: after a short settle for occupied, after the vacated delay for vacated.
        self.webhook(if occupied {
            Event::Occupied(name.to_owned())
        } else {
            Event::Vacated(name.to_owned())
        });
    }

    fn cache_miss(&self, name: &str) {
        self.conn.send_json(&message::cache_miss(name));
        self.webhook(Event::CacheMiss(name.to_owned()));
    }

    /// Publishes a frame to a channel's other subscribers; `what` names it in the log.
    async fn publish_to_others(&self, channel: &str, json: String, what: &str) {
        if let Err(e) = self
            .adapter()
            .publish(
                &self.app.id,
                channel,
                Bytes::from(json),
                Some(self.conn.socket_id()),
            )
            .await
        {
            tracing::warn!(error = %e, channel, "could not publish a {what}");
        }
    }

    async fn unsubscribe(&mut self, name: &str) {
        if self.channels.remove(name).is_none() {
            // As Pusher answers an unsubscribe from a channel the connection does not have.
            return self.send_error(
                None,
                &format!("No current subscription to channel {name}, or subscription in progress"),
                None,
            );
        }
        self.leave(name).await;
    }

    async fn leave(&self, name: &str) {
        let Some(left) = self
            .adapter()
            .leave_channel(&self.app.id, name, self.conn.socket_id())
            .await
        else {
            return;
        };
        let socket_id = self.conn.socket_id();
        self.console(
            "unsubscribed",
            || json!({ "socket_id": socket_id.as_str(), "channel": name }),
        );
        if self.app.enable_subscription_count && !name.starts_with("presence-") {
            // A connection that closes without unsubscribing lowers the count too: close
            // leaves its channels here.
            self.adapter()
                .subscription_count_changed(&self.app.id, name);
        }
        if let Some(user_id) = left.user_gone {
            self.webhook(Event::MemberRemoved {
                channel: name.to_owned(),
                user_id,
            });
        }
        if left.channel_empty {
            self.occupancy(name, false).await;
        }
    }

    async fn signin(&mut self, msg: &ClientMessage) {
        let data: SigninData = match msg.data_as() {
            Ok(data) => data,
            Err(e) => {
                return self.fail(CloseCode::UNAUTHORIZED, &format!("Invalid sign-in: {e}"));
            }
        };
        let to_sign = auth::user_string_to_sign(self.conn.socket_id().as_str(), &data.user_data);
        if auth::verify(&data.auth, &self.app.key, &self.app.secret, &to_sign).is_err() {
            return self.fail(CloseCode::UNAUTHORIZED, "Invalid signature for sign-in.");
        }
        let user_id = match message::user_id_from_user_data(&data.user_data) {
            Ok(id) => id,
            Err(e) => return self.fail(CloseCode::UNAUTHORIZED, &e.to_string()),
        };
        let watchlist = if self.app.enable_watchlist_events {
            match message::watchlist_from_user_data(&data.user_data) {
                Ok(list) if list.len() > message::MAX_WATCHLIST => {
                    return self.send_error(
                        Some(CloseCode::UNAUTHORIZED.0),
                        &format!(
                            "A watchlist may hold at most {} user ids; this one holds {}.",
                            message::MAX_WATCHLIST,
                            list.len()
                        ),
                        None,
                    );
                }
                Ok(list) => list,
                Err(e) => return self.fail(CloseCode::UNAUTHORIZED, &e.to_string()),
            }
        } else {
            Vec::new()
        };
        let previous = self.user_id.take();
        self.adapter()
            .sign_in(&self.app.id, self.socket(), &user_id, previous.as_deref())
            .await;
        self.conn.set_sign_in_deadline(0);
        if self.tracks_users() {
            if let Some(previous) = previous.as_deref() {
                self.user_signed_out(previous).await;
            }
            // The user's first connection here: the webhooks decide whether it is the fleet's.
            if self.adapter().user_signed_in(&self.app.id, &user_id).await {
                self.webhook(Event::UserOnline(user_id.clone()));
            }
        }
        tracing::debug!(
            user_id,
            channel = server_to_user_channel(&user_id),
            "signed in"
        );
        self.user_id = Some(user_id);
        self.conn
            .send_json(&message::signin_success(&data.user_data));
        if self.app.enable_watchlist_events {
            // After the success, so that the client reads its watchlist as a signed-in user.
            self.adapter()
                .watch(&self.app.id, self.socket(), &watchlist);
        }
    }

    /// Whether the app needs to know who is online: for watchlists, or for the user webhooks.
    fn tracks_users(&self) -> bool {
        self.app.enable_watchlist_events
            || Webhooks::wanted(&self.app, "user_online")
            || Webhooks::wanted(&self.app, "user_offline")
    }

    /// Forgets one of `user_id`'s signed-in connections, and hands `user_offline` to the
    /// webhooks when it was the last here: they wait out the vacated delay, then announce it
    /// if the user is online nowhere and this node speaks for the fleet.
    async fn user_signed_out(&self, user_id: &str) {
        if self.adapter().user_signed_out(&self.app.id, user_id).await {
            self.webhook(Event::UserOffline(user_id.to_owned()));
        }
    }

    async fn client_event(&mut self, msg: &ClientMessage) {
        let channel = msg.channel.as_deref().unwrap_or_default();
        let refuse = |why: &str| {
            self.send_error(Some(CloseCode::CLIENT_EVENT_REJECTED.0), why, Some(channel));
        };
        let limits = &self.app.limits;
        if !self.app.enable_client_messages {
            return refuse("The app does not have client messaging enabled.");
        }
        if msg.event.len() > limits.max_event_name_length {
            return refuse(&format!(
                "Event names may not be longer than {} characters.",
                limits.max_event_name_length
            ));
        }
        if !ChannelName::classify(channel).allows_client_events() {
            return refuse("Client events are only allowed on private and presence channels.");
        }
        let Some(member) = self.channels.get(channel) else {
            return refuse("Client events need a subscription to the channel.");
        };
        let Some(data) = msg.data.as_deref() else {
            return refuse("Client events need data.");
        };
        if data.get().len() > limits.max_event_payload_bytes {
            return refuse(&format!(
                "Event data may not be larger than {} bytes.",
                limits.max_event_payload_bytes
            ));
        }
        if self
            .client_events
            .as_ref()
            .is_some_and(|bucket| !bucket.take(1).allowed)
        {
            return refuse("The rate limit for sending client events exceeded the quota.");
        }
        let json = message::channel_event(&msg.event, channel, data, member.as_deref());
        self.publish_to_others(channel, json, "client event").await;
        let socket_id = self.conn.socket_id();
        self.console("event", || {
            json!({
                "channel": channel,
                "event": msg.event,
                "data": console::excerpt(data.get()),
                "source": "client",
                "socket_id": socket_id.as_str(),
            })
        });
        if Webhooks::wanted(&self.app, "client_event") {
            self.webhook(Event::Client {
                channel: channel.to_owned(),
                event: msg.event.clone(),
                data: data.to_owned(),
                socket_id: self.conn.socket_id().as_str().to_owned(),
                user_id: member.clone(),
            });
        }
    }

    /// Leaves every channel and forgets the connection.
    pub(crate) async fn close(&mut self) {
        tracing::debug!(
            socket_id = %self.conn.socket_id(),
            app_id = %self.app.id,
            channels = self.channels.len(),
            "connection closed"
        );
        let channels: Vec<String> = self.channels.drain().map(|(name, _)| name).collect();
        for name in channels {
            self.leave(&name).await;
        }
        let user_id = self.user_id.take();
        if self.app.enable_watchlist_events {
            self.adapter().unwatch(&self.app.id, self.conn.socket_id());
        }
        self.adapter()
            .close_connection(&self.app.id, self.conn.socket_id(), user_id.as_deref())
            .await;
        if let Some(user_id) = user_id.as_deref()
            && self.tracks_users()
        {
            self.user_signed_out(user_id).await;
        }
        self.metrics.disconnected();
        let socket_id = self.conn.socket_id();
        self.console(
            "disconnection",
            || json!({ "socket_id": socket_id.as_str() }),
        );
    }
}

impl Handler for Session {
    fn text<'a>(
        &'a mut self,
        text: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.handle(text))
    }

    fn reject(&self, why: &str) {
        self.reject_malformed(why);
    }

    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }
}
