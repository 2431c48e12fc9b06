//! Environment names, the option paths they set, and reading their values as soketi does.

use serde_json::{Map, Value};

/// An option that the environment can set.
#[derive(Clone, Copy, Debug)]
pub struct EnvOption {
    /// The name without the `SOKETI_` prefix.
    pub name: &'static str,
    /// soketi's option path (dots nest; a number indexes the app list).
    pub path: &'static str,
    /// Whether only the prefixed name is read: generic names that other software sets too.
    pub prefix_only: bool,
    /// What the option does here.
    pub kind: OptionKind,
}

/// What an option does here: every option soketi knows either takes effect or (only where
/// soketi gave it no effect either) is accepted, documented and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// The server reads it.
    Effect,
    /// Accepted with no effect, for this reason; listed in docs/migrating-from-soketi.md and
    /// logged once at start when set to other than the default (`Config::no_effect_notices`).
    NoEffect(&'static str),
}

const fn both(name: &'static str, path: &'static str) -> EnvOption {
    EnvOption {
        name,
        path,
        prefix_only: false,
        kind: OptionKind::Effect,
    }
}

const fn prefixed(name: &'static str, path: &'static str) -> EnvOption {
    EnvOption {
        name,
        path,
        prefix_only: true,
        kind: OptionKind::Effect,
    }
}

impl EnvOption {
    const fn no_effect(self, reason: &'static str) -> Self {
        EnvOption {
            kind: OptionKind::NoEffect(reason),
            ..self
        }
    }
}

const SQL_VERSION: &str = "soketi passed it to knex, whose queries of the apps table do not \
    depend on it";

