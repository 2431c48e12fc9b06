//! Apps as the configuration describes them, in any of soketi's spellings (camelCase, the
//! snake_case of SQL tables, the PascalCase of DynamoDB), and their conversion to
//! [`soketi_protocol::App`].

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use soketi_protocol::{App, AppLimits, LambdaTarget, Webhook};

use super::ConfigError;

/// One webhook of an app, as soketi defines it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "snake_case")]
pub struct WebhookConfig {
    /// Where events are posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An AWS Lambda function to invoke instead of a URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda_function: Option<String>,
    /// The event types sent to this webhook.
    pub event_types: Vec<String>,
    /// Extra HTTP headers.
    pub headers: BTreeMap<String, String>,
    /// Which channels' events are sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<WebhookFilter>,
    /// Lambda options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<Value>,
}

impl WebhookConfig {
    /// Where the webhook sends: its URL, or its Lambda function (with an empty URL); the
    /// reason when it cannot be sent.
    pub(crate) fn target(&self) -> Result<(String, Option<LambdaTarget>), String> {
        match (&self.url, &self.lambda_function) {
            (Some(url), _) if url.starts_with("http://") || url.starts_with("https://") => {
                Ok((url.clone(), None))
            }
            (Some(url), _) => Err(format!(
                "its url is {url:?}; use an http:// or https:// URL"
            )),
            (None, Some(function)) if !function.is_empty() => {
                Ok((String::new(), Some(self.lambda_target(function)?)))
            }
            (None, _) => Err("it has neither a url nor a lambda_function".into()),
        }
    }

    /// The Lambda options soketi reads: `lambda.async`, `lambda.region` and the AWS client's
    /// options (`super::aws::client_options`).
    fn lambda_target(&self, function: &str) -> Result<LambdaTarget, String> {
        let mut target = LambdaTarget {
            function: function.to_owned(),
            ..LambdaTarget::default()
        };
        let options = match &self.lambda {
            None | Some(Value::Null) => return Ok(target),
            Some(Value::Object(options)) => options,
            Some(other) => return Err(format!("its lambda is {other}; use an object")),
        };
        for (key, value) in options {
            match key.as_str() {
                "async" => {
                    target.asynchronous = match value {
                        Value::Bool(b) => *b,
                        Value::String(s) if s == "true" || s == "false" => s == "true",
                        Value::Null => false,
                        other => return Err(format!("lambda.async is {other}; use true or false")),
                    }
                }
                "region" => {
                    target.region = Some(
                        value
                            .as_str()
                            .ok_or_else(|| format!("lambda.region is {value}; use a string"))?
                            .to_owned(),
                    );
                }
                "client_options" | "clientOptions" => {}
                other => {
                    return Err(format!(
                        "lambda.{other} is not an option (there are async, region and \
                         client_options)"
                    ));
                }
            }
        }
        let client = options
            .get("client_options")
            .or_else(|| options.get("clientOptions"))
            .unwrap_or(&Value::Null);
        let client = super::aws::client_options(client, "lambda.client_options")?;
        // As in soketi, the client's options win over `lambda.region`.
        target.region = client.region.or(target.region);
        target.endpoint = client.endpoint;
        target.credentials = client.credentials;
        Ok(target)
    }
}

/// Channel filters of a webhook; both must match when both are set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "snake_case")]
pub struct WebhookFilter {
    /// The channel name starts with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_name_starts_with: Option<String>,
    /// The channel name ends with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_name_ends_with: Option<String>,
}

