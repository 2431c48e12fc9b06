//! An app: its credentials, switches and limits, as every part of the server sees it.

/// Size and count limits of one app. The defaults are soketi's (from its code, where its
/// documentation differs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppLimits {
    /// Members per presence channel.
    pub max_presence_members_per_channel: usize,
    /// Bytes of one presence member's `user_info` (soketi: 2 KB).
    pub max_presence_member_size_bytes: usize,
    /// Characters of a channel name.
    pub max_channel_name_length: usize,
    /// Channels named by one HTTP publish.
    pub max_event_channels_at_once: usize,
    /// Characters of an event name.
    pub max_event_name_length: usize,
    /// Bytes of one event's `data` (soketi: 100 KB).
    pub max_event_payload_bytes: usize,
    /// Events in one `batch_events` request.
    pub max_event_batch_size: usize,
    /// Channels one connection may be subscribed to at once.
    pub max_subscriptions_per_connection: usize,
    /// Characters of a presence member's `user_id`.
    pub max_presence_user_id_length: usize,
}

impl Default for AppLimits {
    fn default() -> Self {
        Self {
            max_presence_members_per_channel: 100,
            max_presence_member_size_bytes: 2 * 1024,
            max_channel_name_length: 200,
            max_event_channels_at_once: 100,
            max_event_name_length: 200,
            max_event_payload_bytes: 100 * 1024,
            max_event_batch_size: 10,
            max_subscriptions_per_connection: 1000,
            max_presence_user_id_length: 128,
        }
    }
}

/// A webhook of an app: where its events go, which ones, and for which channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Webhook {
    /// Where the events are posted; empty for a webhook that invokes [`Webhook::lambda`].
    pub url: String,
    /// The AWS Lambda function invoked with the events, for a webhook without a URL.
    pub lambda: Option<LambdaTarget>,
    /// The event names sent (`channel_occupied`, `member_added`, ...).
    pub event_types: Vec<String>,
    /// Extra HTTP headers.
    pub headers: Vec<(String, String)>,
    /// Only channels whose name starts with this.
    pub channel_name_starts_with: Option<String>,
    /// Only channels whose name ends with this.
    pub channel_name_ends_with: Option<String>,
}

/// An AWS Lambda function that a webhook invokes with `{payload, headers}`: the body and
/// headers an HTTP webhook would have been sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LambdaTarget {
    /// The function's name or ARN.
    pub function: String,
    /// Invoke without waiting for the function (`Event`) rather than for its result
    /// (`RequestResponse`).
    pub asynchronous: bool,
    /// The function's region; the server's default when unset.
    pub region: Option<String>,
    /// An endpoint other than AWS's.
    pub endpoint: Option<String>,
    /// An access key to sign with instead of the server's credentials: id, secret, session
    /// token.
    pub credentials: Option<(String, String, Option<String>)>,
}

impl std::fmt::Debug for LambdaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaTarget")
            .field("function", &self.function)
            .field("asynchronous", &self.asynchronous)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

impl Webhook {
    /// Whether this webhook takes `event` on `channel`: a listed type, and both filters match.
    pub fn wants(&self, event: &str, channel: &str) -> bool {
        self.event_types.iter().any(|t| t == event)
            && self
                .channel_name_starts_with
                .as_deref()
                .is_none_or(|p| channel.starts_with(p))
            && self
                .channel_name_ends_with
                .as_deref()
                .is_none_or(|s| channel.ends_with(s))
    }
}

/// One app. Limits of `None` are unlimited (soketi writes them as -1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// The app id, used in HTTP API paths.
    pub id: String,
    /// The public key, used in WebSocket paths and signatures.
    pub key: String,
    /// The secret that signs everything.
    pub secret: String,
    /// A disabled app refuses connections with 4003.
    pub enabled: bool,
    /// Whether clients may send `client-` events.
    pub enable_client_messages: bool,
    /// Whether connections must sign in within the user authentication timeout.
    pub enable_user_authentication: bool,
    /// Whether a connection that signs in with a `watchlist` hears when its watched users come
    /// online and go offline (`pusher_internal:watchlist_events`).
    pub enable_watchlist_events: bool,
    /// Whether subscribers of non-presence channels hear the channel's subscriber count across
    /// the fleet when it changes (`pusher_internal:subscription_count`), and the webhooks get
    /// `subscription_count`.
    pub enable_subscription_count: bool,
    /// Concurrent connections.
    pub max_connections: Option<u64>,
    /// Events per second published through the HTTP API.
    pub max_backend_events_per_sec: Option<u64>,
    /// Client events per second per connection.
    pub max_client_events_per_sec: Option<u64>,
    /// HTTP read requests per second.
    pub max_read_req_per_sec: Option<u64>,
    /// Size and count limits.
    pub limits: AppLimits,
    /// Webhooks.
    pub webhooks: Vec<Webhook>,
    /// The origins whose pages may connect (see [`origin_matches`]); empty allows every one.
    pub allowed_origins: Vec<String>,
}

