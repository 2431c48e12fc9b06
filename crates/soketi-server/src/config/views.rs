//! Values derived from the settings: addresses, limits, apps, durations, and the masked copy
//! that `config` prints.

use std::time::Duration;

use soketi_protocol::{App, AppLimits};

use super::{Config, ConfigError};
use crate::client_ip::Cidr;

impl Config {
    /// The address to listen on.
    pub fn bind_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    /// The address of the operations server.
    pub fn metrics_address(&self) -> String {
        format!("{}:{}", self.metrics.host, self.metrics.port)
    }

    /// The limits every app gets unless it sets its own.
    pub fn limits(&self) -> AppLimits {
        AppLimits {
            max_presence_members_per_channel: self.presence.max_members_per_channel,
            max_presence_member_size_bytes: kb(self.presence.max_member_size_in_kb),
            max_channel_name_length: self.channel_limits.max_name_length,
            max_event_channels_at_once: self.event_limits.max_channels_at_once,
            max_event_name_length: self.event_limits.max_name_length,
            max_event_payload_bytes: kb(self.event_limits.max_payload_in_kb),
            max_event_batch_size: self.event_limits.max_batch_size,
            max_subscriptions_per_connection: self.channel_limits.max_subscriptions_per_connection,
            max_presence_user_id_length: self.presence.max_user_id_length,
        }
    }

    /// The largest message a client of an app with `limits` may send: the configured size, or
    /// one sized for the app's largest event or presence member and the envelope around it.
    pub fn max_message_bytes(&self, limits: &AppLimits) -> usize {
        /// Room for what surrounds an event's data or a member: the event and channel names, the
        /// signature, the JSON around them.
        const ENVELOPE: usize = 28 * 1024;
        match self.websocket.max_message_size_in_kb {
            kb if kb > 0.0 => (kb * 1024.0) as usize,
            _ => {
                let largest = limits
                    .max_event_payload_bytes
                    .max(limits.max_presence_member_size_bytes);
                largest + ENVELOPE
            }
        }
    }

    /// The trusted proxies, parsed.
    pub(crate) fn trusted_proxies(&self) -> Result<Vec<Cidr>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                Cidr::parse(entry).ok_or_else(|| ConfigError::TrustedProxy {
                    entry: entry.clone(),
                })
            })
            .collect()
    }

    /// How long a client may take to finish a message it has begun.
    pub fn message_timeout(&self) -> Duration {
        Duration::from_millis(self.websocket.message_timeout)
    }

    /// The configured apps, with the server's limits where an app sets none.
    pub fn apps(&self) -> Vec<App> {
        let limits = self.limits();
        self.app_manager
            .array
            .apps
            .iter()
            .enumerate()
            .map(|(i, app)| app.to_app(i, &limits))
            .collect()
    }

    /// The activity timeout.
    pub fn activity_timeout(&self) -> Duration {
        Duration::from_secs(self.activity_timeout)
    }

    /// The pong timeout.
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_secs(self.pong_timeout)
    }

    /// How long a request's head may take to arrive, and an idle keep-alive connection may
    /// wait for the next request.
    pub fn headers_timeout(&self) -> Duration {
        Duration::from_millis(self.http_api.headers_timeout)
    }

    /// How long a request's body may take to arrive.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.http_api.body_timeout)
    }

    /// The largest HTTP body accepted, in bytes.
    pub fn max_request_bytes(&self) -> usize {
        (self.http_api.request_limit_in_mb * 1024.0 * 1024.0) as usize
    }

    /// Whether TLS is on.
    pub fn tls_enabled(&self) -> bool {
        !self.ssl.cert_path.is_empty() || !self.ssl.key_path.is_empty()
    }

    /// The effective configuration as JSON, with every secret replaced by `********`.
    pub fn masked_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        mask(&mut value);
        value
    }
}

pub(super) fn kb(value: f64) -> usize {
    (value * 1024.0) as usize
}

const SECRET_KEYS: &[&str] = &[
    "secret",
    "password",
    "pass",
    "passphrase",
    "token",
    "sentinelPassword",
];

fn mask(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) && !v.is_null() {
                    *v = serde_json::Value::String("********".into());
                } else {
                    // The private key of a `tls` object of ioredis-style Redis options.
                    if key == "tls"
                        && let Some(private) = v.get_mut("key").filter(|k| !k.is_null())
                    {
                        *private = serde_json::Value::String("********".into());
                    }
                    mask(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}
