//! soketi's defaults, in one table: every struct's `Default` is its part of
//! `Config::default()`.

use soketi_protocol::AppLimits;

use super::apps::AppConfig;
use super::drivers::{
    AdapterDriver, AppManagerDriver, CacheDriver, MetricsDriver, QueueDriver, RateLimiterDriver,
};
use super::schema::*;

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
            websocket: WebSocketConfig {
                max_message_size_in_kb: 0.0,
                message_timeout: 30_000,
            },
            ip_limits: IpLimitsConfig::default(),
            trusted_proxies: Vec::new(),
            log_format: LogFormat::Text,
            reuse_port: false,
            http_api: HttpApiConfig {
                request_limit_in_mb: 100.0,
                headers_timeout: 10_000,
                body_timeout: 30_000,
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
            console: ConsoleConfig { enabled: true },
            webhooks: WebhooksConfig::default(),
            channel_limits: ChannelLimits {
                max_name_length: limits.max_channel_name_length,
                max_subscriptions_per_connection: limits.max_subscriptions_per_connection,
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
                max_user_id_length: limits.max_presence_user_id_length,
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
            unknown_file_keys: Vec::new(),
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
            tls: false,
            tls_ca: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_insecure: false,
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
    WebSocketConfig => websocket;
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
    ConsoleConfig => console;
    PrometheusConfig => metrics.prometheus;
    ChannelLimits => channel_limits;
    EventLimits => event_limits;
    PresenceLimits => presence;
    PoolingConfig => database_pooling;
);

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            batching: BatchingConfig::default(),
            vacated_delay: 3000,
            timeout: 10_000,
        }
    }
}
impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            duration: 50,
        }
    }
}