impl App {
    /// An enabled app with the given credentials, no quotas and the default limits.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            enabled: true,
            enable_client_messages: false,
            enable_user_authentication: false,
            enable_watchlist_events: false,
            enable_subscription_count: false,
            max_connections: None,
            max_backend_events_per_sec: None,
            max_client_events_per_sec: None,
            max_read_req_per_sec: None,
            limits: AppLimits::default(),
            webhooks: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

impl App {
    /// Whether a WebSocket whose `Origin` header is `origin` may connect: any when the app lists
    /// no origins, or when the client sent none (server-side clients send none); otherwise one
    /// of the app's patterns must match it (see [`origin_matches`]).
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => {
                self.allowed_origins.is_empty()
                    || self
                        .allowed_origins
                        .iter()
                        .any(|p| origin_matches(p, origin))
            }
        }
    }
}

/// Whether the origin `origin` (`scheme://host[:port]`) matches `pattern`: `*` matches every
/// origin; a pattern without a scheme matches any scheme; a `*` label matches any one label of
/// the host (`https://*.example.com` matches `https://app.example.com`, not
/// `https://example.com`); the port must be the same; case is ignored.
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    let pattern = pattern.trim().trim_end_matches('/');
    if pattern == "*" {
        return true;
    }
    let split = |s: &str| -> (Option<String>, String) {
        let s = s.trim().trim_end_matches('/').to_ascii_lowercase();
        match s.split_once("://") {
            Some((scheme, rest)) => (Some(scheme.to_owned()), rest.to_owned()),
            None => (None, s),
        }
    };
    let (pattern_scheme, pattern_host) = split(pattern);
    let (origin_scheme, origin_host) = split(origin);
    if pattern_scheme.is_some() && pattern_scheme != origin_scheme {
        return false;
    }
    let labels = |host: &str| host.split('.').map(str::to_owned).collect::<Vec<_>>();
    let (want, have) = (labels(&pattern_host), labels(&origin_host));
    want.len() == have.len()
        && want.iter().zip(&have).all(|(w, h)| {
            w == h
                || w == "*"
                // The last label carries the port: `*:8080` matches any label on that port.
                || w.strip_prefix('*').is_some_and(|port| port.starts_with(':') && h.ends_with(port))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_filters() {
        let hook = Webhook {
            url: "http://x".into(),
            event_types: vec!["channel_occupied".into()],
            channel_name_starts_with: Some("presence-".into()),
            channel_name_ends_with: Some("-room".into()),
            ..Webhook::default()
        };
        assert!(hook.wants("channel_occupied", "presence-a-room"));
        assert!(!hook.wants("channel_vacated", "presence-a-room"));
        assert!(!hook.wants("channel_occupied", "private-a-room"));
        assert!(!hook.wants("channel_occupied", "presence-a"));
    }

    #[test]
    fn origins_match_their_patterns() {
        let cases = [
            ("*", "https://anything.example", true),
            ("https://example.com", "https://example.com", true),
            ("https://example.com", "https://EXAMPLE.com/", true),
            ("https://example.com", "http://example.com", false),
            ("example.com", "http://example.com", true),
            ("https://example.com", "https://example.com:8443", false),
            ("https://example.com:8443", "https://example.com:8443", true),
            ("https://*.example.com", "https://app.example.com", true),
            ("https://*.example.com", "https://example.com", false),
            ("https://*.example.com", "https://a.b.example.com", false),
            ("https://*.example.com", "https://app.example.org", false),
            ("http://localhost:*", "http://localhost:3000", false),
            ("http://*:3000", "http://localhost:3000", true),
            (
                "https://example.com",
                "https://example.com.evil.test",
                false,
            ),
        ];
        for (pattern, origin, expected) in cases {
            assert_eq!(
                origin_matches(pattern, origin),
                expected,
                "{pattern} ~ {origin}"
            );
        }
        let mut app = App::new("id", "key", "secret");
        assert!(
            app.allows_origin(Some("https://anywhere.test")),
            "no list: every origin"
        );
        app.allowed_origins = vec!["https://*.example.com".into()];
        assert!(app.allows_origin(Some("https://app.example.com")));
        assert!(!app.allows_origin(Some("https://evil.test")));
        assert!(
            app.allows_origin(None),
            "a server-side client sends no Origin"
        );
    }
}
