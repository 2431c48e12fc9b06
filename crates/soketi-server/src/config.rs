//! The server's configuration: built-in defaults overridden by `SOKETI_`-prefixed environment
//! variables, with soketi's names and defaults.

use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};
use soketi_protocol::{App, AppLimits};

/// Every setting of the server. Field names are soketi's environment names without the
/// `SOKETI_` prefix, lowercased.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// The address to bind for WebSocket and HTTP.
    pub host: String,
    /// The port for WebSocket and HTTP.
    pub port: u16,
    /// The default app's id.
    pub default_app_id: String,
    /// The default app's key.
    pub default_app_key: String,
    /// The default app's secret.
    pub default_app_secret: String,
    /// Whether the default app accepts connections.
    pub default_app_enabled: bool,
    /// Whether the default app's clients may send `client-` events.
    pub default_app_enable_client_messages: bool,
    /// Whether the default app's connections must sign in.
    pub default_app_user_authentication: bool,
    /// The default app's connection limit; -1 is unlimited.
    pub default_app_max_conns: i64,
    /// Seconds of client silence before the server pings; also sent to clients.
    pub activity_timeout: u64,
    /// Seconds a pinged client has to answer before it is closed with 4201.
    pub pong_timeout: u64,
    /// Members per presence channel.
    pub presence_max_members: usize,
    /// Kilobytes of one presence member's `user_info`.
    pub presence_max_member_size: f64,
    /// Kilobytes of one event's data.
    pub event_max_size_in_kb: f64,
    /// Channels per HTTP publish.
    pub event_max_channels_at_once: usize,
    /// Events per batch.
    pub event_max_batch_size: usize,
    /// Characters of an event name.
    pub event_max_name_length: usize,
    /// Characters of a channel name.
    pub channel_limits_max_name_length: usize,
    /// Seconds a cache channel keeps its last event.
    pub channel_cache_ttl: u64,
    /// Bytes queued for one connection before it is closed as too slow (4100).
    pub max_backpressure: usize,
    /// Megabytes of an HTTP request body.
    pub http_max_request_size: f64,
    /// Milliseconds to let connections drain at shutdown.
    pub shutdown_grace_period: u64,
}

