//! The settings: one struct per group of options, with soketi's option paths as field names.
//! Their defaults are in `defaults.rs`.

use serde::{Deserialize, Serialize};

use super::apps::{self, AppConfig};
use super::drivers::{
    AdapterDriver, AppManagerDriver, CacheDriver, MetricsDriver, QueueDriver, RateLimiterDriver,
};

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
    /// What a WebSocket client may send.
    pub websocket: WebSocketConfig,
    /// Caps on WebSocket connections per client address.
    pub ip_limits: IpLimitsConfig,
    /// Proxies, as CIDRs, whose `Forwarded` / `X-Forwarded-For` headers name the client's
    /// address; a list, or its JSON text, or a comma-separated string.
    #[serde(deserialize_with = "apps::string_list")]
    pub trusted_proxies: Vec<String>,
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
    /// The live debug console at `/console`.
    pub console: ConsoleConfig,
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
    /// The keys of the config file that name no option (dotted paths): ignored, as soketi
    /// ignores them, and named in a warning at start (`Config::no_effect_notices`).
    #[serde(skip)]
    pub unknown_file_keys: Vec<String>,
}

/// The HTTP API.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpApiConfig {
    /// Megabytes of a request body; larger bodies get 413.
    pub request_limit_in_mb: f64,
    /// Milliseconds in which a request's head (request line and headers) must arrive, on the
    /// main port (WebSocket upgrades included) and the operations port. An idle keep-alive
    /// connection is closed when no request begins within it.
    pub headers_timeout: u64,
    /// Milliseconds in which a request's body must arrive once its head has; 408 after.
    pub body_timeout: u64,
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
    /// Passphrase of an encrypted key (PKCS#8, `BEGIN ENCRYPTED PRIVATE KEY`).
    pub passphrase: String,
    /// PEM CA certificates that client certificates are verified against, as soketi's
    /// uSockets does: a client may present none, but one it presents must verify.
    pub ca_path: String,
    /// PEM certificates appended to the chain sent to clients (intermediates that the
    /// certificate file does not hold).
    pub chain_path: String,
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
    /// Server version (a number in the environment is read as its text).
    #[serde(deserialize_with = "apps::string_or_number")]
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

/// The live debug console.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsoleConfig {
    /// Whether the main port serves `/console`, its assets and the apps' console streams.
    pub enabled: bool,
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

/// Webhook batching.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BatchingConfig {
    /// Whether events are batched.
    pub enabled: bool,
    /// Milliseconds a batch collects events.
    pub duration: u64,
}

/// What a WebSocket client may send.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WebSocketConfig {
    /// Kilobytes of one message (all its fragments); a larger one closes the connection with
    /// 1009. 0 sizes it for each app: its largest event or presence member, and 28 KiB for the
    /// envelope (128 KiB with the default limits).
    pub max_message_size_in_kb: f64,
    /// Milliseconds in which a message a client has begun must be complete; pings do not
    /// extend it. The connection is closed with 1008 after.
    pub message_timeout: u64,
}

/// Caps on WebSocket connections per client address, counted on each node; 0 is no cap.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IpLimitsConfig {
    /// WebSocket connections one address may hold open at once.
    pub max_connections: u64,
    /// WebSocket connections one address may open in a second.
    pub max_connects_per_sec: u64,
}

/// Limits of channels.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ChannelLimits {
    /// Characters of a channel name.
    pub max_name_length: usize,
    /// Channels one connection may be subscribed to at once.
    pub max_subscriptions_per_connection: usize,
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
    /// Characters of a member's `user_id`.
    pub max_user_id_length: usize,
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
    /// Reach Redis (and the sentinels) over TLS (not a soketi option; soketi takes the `tls`
    /// key of its `*_REDIS_OPTIONS`, which is read too).
    pub tls: bool,
    /// PEM file of the CAs to trust instead of the built-in roots; turns TLS on.
    pub tls_ca: String,
    /// PEM file of a client certificate chain; turns TLS on.
    pub tls_cert: String,
    /// PEM file of the client certificate's private key.
    pub tls_key: String,
    /// Accept any certificate from Redis: no verification at all.
    pub tls_insecure: bool,
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
