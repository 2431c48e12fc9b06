//! The server's configuration, loaded as soketi loads it.
//!
//! Sources, later winning: built-in defaults (soketi's), a config file (`--config FILE`: JSON,
//! TOML or YAML by extension, with nested keys or soketi's dotted option paths), the
//! environment names without prefix, then the `SOKETI_`-prefixed names. Environment values are
//! read as soketi reads them: JSON first, else the raw string. Every source is a figment
//! provider named after where it came from, so that a bad value is reported with its source.

mod apps;
mod env;

use std::path::Path;
use std::time::Duration;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};
use soketi_protocol::{App, AppLimits};

pub use self::apps::{AppConfig, WebhookConfig};
pub use self::env::{ENV_OPTIONS, EnvOption};

/// What the server does on this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// WebSocket, HTTP API and queue processing.
    #[default]
    Full,
    /// WebSocket and HTTP API, no queue processing.
    Server,
    /// Queue processing only; the main port answers `/` and `/ready`.
    Worker,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Declares a driver enum with soketi's names and which of them this build implements.
macro_rules! drivers {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal, $implemented:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The name as configured.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// Whether this build can run with the driver.
            pub fn is_implemented(self) -> bool {
                match self { $($name::$variant => $implemented,)+ }
            }

            /// The drivers this build can run with.
            pub fn implemented() -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if $implemented { names.push($text); })+
                names
            }
        }
    };
}

drivers!(
    /// Where apps come from.
    AppManagerDriver {
        /// Apps listed in the configuration.
        #[default]
        Array = "array", true;
        /// A MySQL table.
        Mysql = "mysql", true;
        /// A PostgreSQL table.
        Postgres = "postgres", true;
        /// A DynamoDB table.
        Dynamodb = "dynamodb", false;
    }
);

drivers!(
    /// How nodes share channels.
    AdapterDriver {
        /// One node.
        #[default]
        Local = "local", true;
        /// Redis pub/sub.
        Redis = "redis", true;
        /// UDP discovery inside a private network.
        Cluster = "cluster", true;
        /// NATS.
        Nats = "nats", true;
    }
);

drivers!(
    /// Where rate limit budgets are kept.
    RateLimiterDriver {
        /// In this process.
        #[default]
        Local = "local", true;
        /// In Redis.
        Redis = "redis", true;
        /// Shared by the nodes of the cluster adapter.
        Cluster = "cluster", true;
    }
);

drivers!(
    /// Where cache channels and app lookups are cached.
    CacheDriver {
        /// In this process.
        #[default]
        Memory = "memory", true;
        /// In Redis, shared by every node.
        Redis = "redis", true;
    }
);

drivers!(
    /// How webhooks are queued.
    QueueDriver {
        /// Sent from this process at once.
        #[default]
        Sync = "sync", true;
        /// A durable queue in Redis.
        Redis = "redis", true;
        /// Amazon SQS.
        Sqs = "sqs", false;
    }
);

drivers!(
    /// How metrics are exposed.
    MetricsDriver {
        /// Prometheus text.
        #[default]
        Prometheus = "prometheus", true;
    }
);

/// Every setting, with soketi's option paths as field names (camelCase).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Config {
    /// The address to bind for WebSocket and HTTP.
    pub host: String,
    /// The port for WebSocket and HTTP.
    pub port: u16,
    /// Verbose logs.
    pub debug: bool,
    /// What this process does.
    pub mode: Mode,
    /// A prefix added to every route.
    pub path_prefix: String,
    /// Milliseconds to let connections close at shutdown.
    pub shutdown_grace_period: u64,
    /// Milliseconds a connection of an app with user authentication has to sign in.
    pub user_authentication_timeout: u64,
    /// Seconds of client silence before the server pings; also sent to clients.
    pub activity_timeout: u64,
    /// Seconds a pinged client has to answer before it is closed with 4201.
    pub pong_timeout: u64,
    /// Bytes queued for one connection before it is closed as too slow (4100).
    pub max_backpressure: usize,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Let several processes of one host share `port` (SO_REUSEPORT); the kernel spreads
    /// connections between them.
    pub reuse_port: bool,
    /// The HTTP API.
    pub http_api: HttpApiConfig,
    /// TLS.
    pub ssl: SslConfig,
    /// CORS headers of the HTTP API.
    pub cors: CorsConfig,
    /// Apps.
    pub app_manager: AppManagerConfig,
    /// Horizontal scaling.
    pub adapter: AdapterConfig,
    /// Discovery of the cluster adapter.
    pub cluster: ClusterConfig,
    /// Rate limits.
    pub rate_limiter: RateLimiterConfig,
    /// The cache.
    pub cache: CacheConfig,
    /// The webhook queue.
    pub queue: QueueConfig,
    /// Metrics and the operations server.
    pub metrics: MetricsConfig,
    /// Webhooks.
    pub webhooks: WebhooksConfig,
    /// Limits of channels.
    pub channel_limits: ChannelLimits,
    /// Limits of events.
    pub event_limits: EventLimits,
    /// Limits of presence channels.
    pub presence: PresenceLimits,
    /// Databases.
    pub database: DatabaseConfig,
    /// Connection pools of the SQL app managers.
    pub database_pooling: PoolingConfig,
}

