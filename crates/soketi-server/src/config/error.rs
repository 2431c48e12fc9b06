//! Why a configuration cannot be used. Every message names the option at fault, with its
//! environment name, and says what to do; a value that does not parse also names its source.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use figment::providers::{Format, Toml, Yaml};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    ReadFile {
        /// The file as given.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file's extension names no format this build reads.
    #[error(
        "the config file {} has the extension {extension:?}; use .json, .toml, .yaml or .yml",
        path.display()
    )]
    FileFormat {
        /// The file as given.
        path: PathBuf,
        /// The extension, lowercased.
        extension: String,
    },
    /// The config file does not parse in the format its extension names.
    #[error("the config file {} is not valid: {source}", path.display())]
    FileSyntax {
        /// The file as given.
        path: PathBuf,
        /// The parser's complaint.
        source: SyntaxError,
    },
    /// The config file holds something else than a map of options.
    #[error("the config file {} must hold a map of options", path.display())]
    FileNotMap {
        /// The file as given.
        path: PathBuf,
    },
    /// The built-in defaults cannot be turned into a source: a bug of this build.
    #[error("the defaults do not serialize: {0}")]
    Defaults(#[source] serde_json::Error),
    /// Values that do not fit their options, each with the source it came from.
    #[error("{}", InvalidValue::join(.0))]
    InvalidValues(Vec<InvalidValue>),
    /// An entry of `trustedProxies` is not an address or a CIDR.
    #[error(
        "invalid entry {entry:?} in trustedProxies (TRUSTED_PROXIES); expected an address or a \
         CIDR such as 10.0.0.0/8 or fd00::/8"
    )]
    TrustedProxy {
        /// The entry as configured.
        entry: String,
    },
    /// An option that must be zero or a positive number is not.
    #[error("invalid value for {option}: {value}; expected 0 or a positive number")]
    Negative {
        /// The option and its environment name.
        option: &'static str,
        /// The value configured.
        value: f64,
    },
    /// An option that must be a positive number is not.
    #[error("invalid value for {option}: {value}; expected a positive number")]
    NotPositive {
        /// The option and its environment name.
        option: &'static str,
        /// The value configured.
        value: f64,
    },
    /// The array app manager has no app to serve.
    #[error("appManager.array.apps is empty; the array app manager needs at least one app")]
    NoApps,
    /// An app lacks its id, key or secret.
    #[error("appManager.array.apps.{app} has no {field}")]
    AppWithout {
        /// The app's index.
        app: usize,
        /// `id`, `key` or `secret`.
        field: &'static str,
    },
    /// A webhook that cannot be sent: a URL that is not HTTP, neither a URL nor a Lambda
    /// function, or Lambda options this build does not know.
    #[error(
        "appManager.array.apps.{app}.webhooks.{webhook} (app {id:?}) cannot be sent: {message}"
    )]
    Webhook {
        /// The app's index.
        app: usize,
        /// The app's id, as configured.
        id: String,
        /// The webhook's index in the app.
        webhook: usize,
        /// What is wrong.
        message: String,
    },
    /// A Redis user in cluster mode without the nodes to find the Cluster from.
    #[error(
        "{option} is true but database.redis.clusterNodes (DB_REDIS_CLUSTER_NODES) is empty; \
         list some of the Cluster's nodes, as [{{\"host\":\"10.0.0.1\",\"port\":6379}}]"
    )]
    RedisClusterNodesMissing {
        /// The `*_CLUSTER_MODE` option that is on.
        option: &'static str,
    },
    /// A Redis Cluster with a database number other than 0, which a Cluster does not have.
    #[error(
        "the Redis database number is {db} (database.redis.db, DB_REDIS_DB, or the db key of \
         the user's *_REDIS_OPTIONS), but {option} is true and a Redis Cluster has only \
         database 0; unset it"
    )]
    RedisClusterDb {
        /// The `*_CLUSTER_MODE` option that is on.
        option: &'static str,
        /// The database number configured.
        db: u32,
    },
    /// A list of Redis nodes or sentinels that is not a list of `{host, port}`.
    #[error(
        "{option} must be a JSON list of {{\"host\": ..., \"port\": ...}} objects or \
         \"host:port\" strings; found {value}"
    )]
    RedisNodes {
        /// The option and its environment name.
        option: &'static str,
        /// The value found.
        value: serde_json::Value,
    },
    /// A file of Redis's TLS settings that cannot be read.
    #[error("cannot read {option} {path:?}: {source}")]
    RedisTlsFile {
        /// The option and its environment name.
        option: &'static str,
        /// The path configured.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A client certificate without its key, or the reverse.
    #[error(
        "database.redis.tlsCert (DB_REDIS_TLS_CERT) and database.redis.tlsKey (DB_REDIS_TLS_KEY) \
         go together: set both for a client certificate, or neither"
    )]
    RedisTlsIdentity,
    /// The SQS queue without a queue URL.
    #[error(
        "queue.sqs.queueUrl (QUEUE_SQS_URL) is {url:?}; the SQS queue needs its queue's URL, \
         such as https://sqs.us-east-1.amazonaws.com/123456789012/webhooks"
    )]
    SqsQueueUrl {
        /// The URL configured.
        url: String,
    },
    /// An SQS batch size that SQS does not take.
    #[error(
        "queue.sqs.batchSize (QUEUE_SQS_BATCH_SIZE) is {value}; SQS receives 1 to 10 messages at \
         a time"
    )]
    SqsBatchSize {
        /// The size configured.
        value: u32,
    },
    /// The DynamoDB app manager without a table.
    #[error(
        "appManager.dynamodb.table (APP_MANAGER_DYNAMODB_TABLE) is empty; name the table of apps \
         (soketi's default is apps)"
    )]
    DynamoDbTable,
    /// An SQS client option this build does not apply.
    #[error("queue.sqs.clientOptions (QUEUE_SQS_CLIENT_OPTIONS): {message}")]
    SqsClientOptions {
        /// What is wrong.
        message: String,
    },
    /// A `*_REDIS_OPTIONS` JSON that is not an object.
    #[error(
        "{option} must be a JSON object of ioredis options (host, port, username, password, db, \
         keyPrefix, sentinels, name, sentinelPassword, tls); found {value}"
    )]
    RedisOptionsNotObject {
        /// The option and its environment name.
        option: &'static str,
        /// The value found.
        value: serde_json::Value,
    },
    /// A key of a `*_REDIS_OPTIONS` JSON that this server does not apply.
    #[error("{option} has the key {key:?}, which {reason}; remove it")]
    RedisOptionsKey {
        /// The option and its environment name.
        option: &'static str,
        /// The key.
        key: String,
        /// Why it cannot be applied.
        reason: &'static str,
    },
    /// A key of a `*_REDIS_OPTIONS` JSON with a value of the wrong kind.
    #[error("the {key:?} key of {option} must be {expected}; found {value}")]
    RedisOptionsValue {
        /// The option and its environment name.
        option: &'static str,
        /// The key.
        key: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// The value found.
        value: serde_json::Value,
    },
    /// The adapter's publishing and subscribing options name different servers or credentials,
    /// where this server reaches one Redis for both.
    #[error(
        "adapter.redis.redisPubOptions (ADAPTER_REDIS_PUB_OPTIONS) and \
         adapter.redis.redisSubOptions (ADAPTER_REDIS_SUB_OPTIONS) set {key:?} differently; the \
         adapter reaches one Redis for both, so give both the same value"
    )]
    RedisOptionsDisagree {
        /// The key.
        key: &'static str,
    },
    /// The `tls` key of a `*_REDIS_OPTIONS` JSON that cannot be used.
    #[error(
        "the \"tls\" key of {option}: {reason} (accepted: true, or an object with ca, cert, \
         key as PEM text and rejectUnauthorized)"
    )]
    RedisOptionsTls {
        /// The option and its environment name.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The Redis adapter's node timeout does not outlast its heartbeats.
    #[error(
        "adapter.redis.nodeTimeout (ADAPTER_REDIS_NODE_TIMEOUT, {node_timeout} ms) must be longer \
         than adapter.redis.heartbeatInterval (ADAPTER_REDIS_HEARTBEAT_INTERVAL, \
         {heartbeat_interval} ms), which must be positive"
    )]
    RedisAdapterTimers {
        /// Milliseconds.
        node_timeout: u64,
        /// Milliseconds.
        heartbeat_interval: u64,
    },
    /// The cluster rate limiter without a horizontal adapter to share budgets through.
    #[error(
        "rateLimiter.driver (RATE_LIMITER_DRIVER) is cluster, which shares budgets through the \
         adapter; set adapter.driver (ADAPTER_DRIVER) to cluster, redis or nats, or use the \
         local or redis rate limiter"
    )]
    RateLimiterWithoutFleet,
    /// A cluster timer of zero.
    #[error(
        "cluster.helloInterval (CLUSTER_KEEPALIVE_INTERVAL) and cluster.checkInterval \
         (CLUSTER_CHECK_INTERVAL) must be positive"
    )]
    ClusterIntervals,
    /// The cluster's node timeout is shorter than its checks or hellos.
    #[error(
        "cluster.nodeTimeout (CLUSTER_NODE_TIMEOUT, {node_timeout} ms) must be at least \
         cluster.checkInterval (CLUSTER_CHECK_INTERVAL, {check_interval} ms) and longer than \
         cluster.helloInterval (CLUSTER_KEEPALIVE_INTERVAL, {hello_interval} ms)"
    )]
    ClusterNodeTimeout {
        /// Milliseconds.
        node_timeout: u64,
        /// Milliseconds.
        check_interval: u64,
        /// Milliseconds.
        hello_interval: u64,
    },
    /// The cluster's master timeout is shorter than its node timeout.
    #[error(
        "cluster.masterTimeout (CLUSTER_MASTER_TIMEOUT, {master_timeout} ms) must be at least \
         cluster.nodeTimeout (CLUSTER_NODE_TIMEOUT, {node_timeout} ms)"
    )]
    ClusterMasterTimeout {
        /// Milliseconds.
        master_timeout: u64,
        /// Milliseconds.
        node_timeout: u64,
    },
    /// A unicast peer that is not a string.
    #[error(
        "cluster.unicast (CLUSTER_UNICAST_ADDRESSES) holds {item}; use strings such as \
         \"10.0.0.2\" or \"soketi-headless:11002\""
    )]
    ClusterUnicastItem {
        /// The item configured.
        item: serde_json::Value,
    },
    /// A unicast list that is neither an array nor a comma-separated string.
    #[error(
        "cluster.unicast (CLUSTER_UNICAST_ADDRESSES) is {value}; use a JSON array of addresses \
         or a comma-separated list"
    )]
    ClusterUnicast {
        /// The value configured.
        value: serde_json::Value,
    },
    /// An address option that is not an IPv4 address.
    #[error("{option} is {value:?}; use an IPv4 address")]
    NotIpv4 {
        /// The option and its environment name.
        option: &'static str,
        /// The value configured.
        value: String,
    },
    /// A multicast group outside 224.0.0.0/4.
    #[error(
        "cluster.multicast (CLUSTER_MULTICAST_ADDRESS) is {group}, which is not a multicast \
         address (224.0.0.0/4)"
    )]
    NotMulticast {
        /// The group configured.
        group: Ipv4Addr,
    },
    /// The cluster's host is not an IP address.
    #[error(
        "cluster.hostname (CLUSTER_HOST) is {hostname:?}; use this node's IP address, or 0.0.0.0"
    )]
    ClusterHost {
        /// The value configured.
        hostname: String,
    },
    /// The SQL app manager's table is not a plain identifier.
    #[error("{option} is {table:?}; use a table name of letters, digits and _")]
    SqlTable {
        /// The option and its environment name.
        option: &'static str,
        /// The table configured.
        table: String,
    },
}