impl Default for Config {
    fn default() -> Self {
        let limits = AppLimits::default();
        Self {
            host: "0.0.0.0".into(),
            port: 6001,
            default_app_id: "app-id".into(),
            default_app_key: "app-key".into(),
            default_app_secret: "app-secret".into(),
            default_app_enabled: true,
            default_app_enable_client_messages: false,
            default_app_user_authentication: false,
            default_app_max_conns: -1,
            activity_timeout: 30,
            pong_timeout: 30,
            presence_max_members: limits.max_presence_members_per_channel,
            presence_max_member_size: 2.0,
            event_max_size_in_kb: 100.0,
            event_max_channels_at_once: limits.max_event_channels_at_once,
            event_max_batch_size: limits.max_event_batch_size,
            event_max_name_length: limits.max_event_name_length,
            channel_limits_max_name_length: limits.max_channel_name_length,
            channel_cache_ttl: 3600,
            max_backpressure: 1024 * 1024,
            http_max_request_size: 100.0,
            shutdown_grace_period: 3000,
        }
    }
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// The defaults overridden by the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Env::prefixed("SOKETI_").filter(|k| Config::is_known(k.as_str()))),
        )
    }

    fn is_known(key: &str) -> bool {
        KNOWN_KEYS.contains(&key.to_ascii_lowercase().as_str())
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(|errors| {
            let lines: Vec<String> = errors
                .into_iter()
                .map(|e| {
                    format!(
                        "SOKETI_{}: {}",
                        e.path.join("_").to_ascii_uppercase(),
                        e.kind
                    )
                })
                .collect();
            ConfigError(lines.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("SOKETI_ACTIVITY_TIMEOUT", self.activity_timeout as f64),
            ("SOKETI_PONG_TIMEOUT", self.pong_timeout as f64),
            ("SOKETI_EVENT_MAX_SIZE_IN_KB", self.event_max_size_in_kb),
            (
                "SOKETI_PRESENCE_MAX_MEMBER_SIZE",
                self.presence_max_member_size,
            ),
            ("SOKETI_HTTP_MAX_REQUEST_SIZE", self.http_max_request_size),
            ("SOKETI_MAX_BACKPRESSURE", self.max_backpressure as f64),
        ];
        for (name, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return Err(ConfigError(format!(
                    "{name} must be a positive number, got {value}"
                )));
            }
        }
        Ok(())
    }

    /// The address to listen on.
    pub fn bind_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The limits every app gets.
    pub fn limits(&self) -> AppLimits {
        AppLimits {
            max_presence_members_per_channel: self.presence_max_members,
            max_presence_member_size_bytes: kb(self.presence_max_member_size),
            max_channel_name_length: self.channel_limits_max_name_length,
            max_event_channels_at_once: self.event_max_channels_at_once,
            max_event_name_length: self.event_max_name_length,
            max_event_payload_bytes: kb(self.event_max_size_in_kb),
            max_event_batch_size: self.event_max_batch_size,
        }
    }

    /// The app defined by the `DEFAULT_APP_` settings.
    pub fn default_app(&self) -> App {
        let mut app = App::new(
            &self.default_app_id,
            &self.default_app_key,
            &self.default_app_secret,
        );
        app.enabled = self.default_app_enabled;
        app.enable_client_messages = self.default_app_enable_client_messages;
        app.enable_user_authentication = self.default_app_user_authentication;
        app.max_connections = u64::try_from(self.default_app_max_conns).ok();
        app.limits = self.limits();
        app
    }

    /// The activity timeout.
    pub fn activity_timeout(&self) -> Duration {
        Duration::from_secs(self.activity_timeout)
    }

    /// The pong timeout.
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_secs(self.pong_timeout)
    }

    /// The largest HTTP body accepted, in bytes.
    pub fn max_request_bytes(&self) -> usize {
        (self.http_max_request_size * 1024.0 * 1024.0) as usize
    }
}

fn kb(value: f64) -> usize {
    (value * 1024.0) as usize
}

const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "default_app_id",
    "default_app_key",
    "default_app_secret",
    "default_app_enabled",
    "default_app_enable_client_messages",
    "default_app_user_authentication",
    "default_app_max_conns",
    "activity_timeout",
    "pong_timeout",
    "presence_max_members",
    "presence_max_member_size",
    "event_max_size_in_kb",
    "event_max_channels_at_once",
    "event_max_batch_size",
    "event_max_name_length",
    "channel_limits_max_name_length",
    "channel_cache_ttl",
    "max_backpressure",
    "http_max_request_size",
    "shutdown_grace_period",
];

#[cfg(test)]
// figment's Jail closures must return its own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    #[test]
    fn defaults_are_soketis() {
        let c = Config::default();
        assert_eq!(c.bind_address(), "0.0.0.0:6001");
        let app = c.default_app();
        assert_eq!((app.id.as_str(), app.key.as_str()), ("app-id", "app-key"));
        assert_eq!(app.max_connections, None);
        assert_eq!(app.limits, AppLimits::default());
    }

    #[test]
    fn environment_overrides() {
        Jail::expect_with(|jail| {
            jail.set_env("SOKETI_PORT", "7001");
            jail.set_env("SOKETI_DEFAULT_APP_MAX_CONNS", "2");
            jail.set_env("SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "true");
            jail.set_env("SOKETI_UNRELATED_THING", "x");
            let c = Config::from_env().unwrap();
            assert_eq!(c.port, 7001);
            assert_eq!(c.default_app().max_connections, Some(2));
            assert!(c.default_app().enable_client_messages);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_setting() {
        Jail::expect_with(|jail| {
            jail.set_env("SOKETI_PORT", "abc");
            let e = Config::from_env().unwrap_err().to_string();
            assert!(e.contains("SOKETI_PORT"), "{e}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("SOKETI_ACTIVITY_TIMEOUT", "0");
            let e = Config::from_env().unwrap_err().to_string();
            assert!(e.contains("SOKETI_ACTIVITY_TIMEOUT"), "{e}");
            Ok(())
        });
    }
}