/// One app as configured. Every field is optional: an unset limit falls back to the server's
/// limit, an unset quota is unlimited.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AppConfig {
    /// The app id.
    #[serde(
        alias = "Id",
        alias = "AppId",
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    /// The public key.
    #[serde(
        alias = "Key",
        alias = "AppKey",
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub key: Option<String>,
    /// The secret.
    #[serde(
        alias = "Secret",
        alias = "AppSecret",
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret: Option<String>,
    /// Whether the app accepts connections.
    #[serde(
        alias = "Enabled",
        deserialize_with = "opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub enabled: Option<bool>,
    /// Concurrent connections; -1 is unlimited.
    #[serde(
        alias = "max_connections",
        alias = "MaxConnections",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connections: Option<f64>,
    /// Whether clients may send `client-` events.
    #[serde(
        alias = "enable_client_messages",
        alias = "EnableClientMessages",
        deserialize_with = "opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_client_messages: Option<bool>,
    /// Whether connections must sign in.
    #[serde(
        alias = "enable_user_authentication",
        alias = "EnableUserAuthentication",
        deserialize_with = "opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_user_authentication: Option<bool>,
    /// Whether signed-in connections get watchlist events.
    #[serde(
        alias = "enable_watchlist_events",
        alias = "EnableWatchlistEvents",
        deserialize_with = "opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_watchlist_events: Option<bool>,
    /// Whether subscribers get `subscription_count` events.
    #[serde(
        alias = "enable_subscription_count",
        alias = "EnableSubscriptionCount",
        deserialize_with = "opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_subscription_count: Option<bool>,
    /// Events per second through the HTTP API; -1 is unlimited.
    #[serde(
        alias = "max_backend_events_per_sec",
        alias = "maxBackendEventsPerSec",
        alias = "MaxBackendEventsPerSecond",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_backend_events_per_second: Option<f64>,
    /// Client events per second per connection; -1 is unlimited.
    #[serde(
        alias = "max_client_events_per_sec",
        alias = "maxClientEventsPerSec",
        alias = "MaxClientEventsPerSecond",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_client_events_per_second: Option<f64>,
    /// HTTP read requests per second; -1 is unlimited.
    #[serde(
        alias = "max_read_req_per_sec",
        alias = "maxReadReqPerSec",
        alias = "MaxReadRequestsPerSecond",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_read_requests_per_second: Option<f64>,
    /// Members per presence channel.
    #[serde(
        alias = "max_presence_members_per_channel",
        alias = "MaxPresenceMembersPerChannel",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_presence_members_per_channel: Option<f64>,
    /// Kilobytes of one member's `user_info`.
    #[serde(
        alias = "max_presence_member_size_in_kb",
        alias = "MaxPresenceMemberSizeInKb",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_presence_member_size_in_kb: Option<f64>,
    /// Characters of a channel name.
    #[serde(
        alias = "max_channel_name_length",
        alias = "MaxChannelNameLength",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_channel_name_length: Option<f64>,
    /// Channels per HTTP publish.
    #[serde(
        alias = "max_event_channels_at_once",
        alias = "MaxEventChannelsAtOnce",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_event_channels_at_once: Option<f64>,
    /// Characters of an event name.
    #[serde(
        alias = "max_event_name_length",
        alias = "MaxEventNameLength",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_event_name_length: Option<f64>,
    /// Kilobytes of one event's data.
    #[serde(
        alias = "max_event_payload_in_kb",
        alias = "MaxEventPayloadInKb",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_event_payload_in_kb: Option<f64>,
    /// Events per batch.
    #[serde(
        alias = "max_event_batch_size",
        alias = "MaxEventBatchSize",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_event_batch_size: Option<f64>,
    /// Channels one connection may be subscribed to at once.
    #[serde(
        alias = "max_subscriptions_per_connection",
        alias = "MaxSubscriptionsPerConnection",
        deserialize_with = "opt_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_subscriptions_per_connection: Option<f64>,
    /// The origins whose pages may connect (`*` wildcards in host labels); unset or empty
    /// allows every origin. A list, its JSON text, or a comma-separated string.
    #[serde(
        alias = "allowed_origins",
        alias = "AllowedOrigins",
        deserialize_with = "opt_string_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_origins: Option<Vec<String>>,
    /// Webhooks, as a list or as its JSON text.
    #[serde(
        alias = "Webhooks",
        deserialize_with = "opt_webhooks",
        skip_serializing_if = "Option::is_none"
    )]
    pub webhooks: Option<Vec<WebhookConfig>>,
}