/// The HTTP API.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpApiConfig {
    /// Megabytes of a request body; larger bodies get 413.
    pub request_limit_in_mb: f64,
    /// `/accept-traffic`.
    pub accept_traffic: AcceptTrafficConfig,
}

/// `/accept-traffic`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AcceptTrafficConfig {
    /// Percent of memory above which `/accept-traffic` answers 500.
    pub memory_threshold: f64,
}

/// TLS; on when a certificate or a key is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SslConfig {
    /// PEM certificate chain.
    pub cert_path: String,
    /// PEM private key.
    pub key_path: String,
    /// Passphrase of an encrypted key.
    pub passphrase: String,
    /// PEM certificates appended to the chain.
    pub ca_path: String,
}

/// CORS headers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CorsConfig {
    /// `Access-Control-Allow-Credentials`.
    pub credentials: bool,
    /// Allowed origins; `*` for any.
    pub origin: Vec<String>,
    /// `Access-Control-Allow-Methods`.
    pub methods: Vec<String>,
    /// `Access-Control-Allow-Headers`.
    pub allowed_headers: Vec<String>,
}

/// Apps.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AppManagerConfig {
    /// Where apps come from.
    pub driver: AppManagerDriver,
    /// Caching of app lookups.
    pub cache: AppCacheConfig,
    /// Apps listed in the configuration; the first is the one the `DEFAULT_APP_` names set.
    pub array: ArrayApps,
    /// The DynamoDB driver.
    pub dynamodb: DynamoDbConfig,
    /// The MySQL driver.
    pub mysql: SqlAppsConfig,
    /// The PostgreSQL driver.
    pub postgres: SqlAppsConfig,
}

/// Caching of app lookups.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AppCacheConfig {
    /// Whether lookups are cached.
    pub enabled: bool,
    /// Seconds a lookup is kept; -1 for as long as the process runs.
    pub ttl: i64,
}

/// Apps listed in the configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ArrayApps {
    /// The apps, as an array or as a map from index to app.
    #[serde(deserialize_with = "apps::list_or_indexed")]
    pub apps: Vec<AppConfig>,
}

/// The DynamoDB app table.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DynamoDbConfig {
    /// Table name.
    pub table: String,
    /// AWS region.
    pub region: String,
    /// Endpoint override.
    pub endpoint: Option<String>,
}

/// A SQL app table.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SqlAppsConfig {
    /// Table name.
    pub table: String,
    /// Server version.
    pub version: String,
    /// MySQL only: use the mysql2 client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_mysql2: Option<bool>,
}

/// Horizontal scaling.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AdapterConfig {
    /// How nodes share channels.
    pub driver: AdapterDriver,
    /// The cluster adapter.
    pub cluster: RequestsTimeout,
    /// The Redis adapter.
    pub redis: RedisAdapterConfig,
    /// The NATS adapter.
    pub nats: NatsAdapterConfig,
}

/// A cross-node request timeout.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestsTimeout {
    /// Milliseconds to wait for the other nodes' answers.
    pub requests_timeout: u64,
}

/// The Redis adapter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RedisAdapterConfig {
    /// Channel prefix.
    pub prefix: String,
    /// Redis Cluster.
    pub cluster_mode: bool,
    /// Milliseconds to wait for the other nodes' answers.
    pub requests_timeout: u64,
    /// Extra options of the publishing connection.
    pub redis_pub_options: serde_json::Value,
    /// Extra options of the subscribing connection.
    pub redis_sub_options: serde_json::Value,
    /// Milliseconds between this node's heartbeats (not a soketi option).
    pub heartbeat_interval: u64,
    /// Milliseconds of silence after which a node is gone and its members are removed (not a
    /// soketi option; soketi never removes them).
    pub node_timeout: u64,
}

/// The NATS adapter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NatsAdapterConfig {
    /// Subject prefix.
    pub prefix: String,
    /// Servers.
    pub servers: Vec<String>,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub pass: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// Connection timeout, milliseconds.
    pub timeout: u64,
    /// Milliseconds to wait for the other nodes' answers.
    pub requests_timeout: u64,
    /// The number of nodes to expect answers from (accepted for soketi's sake; the adapter
    /// knows the live nodes from their heartbeats).
    pub nodes_number: Option<u64>,
    /// Milliseconds between this node's heartbeats (not a soketi option).
    pub heartbeat_interval: u64,
    /// Milliseconds of silence after which a node is gone (not a soketi option).
    pub node_timeout: u64,
}