/// Every environment name, as soketi spells it, with the option it sets.
pub const ENV_OPTIONS: &[EnvOption] = &[
    prefixed("HOST", "host"),
    prefixed("PORT", "port"),
    prefixed("DEBUG", "debug"),
    prefixed("MODE", "mode"),
    both("PATH_PREFIX", "pathPrefix"),
    both("SHUTDOWN_GRACE_PERIOD", "shutdownGracePeriod"),
    both("USER_AUTHENTICATION_TIMEOUT", "userAuthenticationTimeout"),
    both("ACTIVITY_TIMEOUT", "activityTimeout"),
    both("PONG_TIMEOUT", "pongTimeout"),
    both("MAX_BACKPRESSURE", "maxBackpressure"),
    both("LOG_FORMAT", "logFormat"),
    both("REUSE_PORT", "reusePort"),
    both(
        "HTTP_ACCEPT_TRAFFIC_MEMORY_THRESHOLD",
        "httpApi.acceptTraffic.memoryThreshold",
    ),
    both("HTTP_MAX_REQUEST_SIZE", "httpApi.requestLimitInMb"),
    both("HTTP_HEADERS_TIMEOUT", "httpApi.headersTimeout"),
    both("HTTP_BODY_TIMEOUT", "httpApi.bodyTimeout"),
    both("WEBSOCKET_MAX_MESSAGE_SIZE", "websocket.maxMessageSizeInKb"),
    both("WEBSOCKET_MESSAGE_TIMEOUT", "websocket.messageTimeout"),
    both("IP_MAX_CONNECTIONS", "ipLimits.maxConnections"),
    both("IP_MAX_CONNECTS_PER_SEC", "ipLimits.maxConnectsPerSec"),
    both("TRUSTED_PROXIES", "trustedProxies"),
    both("SSL_CERT", "ssl.certPath"),
    both("SSL_KEY", "ssl.keyPath"),
    both("SSL_PASS", "ssl.passphrase"),
    both("SSL_CA", "ssl.caPath"),
    both("SSL_CHAIN", "ssl.chainPath"),
    both("APP_MANAGER_DRIVER", "appManager.driver"),
    both("APP_MANAGER_CACHE_ENABLED", "appManager.cache.enabled"),
    both("APP_MANAGER_CACHE_TTL", "appManager.cache.ttl"),
    both("APP_MANAGER_DYNAMODB_TABLE", "appManager.dynamodb.table"),
    both("APP_MANAGER_DYNAMODB_REGION", "appManager.dynamodb.region"),
    both(
        "APP_MANAGER_DYNAMODB_ENDPOINT",
        "appManager.dynamodb.endpoint",
    ),
    both("APP_MANAGER_MYSQL_TABLE", "appManager.mysql.table"),
    both("APP_MANAGER_MYSQL_VERSION", "appManager.mysql.version").no_effect(SQL_VERSION),
    both("APP_MANAGER_MYSQL_USE_V2", "appManager.mysql.useMysql2").no_effect(
        "it chose between two Node.js MySQL clients; this server has one, which speaks what \
         mysql2 did (MySQL 8's caching_sha2_password included)",
    ),
    both("APP_MANAGER_POSTGRES_TABLE", "appManager.postgres.table"),
    both(
        "APP_MANAGER_POSTGRES_VERSION",
        "appManager.postgres.version",
    )
    .no_effect(SQL_VERSION),
    both("DEFAULT_APP_ID", "appManager.array.apps.0.id"),
    both("DEFAULT_APP_KEY", "appManager.array.apps.0.key"),
    both("DEFAULT_APP_SECRET", "appManager.array.apps.0.secret"),
    both(
        "DEFAULT_APP_MAX_CONNS",
        "appManager.array.apps.0.maxConnections",
    ),
    both(
        "DEFAULT_APP_ENABLE_CLIENT_MESSAGES",
        "appManager.array.apps.0.enableClientMessages",
    ),
    both("DEFAULT_APP_ENABLED", "appManager.array.apps.0.enabled"),
    both(
        "DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC",
        "appManager.array.apps.0.maxBackendEventsPerSecond",
    ),
    both(
        "DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC",
        "appManager.array.apps.0.maxClientEventsPerSecond",
    ),
    both(
        "DEFAULT_APP_MAX_READ_REQ_PER_SEC",
        "appManager.array.apps.0.maxReadRequestsPerSecond",
    ),
    both(
        "DEFAULT_APP_USER_AUTHENTICATION",
        "appManager.array.apps.0.enableUserAuthentication",
    ),
    both(
        "DEFAULT_APP_ENABLE_WATCHLIST_EVENTS",
        "appManager.array.apps.0.enableWatchlistEvents",
    ),
    both(
        "DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT",
        "appManager.array.apps.0.enableSubscriptionCount",
    ),
    // The name some deployments of other Pusher servers use for the same switch.
    both(
        "DEFAULT_APP_SUBSCRIPTION_COUNT_ENABLED",
        "appManager.array.apps.0.enableSubscriptionCount",
    ),
    both("DEFAULT_APP_WEBHOOKS", "appManager.array.apps.0.webhooks"),
    both(
        "DEFAULT_APP_ALLOWED_ORIGINS",
        "appManager.array.apps.0.allowedOrigins",
    ),
    both("ADAPTER_DRIVER", "adapter.driver"),
    both(
        "ADAPTER_CLUSTER_REQUESTS_TIMEOUT",
        "adapter.cluster.requestsTimeout",
    ),
    both("ADAPTER_REDIS_PREFIX", "adapter.redis.prefix"),
    both("ADAPTER_REDIS_CLUSTER_MODE", "adapter.redis.clusterMode"),
    both(
        "ADAPTER_REDIS_REQUESTS_TIMEOUT",
        "adapter.redis.requestsTimeout",
    ),
    both("ADAPTER_REDIS_PUB_OPTIONS", "adapter.redis.redisPubOptions"),
    both("ADAPTER_REDIS_SUB_OPTIONS", "adapter.redis.redisSubOptions"),
    both(
        "ADAPTER_REDIS_HEARTBEAT_INTERVAL",
        "adapter.redis.heartbeatInterval",
    ),
    both("ADAPTER_REDIS_NODE_TIMEOUT", "adapter.redis.nodeTimeout"),
    both("ADAPTER_NATS_PREFIX", "adapter.nats.prefix"),
    both("ADAPTER_NATS_SERVERS", "adapter.nats.servers"),
    both("ADAPTER_NATS_USER", "adapter.nats.user"),
    both("ADAPTER_NATS_PASSWORD", "adapter.nats.pass"),
    both("ADAPTER_NATS_TOKEN", "adapter.nats.token"),
    both("ADAPTER_NATS_TIMEOUT", "adapter.nats.timeout"),
    both(
        "ADAPTER_NATS_REQUESTS_TIMEOUT",
        "adapter.nats.requestsTimeout",
    ),
    both("ADAPTER_NATS_NODES_NUMBER", "adapter.nats.nodesNumber").no_effect(
        "soketi stopped waiting once that many NATS servers had answered its count of \
         subscribers; each node here knows the live nodes from their heartbeats and asks NATS \
         for no count",
    ),
    both(
        "ADAPTER_NATS_HEARTBEAT_INTERVAL",
        "adapter.nats.heartbeatInterval",
    ),
    both("ADAPTER_NATS_NODE_TIMEOUT", "adapter.nats.nodeTimeout"),
    both("CLUSTER_HOST", "cluster.hostname"),
    both("CLUSTER_PORT", "cluster.port"),
    both("CLUSTER_KEEPALIVE_INTERVAL", "cluster.helloInterval"),
    both("CLUSTER_CHECK_INTERVAL", "cluster.checkInterval"),
    both("CLUSTER_NODE_TIMEOUT", "cluster.nodeTimeout"),
    both("CLUSTER_MASTER_TIMEOUT", "cluster.masterTimeout"),
    both("CLUSTER_PREFIX", "cluster.prefix"),
    both("CLUSTER_IGNORE_PROCESS", "cluster.ignoreProcess").no_effect(
        "a node always ignores its own hellos, as soketi's one discovery instance per process did",
    ),
    both("CLUSTER_BROADCAST_ADDRESS", "cluster.broadcast"),
    both("CLUSTER_MULTICAST_ADDRESS", "cluster.multicast"),
    both("CLUSTER_UNICAST_ADDRESSES", "cluster.unicast"),
    both("RATE_LIMITER_DRIVER", "rateLimiter.driver"),
    both(
        "RATE_LIMITER_REDIS_OPTIONS",
        "rateLimiter.redis.redisOptions",
    ),
    both(
        "RATE_LIMITER_REDIS_CLUSTER_MODE",
        "rateLimiter.redis.clusterMode",
    ),
    both("CACHE_DRIVER", "cache.driver"),
    both("CACHE_REDIS_OPTIONS", "cache.redis.redisOptions"),
    both("CACHE_REDIS_CLUSTER_MODE", "cache.redis.clusterMode"),
    both("CHANNEL_CACHE_TTL", "channelLimits.cacheTtl"),
    both("QUEUE_DRIVER", "queue.driver"),
    both("QUEUE_REDIS_CONCURRENCY", "queue.redis.concurrency"),
    both("QUEUE_REDIS_OPTIONS", "queue.redis.redisOptions"),
    both("QUEUE_REDIS_CLUSTER_MODE", "queue.redis.clusterMode"),
    both("QUEUE_SQS_REGION", "queue.sqs.region"),
    both("QUEUE_SQS_URL", "queue.sqs.queueUrl"),
    both("QUEUE_SQS_ENDPOINT", "queue.sqs.endpoint"),
    both("QUEUE_SQS_CLIENT_OPTIONS", "queue.sqs.clientOptions"),
    both("QUEUE_SQS_PROCESS_BATCH", "queue.sqs.processBatch"),
    both("QUEUE_SQS_BATCH_SIZE", "queue.sqs.batchSize"),
    both(
        "QUEUE_SQS_POLLING_WAIT_TIME_MS",
        "queue.sqs.pollingWaitTimeMs",
    ),
    both("METRICS_ENABLED", "metrics.enabled"),
    both("METRICS_DRIVER", "metrics.driver"),
    both("METRICS_HOST", "metrics.host"),
    both("METRICS_SERVER_PORT", "metrics.port"),
    both("METRICS_PROMETHEUS_PREFIX", "metrics.prometheus.prefix"),
    prefixed("CONSOLE_ENABLED", "console.enabled"),
    both("WEBHOOKS_BATCHING", "webhooks.batching.enabled"),
    both("WEBHOOKS_BATCHING_DURATION", "webhooks.batching.duration"),
    both("WEBHOOKS_VACATED_DELAY", "webhooks.vacatedDelay"),
    both("WEBHOOKS_TIMEOUT", "webhooks.timeout"),
    both("QUEUE_MAX_ATTEMPTS", "queue.maxAttempts"),
    both("QUEUE_BACKOFF", "queue.backoff"),
    both(
        "CHANNEL_LIMITS_MAX_NAME_LENGTH",
        "channelLimits.maxNameLength",
    ),
    both(
        "CHANNEL_LIMITS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        "channelLimits.maxSubscriptionsPerConnection",
    ),
    both(
        "EVENT_MAX_CHANNELS_AT_ONCE",
        "eventLimits.maxChannelsAtOnce",
    ),
    both("EVENT_MAX_NAME_LENGTH", "eventLimits.maxNameLength"),
    both("EVENT_MAX_SIZE_IN_KB", "eventLimits.maxPayloadInKb"),
    both("EVENT_MAX_BATCH_SIZE", "eventLimits.maxBatchSize"),
    both("PRESENCE_MAX_MEMBERS", "presence.maxMembersPerChannel"),
    both("PRESENCE_MAX_MEMBER_SIZE", "presence.maxMemberSizeInKb"),
    both("PRESENCE_MAX_USER_ID_LENGTH", "presence.maxUserIdLength"),
    both("DB_MYSQL_HOST", "database.mysql.host"),
    both("DB_MYSQL_PORT", "database.mysql.port"),
    both("DB_MYSQL_USERNAME", "database.mysql.user"),
    both("DB_MYSQL_PASSWORD", "database.mysql.password"),
    both("DB_MYSQL_DATABASE", "database.mysql.database"),
    both("DB_POSTGRES_HOST", "database.postgres.host"),
    both("DB_POSTGRES_PORT", "database.postgres.port"),
    both("DB_POSTGRES_USERNAME", "database.postgres.user"),
    both("DB_POSTGRES_PASSWORD", "database.postgres.password"),
    both("DB_POSTGRES_DATABASE", "database.postgres.database"),
    both("DB_REDIS_HOST", "database.redis.host"),
    both("DB_REDIS_PORT", "database.redis.port"),
    both("DB_REDIS_DB", "database.redis.db"),
    both("DB_REDIS_USERNAME", "database.redis.username"),
    both("DB_REDIS_PASSWORD", "database.redis.password"),
    both("DB_REDIS_KEY_PREFIX", "database.redis.keyPrefix"),
    both("DB_REDIS_SENTINELS", "database.redis.sentinels"),
    both(
        "DB_REDIS_SENTINEL_PASSWORD",
        "database.redis.sentinelPassword",
    ),
    both("DB_REDIS_INSTANCE_NAME", "database.redis.name"),
    both("DB_REDIS_CLUSTER_NODES", "database.redis.clusterNodes"),
    both("DB_REDIS_TLS", "database.redis.tls"),
    both("DB_REDIS_TLS_CA", "database.redis.tlsCa"),
    both("DB_REDIS_TLS_CERT", "database.redis.tlsCert"),
    both("DB_REDIS_TLS_KEY", "database.redis.tlsKey"),
    both("DB_REDIS_TLS_INSECURE", "database.redis.tlsInsecure"),
    both("DB_POOLING_ENABLED", "databasePooling.enabled"),
    both("DB_POOLING_MIN", "databasePooling.min"),
    both("DB_POOLING_MAX", "databasePooling.max"),
];

/// Reads an environment value as soketi does: JSON when it parses, else the raw string.
/// An empty value is the empty string.
pub(super) fn parse_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// `value` nested under a dotted `path`: `a.b` becomes `{"a":{"b":value}}`.
pub(super) fn nest(path: &str, value: Value) -> Value {
    path.rsplit('.').fold(value, |inner, key| {
        let mut map = Map::new();
        map.insert(key.to_owned(), inner);
        Value::Object(map)
    })
}

/// Merges `overlay` into `base`, maps key by key; anything else replaces.
pub(super) fn merge_into(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => merge_into(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// The value at a dotted option `path` of a serialized configuration; a number indexes a list.
/// `Null` where nothing is.
pub(super) fn value_at<'a>(root: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(root, |value, key| match value {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
        .unwrap_or(&Value::Null)
}

/// The environment names that set an option path, for error messages.
pub(super) fn env_names_for(path: &str) -> String {
    ENV_OPTIONS
        .iter()
        .filter(|o| o.path == path)
        .map(|o| {
            if o.prefix_only {
                format!("SOKETI_{}", o.name)
            } else {
                format!("{} or SOKETI_{}", o.name, o.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