/// Why a config file does not parse.
#[derive(Debug, thiserror::Error)]
pub enum SyntaxError {
    /// Not JSON, or a TOML or YAML map that has no JSON form.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Not TOML.
    #[error(transparent)]
    Toml(<Toml as Format>::Error),
    /// Not YAML.
    #[error(transparent)]
    Yaml(<Yaml as Format>::Error),
}

/// A value that does not fit its option.
#[derive(Debug)]
pub struct InvalidValue {
    /// The option's path, such as `eventLimits.maxNameLength`.
    pub option: String,
    /// The environment names that set the option, or empty.
    pub environment: String,
    /// Where the value came from: the defaults, a config file or an environment variable.
    pub origin: String,
    /// What is wrong with the value.
    pub kind: figment::error::Kind,
}

impl InvalidValue {
    fn join(values: &[InvalidValue]) -> String {
        values
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            option,
            environment,
            origin,
            kind,
        } = self;
        // An environment variable names itself; a file or the defaults gets the names that
        // would override it.
        if environment.is_empty() || origin.contains("environment variable") {
            write!(f, "invalid value for {option} from {origin}: {kind}")
        } else {
            write!(
                f,
                "invalid value for {option} (environment: {environment}) from {origin}: {kind}"
            )
        }
    }
}