/// Discovery of the cluster adapter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterConfig {
    /// The address to bind (soketi documents it so).
    pub hostname: String,
    /// UDP port.
    pub port: u16,
    /// Milliseconds between hellos.
    pub hello_interval: u64,
    /// Milliseconds between checks for new and dead nodes.
    pub check_interval: u64,
    /// Milliseconds of silence after which a node is gone.
    pub node_timeout: u64,
    /// Milliseconds of silence after which the master is gone.
    pub master_timeout: u64,
    /// The cluster's name: nodes with another prefix never join.
    pub prefix: String,
    /// Ignore hellos from this process.
    pub ignore_process: bool,
    /// Broadcast address.
    pub broadcast: String,
    /// Multicast group; switches to multicast when set.
    pub multicast: Option<String>,
    /// Unicast peers; switches to unicast when set.
    pub unicast: Option<serde_json::Value>,
}

/// Rate limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RateLimiterConfig {
    /// Where budgets are kept.
    pub driver: RateLimiterDriver,
    /// The Redis driver.
    pub redis: RedisClientConfig,
}

/// A Redis client of a driver.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RedisClientConfig {
    /// Extra client options.
    pub redis_options: serde_json::Value,
    /// Redis Cluster.
    pub cluster_mode: bool,
}

/// The cache.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CacheConfig {
    /// Where things are cached.
    pub driver: CacheDriver,
    /// The Redis driver.
    pub redis: RedisClientConfig,
}

/// The webhook queue.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct QueueConfig {
    /// How webhooks are queued.
    pub driver: QueueDriver,
    /// The Redis driver.
    pub redis: RedisQueueConfig,
    /// The SQS driver.
    pub sqs: SqsQueueConfig,
    /// Attempts of a job in all, the first included.
    pub max_attempts: u32,
    /// Milliseconds before the second attempt; each later one waits twice as long.
    pub backoff: u64,
}

/// The Redis queue.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RedisQueueConfig {
    /// Jobs processed at once.
    pub concurrency: u32,
    /// Extra client options.
    pub redis_options: serde_json::Value,
    /// Redis Cluster.
    pub cluster_mode: bool,
}

/// The SQS queue.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SqsQueueConfig {
    /// AWS region.
    pub region: String,
    /// Queue URL.
    pub queue_url: String,
    /// Endpoint override.
    pub endpoint: Option<String>,
    /// Extra client options.
    pub client_options: serde_json::Value,
    /// Process messages in batches.
    pub process_batch: bool,
    /// Messages per batch.
    pub batch_size: u32,
    /// Long-polling wait, milliseconds.
    pub polling_wait_time_ms: u64,
}

/// Metrics and the operations server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricsConfig {
    /// Whether `/metrics` is served.
    pub enabled: bool,
    /// How metrics are exposed.
    pub driver: MetricsDriver,
    /// The address of the operations server.
    pub host: String,
    /// The port of the operations server.
    pub port: u16,
    /// Prometheus settings.
    pub prometheus: PrometheusConfig,
}

/// Prometheus settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PrometheusConfig {
    /// The prefix of every metric name.
    pub prefix: String,
}

/// Webhooks.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WebhooksConfig {
    /// Batching.
    pub batching: BatchingConfig,
    /// Milliseconds `channel_vacated` and `member_removed` wait, cancelled by a return.
    pub vacated_delay: u64,
    /// Milliseconds a webhook's receiver has to answer.
    pub timeout: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            batching: BatchingConfig::default(),
            vacated_delay: 3000,
            timeout: 10_000,
        }
    }
}

/// Webhook batching.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BatchingConfig {
    /// Whether events are batched.
    pub enabled: bool,
    /// Milliseconds a batch collects events.
    pub duration: u64,
}

/// Limits of channels.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ChannelLimits {
    /// Characters of a channel name.
    pub max_name_length: usize,
    /// Seconds a cache channel keeps its last event.
    pub cache_ttl: u64,
}

/// Limits of events.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventLimits {
    /// Channels per HTTP publish.
    pub max_channels_at_once: usize,
    /// Characters of an event name.
    pub max_name_length: usize,
    /// Kilobytes of one event's data.
    pub max_payload_in_kb: f64,
    /// Events per batch.
    pub max_batch_size: usize,
}

/// Limits of presence channels.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PresenceLimits {
    /// Members per presence channel.
    pub max_members_per_channel: usize,
    /// Kilobytes of one member's `user_info`.
    pub max_member_size_in_kb: f64,
}