impl AppConfig {
    /// soketi's default app.
    pub fn default_app() -> Self {
        Self {
            id: Some("app-id".into()),
            key: Some("app-key".into()),
            secret: Some("app-secret".into()),
            enabled: Some(true),
            max_connections: Some(-1.0),
            enable_client_messages: Some(false),
            enable_user_authentication: Some(false),
            enable_watchlist_events: Some(false),
            enable_subscription_count: Some(false),
            max_backend_events_per_second: Some(-1.0),
            max_client_events_per_second: Some(-1.0),
            max_read_requests_per_second: Some(-1.0),
            webhooks: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Fills the fields this app leaves unset from `base`.
    fn or(self, base: AppConfig) -> Self {
        macro_rules! pick {
            ($($field:ident),+) => { Self { $($field: self.$field.or(base.$field),)+ } };
        }
        pick!(
            id,
            key,
            secret,
            enabled,
            max_connections,
            enable_client_messages,
            enable_user_authentication,
            enable_watchlist_events,
            enable_subscription_count,
            max_backend_events_per_second,
            max_client_events_per_second,
            max_read_requests_per_second,
            max_presence_members_per_channel,
            max_presence_member_size_in_kb,
            max_channel_name_length,
            max_event_channels_at_once,
            max_event_name_length,
            max_event_payload_in_kb,
            max_event_batch_size,
            max_subscriptions_per_connection,
            allowed_origins,
            webhooks
        )
    }

    /// Checks that the app at `index` has credentials, and webhooks this build can send.
    pub(super) fn check(&self, index: usize) -> Result<(), ConfigError> {
        for (i, hook) in self.webhooks.iter().flatten().enumerate() {
            if let Err(message) = hook.target() {
                return Err(ConfigError::Webhook {
                    app: index,
                    id: self.id.clone().unwrap_or_default(),
                    webhook: i,
                    message,
                });
            }
        }
        for (field, value) in [
            ("id", &self.id),
            ("key", &self.key),
            ("secret", &self.secret),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError::AppWithout { app: index, field });
            }
        }
        Ok(())
    }

    /// The app as the server uses it, with `limits` where the app sets none.
    pub(crate) fn to_app(&self, _index: usize, limits: &AppLimits) -> App {
        let mut app = App::new(
            self.id.clone().unwrap_or_default(),
            self.key.clone().unwrap_or_default(),
            self.secret.clone().unwrap_or_default(),
        );
        app.enabled = self.enabled.unwrap_or(true);
        app.enable_client_messages = self.enable_client_messages.unwrap_or(false);
        app.enable_user_authentication = self.enable_user_authentication.unwrap_or(false);
        app.enable_watchlist_events = self.enable_watchlist_events.unwrap_or(false);
        app.enable_subscription_count = self.enable_subscription_count.unwrap_or(false);
        app.max_connections = quota(self.max_connections);
        app.max_backend_events_per_sec = quota(self.max_backend_events_per_second);
        app.max_client_events_per_sec = quota(self.max_client_events_per_second);
        app.max_read_req_per_sec = quota(self.max_read_requests_per_second);
        let count = |v: Option<f64>, default: usize| {
            v.filter(|v| *v >= 0.0).map_or(default, |v| v as usize)
        };
        let kb = |v: Option<f64>, default: usize| {
            v.filter(|v| *v >= 0.0)
                .map_or(default, |v| (v * 1024.0) as usize)
        };
        app.allowed_origins = self.allowed_origins.clone().unwrap_or_default();
        app.webhooks = self
            .webhooks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, w)| match w.target() {
                Ok((url, lambda)) => Some(Webhook {
                    url,
                    lambda,
                    event_types: w.event_types.clone(),
                    headers: w.headers.clone().into_iter().collect(),
                    channel_name_starts_with: w
                        .filter
                        .as_ref()
                        .and_then(|f| f.channel_name_starts_with.clone()),
                    channel_name_ends_with: w
                        .filter
                        .as_ref()
                        .and_then(|f| f.channel_name_ends_with.clone()),
                }),
                // Configured apps are checked at start-up; an app from a table is not, so
                // say what is left out each time it is read.
                Err(message) => {
                    tracing::error!(
                        app = %app.id,
                        webhook = i,
                        "a webhook of the app cannot be sent and is left out: {message}"
                    );
                    None
                }
            })
            .collect();
        app.limits = AppLimits {
            max_presence_members_per_channel: count(
                self.max_presence_members_per_channel,
                limits.max_presence_members_per_channel,
            ),
            max_presence_member_size_bytes: kb(
                self.max_presence_member_size_in_kb,
                limits.max_presence_member_size_bytes,
            ),
            max_channel_name_length: count(
                self.max_channel_name_length,
                limits.max_channel_name_length,
            ),
            max_event_channels_at_once: count(
                self.max_event_channels_at_once,
                limits.max_event_channels_at_once,
            ),
            max_event_name_length: count(self.max_event_name_length, limits.max_event_name_length),
            max_event_payload_bytes: kb(
                self.max_event_payload_in_kb,
                limits.max_event_payload_bytes,
            ),
            max_event_batch_size: count(self.max_event_batch_size, limits.max_event_batch_size),
            max_subscriptions_per_connection: count(
                self.max_subscriptions_per_connection,
                limits.max_subscriptions_per_connection,
            ),
            max_presence_user_id_length: limits.max_presence_user_id_length,
        };
        app
    }
}

