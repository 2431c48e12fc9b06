//! The server's configuration, loaded as soketi loads it.
//!
//! Sources, later winning: built-in defaults (soketi's), a config file (`--config FILE`: JSON,
//! TOML or YAML by extension, with nested keys or soketi's dotted option paths), the
//! environment names without prefix, then the `SOKETI_`-prefixed names. Environment values are
//! read as soketi reads them: JSON first, else the raw string. Every source is a figment
//! provider named after where it came from, so that a bad value is reported with its source.

mod apps;
mod aws;
mod defaults;
mod drivers;
mod env;
mod error;
mod load;
mod schema;
mod services;
mod transports;
mod validate;
mod views;

pub use self::apps::{AppConfig, WebhookConfig};
pub use self::drivers::{
    AdapterDriver, AppManagerDriver, CacheDriver, MetricsDriver, QueueDriver, RateLimiterDriver,
};
pub use self::env::{ENV_OPTIONS, EnvOption, OptionKind};
pub use self::error::{ConfigError, InvalidValue, SyntaxError};
pub use self::schema::*;
pub use self::transports::RedisUser;

#[cfg(test)]
mod tests;