/// Databases.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DatabaseConfig {
    /// MySQL.
    pub mysql: SqlDatabase,
    /// PostgreSQL.
    pub postgres: SqlDatabase,
    /// Redis.
    pub redis: RedisDatabase,
}

/// A SQL database.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SqlDatabase {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
    /// Database name.
    pub database: String,
}

/// The Redis server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RedisDatabase {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database number.
    pub db: u32,
    /// User.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Key prefix.
    pub key_prefix: String,
    /// Sentinels.
    pub sentinels: Option<serde_json::Value>,
    /// Sentinel password.
    pub sentinel_password: Option<String>,
    /// The Sentinel master's name.
    pub name: String,
    /// Redis Cluster nodes.
    pub cluster_nodes: Vec<serde_json::Value>,
}

/// Connection pools.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PoolingConfig {
    /// Whether pooling is on.
    pub enabled: bool,
    /// Smallest pool.
    pub min: u32,
    /// Largest pool.
    pub max: u32,
}

impl Default for Config {
    fn default() -> Self {
        let limits = AppLimits::default();
        Self {
            host: "0.0.0.0".into(),
            port: 6001,
            debug: false,
            mode: Mode::Full,
            path_prefix: String::new(),
            shutdown_grace_period: 3000,
            user_authentication_timeout: 30_000,
            activity_timeout: 30,
            pong_timeout: 30,
            max_backpressure: 1024 * 1024,
            log_format: LogFormat::Text,
            reuse_port: false,
            http_api: HttpApiConfig {
                request_limit_in_mb: 100.0,
                accept_traffic: AcceptTrafficConfig {
                    memory_threshold: 85.0,
                },
            },
            ssl: SslConfig::default(),
            cors: CorsConfig {
                credentials: true,
                origin: vec!["*".into()],
                methods: ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
                    .map(String::from)
                    .to_vec(),
                allowed_headers: [
                    "Origin",
                    "Content-Type",
                    "X-Auth-Token",
                    "X-Requested-With",
                    "Accept",
                    "Authorization",
                    "X-CSRF-TOKEN",
                    "XSRF-TOKEN",
                    "X-Socket-Id",
                ]
                .map(String::from)
                .to_vec(),
            },
            app_manager: AppManagerConfig {
                driver: AppManagerDriver::Array,
                cache: AppCacheConfig {
                    enabled: false,
                    ttl: -1,
                },
                array: ArrayApps {
                    apps: vec![AppConfig::default_app()],
                },
                dynamodb: DynamoDbConfig {
                    table: "apps".into(),
                    region: "us-east-1".into(),
                    endpoint: None,
                },
                mysql: SqlAppsConfig {
                    table: "apps".into(),
                    version: "8.0".into(),
                    use_mysql2: Some(false),
                },
                postgres: SqlAppsConfig {
                    table: "apps".into(),
                    version: "13.3".into(),
                    use_mysql2: None,
                },
            },
            adapter: AdapterConfig {
                driver: AdapterDriver::Local,
                cluster: RequestsTimeout {
                    requests_timeout: 5000,
                },
                redis: RedisAdapterConfig {
                    prefix: String::new(),
                    cluster_mode: false,
                    requests_timeout: 5000,
                    redis_pub_options: serde_json::json!({}),
                    redis_sub_options: serde_json::json!({}),
                    heartbeat_interval: 1000,
                    node_timeout: 3000,
                },
                nats: NatsAdapterConfig {
                    prefix: String::new(),
                    servers: vec!["127.0.0.1:4222".into()],
                    user: None,
                    pass: None,
                    token: None,
                    timeout: 10_000,
                    requests_timeout: 5000,
                    nodes_number: None,
                    heartbeat_interval: 1000,
                    node_timeout: 3000,
                },
            },
            cluster: ClusterConfig {
                hostname: "0.0.0.0".into(),
                port: 11002,
                hello_interval: 500,
                check_interval: 500,
                node_timeout: 2000,
                master_timeout: 2000,
                prefix: String::new(),
                ignore_process: true,
                broadcast: "255.255.255.255".into(),
                multicast: None,
                unicast: None,
            },
            rate_limiter: RateLimiterConfig {
                driver: RateLimiterDriver::Local,
                redis: RedisClientConfig::default(),
            },
            cache: CacheConfig {
                driver: CacheDriver::Memory,
                redis: RedisClientConfig::default(),
            },
            queue: QueueConfig {
                driver: QueueDriver::Sync,
                redis: RedisQueueConfig {
                    concurrency: 1,
                    redis_options: serde_json::json!({}),
                    cluster_mode: false,
                },
                max_attempts: 6,
                backoff: 1000,
                sqs: SqsQueueConfig {
                    region: "us-east-1".into(),
                    queue_url: String::new(),
                    endpoint: None,
                    client_options: serde_json::json!({}),
                    process_batch: false,
                    batch_size: 1,
                    polling_wait_time_ms: 0,
                },
            },
            metrics: MetricsConfig {
                enabled: false,
                driver: MetricsDriver::Prometheus,
                host: "0.0.0.0".into(),
                port: 9601,
                prometheus: PrometheusConfig {
                    prefix: "soketi_".into(),
                },
            },
            webhooks: WebhooksConfig::default(),
            channel_limits: ChannelLimits {
                max_name_length: limits.max_channel_name_length,
                cache_ttl: 3600,
            },
            event_limits: EventLimits {
                max_channels_at_once: limits.max_event_channels_at_once,
                max_name_length: limits.max_event_name_length,
                max_payload_in_kb: 100.0,
                max_batch_size: limits.max_event_batch_size,
            },
            presence: PresenceLimits {
                max_members_per_channel: limits.max_presence_members_per_channel,
                max_member_size_in_kb: 2.0,
            },
            database: DatabaseConfig {
                mysql: SqlDatabase::with_port(3306, "root"),
                postgres: SqlDatabase::with_port(5432, "postgres"),
                redis: RedisDatabase::default(),
            },
            database_pooling: PoolingConfig {
                enabled: false,
                min: 0,
                max: 7,
            },
        }
    }
}