/// A quota: negative means unlimited.
fn quota(value: Option<f64>) -> Option<u64> {
    value.filter(|v| *v >= 0.0).map(|v| v as u64)
}

/// Turns the app list at `appManager.array.apps` into a map from index to app, so that sources
/// merge app by app. With `clear`, the list becomes empty (for the defaults).
pub(super) fn index_apps(root: &mut Value, clear: bool) {
    let Some(apps) = root
        .get_mut("appManager")
        .and_then(|v| v.get_mut("array"))
        .and_then(|v| v.get_mut("apps"))
    else {
        return;
    };
    if clear {
        *apps = Value::Object(serde_json::Map::new());
    } else if let Value::Array(list) = apps {
        let indexed = list
            .drain(..)
            .enumerate()
            .map(|(i, app)| (i.to_string(), app))
            .collect();
        *apps = Value::Object(indexed);
    }
}

/// Gives the first app the default app's values where it sets none; with no app, the list
/// holds the default app.
pub(super) fn fill_default_app(apps: &mut Vec<AppConfig>) {
    if apps.is_empty() {
        apps.push(AppConfig::default_app());
    } else {
        let first = std::mem::take(&mut apps[0]);
        apps[0] = first.or(AppConfig::default_app());
    }
}

/// Reads the app list as an array, or as a map from index to app (how sources merge).
pub(super) fn list_or_indexed<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<AppConfig>, D::Error> {
    struct Apps;
    impl<'de> de::Visitor<'de> for Apps {
        type Value = Vec<AppConfig>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of apps")
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut apps = Vec::new();
            while let Some(app) = seq.next_element()? {
                apps.push(app);
            }
            Ok(apps)
        }

        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut indexed = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                let index: usize = key
                    .parse()
                    .map_err(|_| de::Error::custom(format!("app index {key:?} is not a number")))?;
                indexed.push((index, map.next_value::<AppConfig>()?));
            }
            indexed.sort_by_key(|(i, _)| *i);
            Ok(indexed.into_iter().map(|(_, app)| app).collect())
        }
    }
    deserializer.deserialize_any(Apps)
}

/// A list of strings given as a list, its JSON text, or a comma-separated string.
pub(super) fn string_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    Ok(opt_string_list(deserializer)?.unwrap_or_default())
}

fn opt_string_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let items = |text: &str| -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => match serde_json::from_str::<Vec<String>>(&text) {
            Ok(list) => Ok(Some(list)),
            Err(_) => Ok(Some(items(&text))),
        },
        Some(Value::Array(values)) => values
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(de::Error::custom(format!(
                    "expected a string, found {other}"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(de::Error::custom(format!(
            "expected a list of strings, found {other}"
        ))),
    }
}

/// A string that the environment may have read as a number (`APP_MANAGER_MYSQL_VERSION=5.7`).
pub(super) fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    Ok(opt_string(deserializer)?.unwrap_or_default())
}

fn opt_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(de::Error::custom(format!(
            "expected a string or a number, found {other}"
        ))),
    }
}

fn opt_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::Number(n)) => Ok(Some(n.as_f64().is_some_and(|v| v != 0.0))),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            _ => Err(de::Error::custom(format!(
                "expected true or false, found {s:?}"
            ))),
        },
        Some(other) => Err(de::Error::custom(format!(
            "expected true or false, found {other}"
        ))),
    }
}

fn opt_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("expected a number, found {s:?}"))),
        Some(other) => Err(de::Error::custom(format!(
            "expected a number, found {other}"
        ))),
    }
}

fn opt_webhooks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<WebhookConfig>>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| de::Error::custom(format!("webhooks are not valid JSON: {e}"))),
        Some(other) => serde_json::from_value(other)
            .map(Some)
            .map_err(|e| de::Error::custom(format!("invalid webhooks: {e}"))),
    }
}