impl SqlDatabase {
    fn with_port(port: u16, user: &str) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            user: user.into(),
            password: "password".into(),
            database: "main".into(),
        }
    }
}

impl Default for SqlDatabase {
    fn default() -> Self {
        Self::with_port(3306, "root")
    }
}

impl Default for RedisDatabase {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            key_prefix: String::new(),
            sentinels: None,
            sentinel_password: None,
            name: "mymaster".into(),
            cluster_nodes: Vec::new(),
        }
    }
}

impl Default for RedisClientConfig {
    fn default() -> Self {
        Self {
            redis_options: serde_json::json!({}),
            cluster_mode: false,
        }
    }
}

macro_rules! defaults_from_config {
    ($($ty:ty => $($field:ident).+;)+) => {
        $(impl Default for $ty {
            fn default() -> Self {
                Config::default().$($field).+
            }
        })+
    };
}

defaults_from_config!(
    HttpApiConfig => http_api;
    AcceptTrafficConfig => http_api.accept_traffic;
    CorsConfig => cors;
    AppManagerConfig => app_manager;
    AppCacheConfig => app_manager.cache;
    ArrayApps => app_manager.array;
    DynamoDbConfig => app_manager.dynamodb;
    SqlAppsConfig => app_manager.postgres;
    AdapterConfig => adapter;
    RequestsTimeout => adapter.cluster;
    RedisAdapterConfig => adapter.redis;
    NatsAdapterConfig => adapter.nats;
    ClusterConfig => cluster;
    RateLimiterConfig => rate_limiter;
    CacheConfig => cache;
    QueueConfig => queue;
    RedisQueueConfig => queue.redis;
    SqsQueueConfig => queue.sqs;
    MetricsConfig => metrics;
    PrometheusConfig => metrics.prometheus;
    ChannelLimits => channel_limits;
    EventLimits => event_limits;
    PresenceLimits => presence;
    PoolingConfig => database_pooling;
);

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            duration: 50,
        }
    }
}

/// A configuration that cannot be used; the message names the option and its source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A figment provider holding one source's settings, named after the source.
struct Source {
    name: String,
    values: serde_json::Value,
}

impl Provider for Source {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = Value::serialize(&self.values)?
            .into_dict()
            .ok_or_else(|| figment::Error::from(format!("{} is not a map", self.name)))?;
        Ok(Profile::Default.collect(dict))
    }
}

impl Config {
    /// Loads the configuration from the defaults, `file` and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// Loads the configuration with `lookup` in place of the process environment.
    pub fn load_from(
        file: Option<&Path>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // Apps are merged by index, so that `DEFAULT_APP_KEY` changes the first app of a
        // config file instead of replacing the list; the defaults hold no app, and the default
        // app fills the gaps of the first one afterwards.
        let mut defaults = serde_json::to_value(Config::default())
            .map_err(|e| ConfigError::new(format!("the defaults do not serialize: {e}")))?;
        apps::index_apps(&mut defaults, true);
        let mut figment = Figment::from(Source {
            name: "the defaults".into(),
            values: defaults,
        });
        if let Some(path) = file {
            let mut values = read_file(path)?;
            apps::index_apps(&mut values, false);
            figment = figment.merge(Source {
                name: format!("config file {}", path.display()),
                values,
            });
        }
        for prefixed in [false, true] {
            for option in ENV_OPTIONS {
                if !prefixed && option.prefix_only {
                    continue;
                }
                let name = if prefixed {
                    format!("SOKETI_{}", option.name)
                } else {
                    option.name.to_owned()
                };
                if let Some(raw) = lookup(&name) {
                    figment = figment.merge(Source {
                        name: format!("environment variable {name}"),
                        values: env::nest(option.path, env::parse_value(&raw)),
                    });
                }
            }
        }
        let mut config: Config = figment.extract().map_err(describe)?;
        apps::fill_default_app(&mut config.app_manager.array.apps);
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "activityTimeout (ACTIVITY_TIMEOUT)",
                self.activity_timeout as f64,
            ),
            ("pongTimeout (PONG_TIMEOUT)", self.pong_timeout as f64),
            (
                "eventLimits.maxPayloadInKb (EVENT_MAX_SIZE_IN_KB)",
                self.event_limits.max_payload_in_kb,
            ),
            (
                "presence.maxMemberSizeInKb (PRESENCE_MAX_MEMBER_SIZE)",
                self.presence.max_member_size_in_kb,
            ),
            (
                "httpApi.requestLimitInMb (HTTP_MAX_REQUEST_SIZE)",
                self.http_api.request_limit_in_mb,
            ),
            (
                "maxBackpressure (MAX_BACKPRESSURE)",
                self.max_backpressure as f64,
            ),
        ];
        for (name, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return Err(ConfigError::new(format!(
                    "invalid value for {name}: {value}; expected a positive number"
                )));
            }
        }
        if self.apps().is_empty() {
            return Err(ConfigError::new(
                "appManager.array.apps is empty; the array app manager needs at least one app",
            ));
        }
        for (i, app) in self.app_manager.array.apps.iter().enumerate() {
            app.check(i)?;
        }
        Ok(())
    }

    /// Checks that this build can run with the configuration: the drivers it names exist here,
    /// and the TLS key needs no passphrase. `config` prints a configuration that fails this;
    /// `start` refuses it.
    pub fn check_runnable(&self) -> Result<(), ConfigError> {
        let drivers = [
            (
                "appManager.driver (APP_MANAGER_DRIVER)",
                self.app_manager.driver.as_str(),
                self.app_manager.driver.is_implemented(),
                AppManagerDriver::implemented(),
            ),
            (
                "adapter.driver (ADAPTER_DRIVER)",
                self.adapter.driver.as_str(),
                self.adapter.driver.is_implemented(),
                AdapterDriver::implemented(),
            ),
            (
                "rateLimiter.driver (RATE_LIMITER_DRIVER)",
                self.rate_limiter.driver.as_str(),
                self.rate_limiter.driver.is_implemented(),
                RateLimiterDriver::implemented(),
            ),
            (
                "cache.driver (CACHE_DRIVER)",
                self.cache.driver.as_str(),
                self.cache.driver.is_implemented(),
                CacheDriver::implemented(),
            ),
            (
                "queue.driver (QUEUE_DRIVER)",
                self.queue.driver.as_str(),
                self.queue.driver.is_implemented(),
                QueueDriver::implemented(),
            ),
        ];
        for (name, value, implemented, available) in drivers {
            if !implemented {
                return Err(ConfigError::new(format!(
                    "{name} is {value:?}, which this build does not provide yet; available: {}",
                    available.join(", ")
                )));
            }
        }
        if self.adapter.driver == AdapterDriver::Redis {
            if self.adapter.redis.cluster_mode {
                return Err(ConfigError::new(
                    "adapter.redis.clusterMode (ADAPTER_REDIS_CLUSTER_MODE) is not supported yet: \
                     Redis Cluster does not carry pub/sub between shards the way the adapter \
                     needs; point DB_REDIS_HOST at one Redis",
                ));
            }
            if self
                .database
                .redis
                .sentinels
                .as_ref()
                .is_some_and(|s| !s.is_null())
            {
                return Err(ConfigError::new(
                    "database.redis.sentinels (DB_REDIS_SENTINELS) is not supported yet; point \
                     DB_REDIS_HOST at the current Redis master",
                ));
            }
            if self.adapter.redis.heartbeat_interval == 0
                || self.adapter.redis.node_timeout <= self.adapter.redis.heartbeat_interval
            {
                return Err(ConfigError::new(format!(
                    "adapter.redis.nodeTimeout (ADAPTER_REDIS_NODE_TIMEOUT, {} ms) must be longer \
                     than adapter.redis.heartbeatInterval (ADAPTER_REDIS_HEARTBEAT_INTERVAL, {} ms), \
                     which must be positive",
                    self.adapter.redis.node_timeout, self.adapter.redis.heartbeat_interval
                )));
            }
        }
        if self.rate_limiter.driver == RateLimiterDriver::Cluster
            && self.adapter.driver == AdapterDriver::Local
        {
            return Err(ConfigError::new(
                "rateLimiter.driver (RATE_LIMITER_DRIVER) is cluster, which shares budgets \
                 through the adapter; set adapter.driver (ADAPTER_DRIVER) to cluster, redis or \
                 nats, or use the local or redis rate limiter",
            ));
        }
        if self.adapter.driver == AdapterDriver::Cluster {
            self.cluster_mode()?;
            self.cluster_host()?;
            let c = &self.cluster;
            if c.hello_interval == 0 || c.check_interval == 0 {
                return Err(ConfigError::new(
                    "cluster.helloInterval (CLUSTER_KEEPALIVE_INTERVAL) and cluster.checkInterval \
                     (CLUSTER_CHECK_INTERVAL) must be positive",
                ));
            }
            if c.node_timeout < c.check_interval || c.node_timeout <= c.hello_interval {
                return Err(ConfigError::new(format!(
                    "cluster.nodeTimeout (CLUSTER_NODE_TIMEOUT, {} ms) must be at least \
                     cluster.checkInterval (CLUSTER_CHECK_INTERVAL, {} ms) and longer than \
                     cluster.helloInterval (CLUSTER_KEEPALIVE_INTERVAL, {} ms)",
                    c.node_timeout, c.check_interval, c.hello_interval
                )));
            }
            if c.master_timeout < c.node_timeout {
                return Err(ConfigError::new(format!(
                    "cluster.masterTimeout (CLUSTER_MASTER_TIMEOUT, {} ms) must be at least \
                     cluster.nodeTimeout (CLUSTER_NODE_TIMEOUT, {} ms)",
                    c.master_timeout, c.node_timeout
                )));
            }
        }
        for (driver, option, table) in [
            (
                AppManagerDriver::Postgres,
                "appManager.postgres.table (APP_MANAGER_POSTGRES_TABLE)",
                &self.app_manager.postgres.table,
            ),
            (
                AppManagerDriver::Mysql,
                "appManager.mysql.table (APP_MANAGER_MYSQL_TABLE)",
                &self.app_manager.mysql.table,
            ),
        ] {
            let identifier = !table.is_empty()
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if self.app_manager.driver == driver && !identifier {
                return Err(ConfigError::new(format!(
                    "{option} is {table:?}; use a table name of letters, digits and _"
                )));
            }
        }
        if !self.ssl.passphrase.is_empty() {
            return Err(ConfigError::new(
                "ssl.passphrase (SSL_PASS) is set, but encrypted private keys are not supported; \
                 decrypt the key (openssl pkey -in key.pem -out plain.pem) and unset SSL_PASS",
            ));
        }
        Ok(())
    }

    /// The address to listen on.
    pub fn bind_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// How cluster hellos travel: unicast when a list is set, else multicast when a group is
    /// set, else broadcast (soketi's order).
    pub fn cluster_mode(&self) -> Result<soketi_adapter_cluster::Mode, ConfigError> {
        use soketi_adapter_cluster::Mode;
        let c = &self.cluster;
        let unicast: Vec<String> = match &c.unicast {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(list)) => list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => Ok(s.trim().to_owned()),
                    other => Err(ConfigError::new(format!(
                        "cluster.unicast (CLUSTER_UNICAST_ADDRESSES) holds {other}; use strings \
                         such as \"10.0.0.2\" or \"soketi-headless:11002\""
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ConfigError::new(format!(
                    "cluster.unicast (CLUSTER_UNICAST_ADDRESSES) is {other}; use a JSON array of \
                     addresses or a comma-separated list"
                )));
            }
        };
        if !unicast.is_empty() {
            return Ok(Mode::Unicast(unicast));
        }
        let ipv4 = |option: &str, value: &str| {
            value.parse::<std::net::Ipv4Addr>().map_err(|_| {
                ConfigError::new(format!("{option} is {value:?}; use an IPv4 address"))
            })
        };
        match c.multicast.as_deref().filter(|m| !m.is_empty()) {
            Some(group) => {
                let group = ipv4("cluster.multicast (CLUSTER_MULTICAST_ADDRESS)", group)?;
                if !group.is_multicast() {
                    return Err(ConfigError::new(format!(
                        "cluster.multicast (CLUSTER_MULTICAST_ADDRESS) is {group}, which is not a \
                         multicast address (224.0.0.0/4)"
                    )));
                }
                Ok(Mode::Multicast(group))
            }
            None => Ok(Mode::Broadcast(ipv4(
                "cluster.broadcast (CLUSTER_BROADCAST_ADDRESS)",
                &c.broadcast,
            )?)),
        }
    }

    fn cluster_host(&self) -> Result<std::net::IpAddr, ConfigError> {
        self.cluster.hostname.parse().map_err(|_| {
            ConfigError::new(format!(
                "cluster.hostname (CLUSTER_HOST) is {:?}; use this node's IP address, or 0.0.0.0",
                self.cluster.hostname
            ))
        })
    }

    /// The settings of the cluster transport. Call after [`Config::check_runnable`].
    pub fn cluster_transport_config(&self) -> soketi_adapter_cluster::ClusterConfig {
        let c = &self.cluster;
        soketi_adapter_cluster::ClusterConfig {
            prefix: c.prefix.clone(),
            host: self
                .cluster_host()
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            port: c.port,
            mode: self
                .cluster_mode()
                .unwrap_or(soketi_adapter_cluster::Mode::Broadcast(
                    std::net::Ipv4Addr::BROADCAST,
                )),
            hello_interval: Duration::from_millis(c.hello_interval),
            check_interval: Duration::from_millis(c.check_interval),
            node_timeout: Duration::from_millis(c.node_timeout),
            master_timeout: Duration::from_millis(c.master_timeout),
            max_queued_frames: 100_000,
            // Room for the largest event with its envelope; the payload limits are enforced
            // where events enter.
            max_frame_bytes: self
                .max_request_bytes()
                .max(kb(self.event_limits.max_payload_in_kb) * 4)
                + 64 * 1024,
        }
    }

    /// The `postgres://` URL of `database.postgres`.
    pub fn postgres_url(&self) -> String {
        sql_url("postgres", &self.database.postgres)
    }

    /// The `mysql://` URL of `database.mysql`.
    pub fn mysql_url(&self) -> String {
        sql_url("mysql", &self.database.mysql)
    }

    /// The `redis://` URL of `database.redis`.
    pub fn redis_url(&self) -> String {
        let redis = &self.database.redis;
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let auth = match (&redis.username, &redis.password) {
            (Some(user), Some(password)) => format!("{}:{}@", encode(user), encode(password)),
            (None, Some(password)) => format!(":{}@", encode(password)),
            (Some(user), None) => format!("{}@", encode(user)),
            (None, None) => String::new(),
        };
        format!("redis://{auth}{}:{}/{}", redis.host, redis.port, redis.db)
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
        }
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

fn sql_url(scheme: &str, db: &SqlDatabase) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let auth = if db.password.is_empty() {
        encode(&db.user)
    } else {
        format!("{}:{}", encode(&db.user), encode(&db.password))
    };
    format!(
        "{scheme}://{auth}@{}:{}/{}",
        db.host,
        db.port,
        encode(&db.database)
    )
}

fn kb(value: f64) -> usize {
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
                    mask(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// Reads a config file by extension and expands soketi's dotted keys into nested maps.
fn read_file(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("cannot read the config file {shown}: {e}")))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let parsed: Result<serde_json::Value, String> = match extension.as_str() {
        "json" => serde_json::from_str(&text).map_err(|e| e.to_string()),
        "toml" => toml_to_json(&text),
        "yaml" | "yml" => yaml_to_json(&text),
        other => {
            return Err(ConfigError::new(format!(
                "the config file {shown} has the extension {other:?}; use .json, .toml, .yaml or .yml"
            )));
        }
    };
    let parsed = parsed
        .map_err(|e| ConfigError::new(format!("the config file {shown} is not valid: {e}")))?;
    let serde_json::Value::Object(map) = parsed else {
        return Err(ConfigError::new(format!(
            "the config file {shown} must hold a map of options"
        )));
    };
    let mut out = serde_json::Value::Object(serde_json::Map::new());
    for (key, value) in map {
        env::merge_into(&mut out, &env::nest(&key, value));
    }
    Ok(out)
}

fn toml_to_json(text: &str) -> Result<serde_json::Value, String> {
    use figment::providers::{Format, Toml};
    let dict = Toml::from_str::<Dict>(text).map_err(|e| e.to_string())?;
    serde_json::to_value(&dict).map_err(|e| e.to_string())
}

fn yaml_to_json(text: &str) -> Result<serde_json::Value, String> {
    use figment::providers::{Format, Yaml};
    let dict = Yaml::from_str::<Dict>(text).map_err(|e| e.to_string())?;
    serde_json::to_value(&dict).map_err(|e| e.to_string())
}

/// One line per bad value: the option, where it came from, and what was wrong with it.
fn describe(errors: figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map_or_else(|| "the defaults".to_owned(), |m| m.name.to_string());
            let known = env::env_names_for(&path);
            let also = if known.is_empty() || source.contains("environment variable") {
                String::new()
            } else {
                format!(" (environment: {known})")
            };
            format!("invalid value for {path}{also} from {source}: {}", e.kind)
        })
        .collect();
    ConfigError::new(lines.join("; "))
}

#[cfg(test)]
mod tests;
