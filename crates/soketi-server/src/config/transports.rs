//! The settings of the transports between nodes (cluster, Redis, NATS) and the URLs of the
//! databases, built from the configuration in one place.

use std::time::Duration;

use soketi_adapter_nats::NatsTransportConfig;
use soketi_adapter_redis::{HostPort, RedisEndpoint, RedisTls, RedisTransportConfig, Topology};

use super::views::kb;
use super::{AdapterDriver, Config, ConfigError, SqlDatabase};

/// A user of Redis, each with its own cluster mode and ioredis-style options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisUser {
    /// The Redis adapter.
    Adapter,
    /// The Redis cache.
    Cache,
    /// The Redis webhook queue.
    Queue,
    /// The Redis rate limiter.
    RateLimiter,
}

impl RedisUser {
    /// What the user is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            RedisUser::Adapter => "adapter",
            RedisUser::Cache => "cache",
            RedisUser::Queue => "webhook queue",
            RedisUser::RateLimiter => "rate limiter",
        }
    }
}

impl Config {
    /// The settings of the Redis transport. Call after [`Config::check_runnable`].
    pub fn redis_transport_config(&self) -> Result<RedisTransportConfig, ConfigError> {
        let redis = &self.adapter.redis;
        Ok(RedisTransportConfig {
            endpoint: self.redis_endpoint(RedisUser::Adapter)?,
            prefix: redis.prefix.clone(),
            heartbeat_interval: Duration::from_millis(redis.heartbeat_interval),
            node_timeout: Duration::from_millis(redis.node_timeout),
            max_buffered: 100_000,
        })
    }

    /// The cluster mode of `user`, with its option, and its ioredis-style `*_REDIS_OPTIONS`.
    fn redis_user_settings(
        &self,
        user: RedisUser,
    ) -> (bool, &'static str, Vec<(&'static str, &serde_json::Value)>) {
        match user {
            RedisUser::Adapter => (
                self.adapter.redis.cluster_mode,
                "adapter.redis.clusterMode (ADAPTER_REDIS_CLUSTER_MODE)",
                vec![
                    (
                        "adapter.redis.redisPubOptions (ADAPTER_REDIS_PUB_OPTIONS)",
                        &self.adapter.redis.redis_pub_options,
                    ),
                    (
                        "adapter.redis.redisSubOptions (ADAPTER_REDIS_SUB_OPTIONS)",
                        &self.adapter.redis.redis_sub_options,
                    ),
                ],
            ),
            RedisUser::Cache => (
                self.cache.redis.cluster_mode,
                "cache.redis.clusterMode (CACHE_REDIS_CLUSTER_MODE)",
                vec![(
                    "cache.redis.redisOptions (CACHE_REDIS_OPTIONS)",
                    &self.cache.redis.redis_options,
                )],
            ),
            RedisUser::Queue => (
                self.queue.redis.cluster_mode,
                "queue.redis.clusterMode (QUEUE_REDIS_CLUSTER_MODE)",
                vec![(
                    "queue.redis.redisOptions (QUEUE_REDIS_OPTIONS)",
                    &self.queue.redis.redis_options,
                )],
            ),
            RedisUser::RateLimiter => (
                self.rate_limiter.redis.cluster_mode,
                "rateLimiter.redis.clusterMode (RATE_LIMITER_REDIS_CLUSTER_MODE)",
                vec![(
                    "rateLimiter.redis.redisOptions (RATE_LIMITER_REDIS_OPTIONS)",
                    &self.rate_limiter.redis.redis_options,
                )],
            ),
        }
    }

    /// The keys of `user`'s `*_REDIS_OPTIONS` that override `database.redis`, as ioredis
    /// merged them over soketi's `database.redis`. A key this server cannot apply, or one that
    /// makes no sense for the user's topology, is an error naming it.
    fn redis_client_options(&self, user: RedisUser) -> Result<ClientOptions, ConfigError> {
        const ADAPTER_CHANNELS: &str = "never named the adapter's channels \
            (adapter.redis.prefix, ADAPTER_REDIS_PREFIX, does)";
        const IN_CLUSTER: &str = "has no use in cluster mode (the nodes are \
            database.redis.clusterNodes, DB_REDIS_CLUSTER_NODES)";
        const WITH_SENTINELS: &str = "has no use when sentinels name the master \
            (database.redis.sentinels, DB_REDIS_SENTINELS, or the sentinels key)";
        let (cluster_mode, _, options) = self.redis_user_settings(user);
        let parsed = options
            .into_iter()
            .map(|(option, value)| Ok((option, ClientOptions::parse(option, value)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let listed = |list: &serde_json::Value| {
            !(list.is_null() || list == "" || list.as_array().is_some_and(|l| l.is_empty()))
        };
        let sentinel_mode = !cluster_mode
            && (parsed.iter().any(|(_, p)| p.sentinels.is_some())
                || self.database.redis.sentinels.as_ref().is_some_and(listed));
        for (option, p) in &parsed {
            let refusals = [
                (
                    "keyPrefix",
                    user == RedisUser::Adapter && p.key_prefix.is_some(),
                    ADAPTER_CHANNELS,
                ),
                ("host", cluster_mode && p.host.is_some(), IN_CLUSTER),
                ("port", cluster_mode && p.port.is_some(), IN_CLUSTER),
                (
                    "sentinels",
                    cluster_mode && p.sentinels.is_some(),
                    IN_CLUSTER,
                ),
                ("name", cluster_mode && p.name.is_some(), IN_CLUSTER),
                (
                    "sentinelPassword",
                    cluster_mode && p.sentinel_password.is_some(),
                    IN_CLUSTER,
                ),
                ("host", sentinel_mode && p.host.is_some(), WITH_SENTINELS),
                ("port", sentinel_mode && p.port.is_some(), WITH_SENTINELS),
            ];
            if let Some((key, _, reason)) = refusals.into_iter().find(|r| r.1) {
                return Err(ConfigError::RedisOptionsKey {
                    option,
                    key: key.to_owned(),
                    reason,
                });
            }
        }
        let mut merged = ClientOptions::default();
        for (_, p) in parsed {
            merged.merge(p)?;
        }
        Ok(merged)
    }

    /// Checks the `*_REDIS_OPTIONS` of every Redis user, those not in use too, so that a key
    /// this server does not apply stops start-up whatever the drivers.
    pub(super) fn check_redis_options(&self) -> Result<(), ConfigError> {
        for user in [
            RedisUser::Adapter,
            RedisUser::Cache,
            RedisUser::Queue,
            RedisUser::RateLimiter,
        ] {
            self.redis_client_options(user)?;
            for (option, value) in self.redis_user_settings(user).2 {
                options_tls(option, value)?;
            }
        }
        Ok(())
    }

    /// The key prefix of `user`: the `keyPrefix` of its `*_REDIS_OPTIONS`, else
    /// `database.redis.keyPrefix`.
    pub fn redis_key_prefix(&self, user: RedisUser) -> Result<String, ConfigError> {
        Ok(self
            .redis_client_options(user)?
            .key_prefix
            .unwrap_or_else(|| self.database.redis.key_prefix.clone()))
    }

    /// Where `user` finds Redis: a Redis Cluster when its `*_CLUSTER_MODE` is on, else the
    /// master Sentinel names when `database.redis.sentinels` lists sentinels, else the one
    /// server of `database.redis`; over TLS when `database.redis.tls*` or the `tls` key of its
    /// `*_REDIS_OPTIONS` asks for it. The other keys of `*_REDIS_OPTIONS` that ioredis shares
    /// with `database.redis` (host, port, username, password, db, sentinels, name,
    /// sentinelPassword) override it for this user. Reads the TLS files.
    pub fn redis_endpoint(&self, user: RedisUser) -> Result<RedisEndpoint, ConfigError> {
        let db = &self.database.redis;
        let (cluster_mode, mode_option, options) = self.redis_user_settings(user);
        let client = self.redis_client_options(user)?;
        let db_number = client.db.unwrap_or(db.db);
        let topology = if cluster_mode {
            let nodes = host_ports(
                "database.redis.clusterNodes (DB_REDIS_CLUSTER_NODES)",
                &serde_json::Value::Array(db.cluster_nodes.clone()),
            )?;
            if nodes.is_empty() {
                return Err(ConfigError::RedisClusterNodesMissing {
                    option: mode_option,
                });
            }
            if db_number != 0 {
                return Err(ConfigError::RedisClusterDb {
                    option: mode_option,
                    db: db_number,
                });
            }
            Topology::Cluster(nodes)
        } else {
            let sentinels = match (&client.sentinels, &db.sentinels) {
                (Some((option, list)), _) => host_ports(option, list)?,
                (None, None | Some(serde_json::Value::Null)) => Vec::new(),
                (None, Some(list)) => {
                    host_ports("database.redis.sentinels (DB_REDIS_SENTINELS)", list)?
                }
            };
            if sentinels.is_empty() {
                Topology::Single(HostPort {
                    host: client.host.clone().unwrap_or_else(|| db.host.clone()),
                    port: client.port.unwrap_or(db.port),
                })
            } else {
                Topology::Sentinel {
                    sentinels,
                    master_name: client.name.clone().unwrap_or_else(|| db.name.clone()),
                    sentinel_password: client
                        .sentinel_password
                        .clone()
                        .or_else(|| db.sentinel_password.clone())
                        .filter(|p| !p.is_empty()),
                }
            }
        };
        let mut tls = self.redis_tls()?;
        for (option, value) in options {
            if let Some(from_options) = options_tls(option, value)? {
                let base = tls.get_or_insert_with(RedisTls::default);
                base.insecure |= from_options.insecure;
                if from_options.ca.is_some() {
                    base.ca = from_options.ca;
                }
                if from_options.client_identity.is_some() {
                    base.client_identity = from_options.client_identity;
                }
            }
        }
        Ok(RedisEndpoint {
            topology,
            db: i64::from(db_number),
            username: client
                .username
                .or_else(|| db.username.clone())
                .filter(|u| !u.is_empty()),
            password: client
                .password
                .or_else(|| db.password.clone())
                .filter(|p| !p.is_empty()),
            tls,
        })
    }

    /// The TLS of `database.redis`: on with `tls`, or when a CA, a client certificate or
    /// `tlsInsecure` is set.
    fn redis_tls(&self) -> Result<Option<RedisTls>, ConfigError> {
        let db = &self.database.redis;
        let read = |option: &'static str, path: &str| {
            std::fs::read(path).map_err(|source| ConfigError::RedisTlsFile {
                option,
                path: path.to_owned(),
                source,
            })
        };
        let on = db.tls
            || db.tls_insecure
            || !db.tls_ca.is_empty()
            || !db.tls_cert.is_empty()
            || !db.tls_key.is_empty();
        if !on {
            return Ok(None);
        }
        let ca = match db.tls_ca.as_str() {
            "" => None,
            path => Some(read("database.redis.tlsCa (DB_REDIS_TLS_CA)", path)?),
        };
        let client_identity = match (db.tls_cert.as_str(), db.tls_key.as_str()) {
            ("", "") => None,
            ("", _) | (_, "") => return Err(ConfigError::RedisTlsIdentity),
            (cert, key) => Some((
                read("database.redis.tlsCert (DB_REDIS_TLS_CERT)", cert)?,
                read("database.redis.tlsKey (DB_REDIS_TLS_KEY)", key)?,
            )),
        };
        Ok(Some(RedisTls {
            ca,
            client_identity,
            insecure: db.tls_insecure,
        }))
    }

    /// The settings of the NATS transport.
    pub fn nats_transport_config(&self) -> NatsTransportConfig {
        let nats = &self.adapter.nats;
        NatsTransportConfig {
            servers: nats.servers.clone(),
            user_password: nats.user.clone().zip(nats.pass.clone()),
            token: nats.token.clone(),
            prefix: nats.prefix.clone(),
            connect_timeout: Duration::from_millis(nats.timeout),
            heartbeat_interval: Duration::from_millis(nats.heartbeat_interval.max(1)),
            node_timeout: Duration::from_millis(nats.node_timeout),
        }
    }

    /// How long a node waits for the other nodes' answers with the configured adapter; `None`
    /// for the local adapter, which asks no one.
    pub fn requests_timeout(&self) -> Option<Duration> {
        let millis = match self.adapter.driver {
            AdapterDriver::Redis => self.adapter.redis.requests_timeout,
            AdapterDriver::Nats => self.adapter.nats.requests_timeout,
            AdapterDriver::Cluster => self.adapter.cluster.requests_timeout,
            AdapterDriver::Local => return None,
        };
        Some(Duration::from_millis(millis))
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
                    other => Err(ConfigError::ClusterUnicastItem {
                        item: other.clone(),
                    }),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ConfigError::ClusterUnicast {
                    value: other.clone(),
                });
            }
        };
        if !unicast.is_empty() {
            return Ok(Mode::Unicast(unicast));
        }
        let ipv4 = |option: &'static str, value: &str| {
            value
                .parse::<std::net::Ipv4Addr>()
                .map_err(|_| ConfigError::NotIpv4 {
                    option,
                    value: value.to_owned(),
                })
        };
        match c.multicast.as_deref().filter(|m| !m.is_empty()) {
            Some(group) => {
                let group = ipv4("cluster.multicast (CLUSTER_MULTICAST_ADDRESS)", group)?;
                if !group.is_multicast() {
                    return Err(ConfigError::NotMulticast { group });
                }
                Ok(Mode::Multicast(group))
            }
            None => Ok(Mode::Broadcast(ipv4(
                "cluster.broadcast (CLUSTER_BROADCAST_ADDRESS)",
                &c.broadcast,
            )?)),
        }
    }

    pub(super) fn cluster_host(&self) -> Result<std::net::IpAddr, ConfigError> {
        self.cluster
            .hostname
            .parse()
            .map_err(|_| ConfigError::ClusterHost {
                hostname: self.cluster.hostname.clone(),
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
            // A peer that stops reading costs at most this much memory before it is dropped;
            // at LAN speeds it is well over a second of traffic, so a busy peer is not.
            max_queued_bytes: 64 * 1024 * 1024,
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

/// A list of `{host, port}` objects (ioredis's form), `"host:port"` strings or bare ports (on
/// 127.0.0.1).
fn host_ports(
    option: &'static str,
    value: &serde_json::Value,
) -> Result<Vec<HostPort>, ConfigError> {
    use serde_json::Value;
    let bad = || ConfigError::RedisNodes {
        option,
        value: value.clone(),
    };
    let items = match value {
        Value::Array(items) => items,
        Value::String(s) if s.is_empty() => return Ok(Vec::new()),
        _ => return Err(bad()),
    };
    items
        .iter()
        .map(|item| match item {
            Value::Object(map) => {
                let host = match map.get("host") {
                    None | Some(Value::Null) => "127.0.0.1".to_owned(),
                    Some(Value::String(host)) if !host.is_empty() => host.clone(),
                    Some(_) => return Err(bad()),
                };
                let port = match map.get("port") {
                    None | Some(Value::Null) => 6379,
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .ok_or_else(bad)?,
                    Some(Value::String(p)) => p.parse().map_err(|_| bad())?,
                    Some(_) => return Err(bad()),
                };
                Ok(HostPort { host, port })
            }
            Value::String(s) => {
                let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Ok(HostPort {
                    host: host.to_owned(),
                    port: port.parse().map_err(|_| bad())?,
                })
            }
            Value::Number(n) => Ok(HostPort {
                host: "127.0.0.1".to_owned(),
                port: n
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(bad)?,
            }),
            _ => Err(bad()),
        })
        .collect()
}

/// The keys of an ioredis-style `*_REDIS_OPTIONS` object that override `database.redis`.
#[derive(Default, PartialEq)]
struct ClientOptions {
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
    db: Option<u32>,
    key_prefix: Option<String>,
    /// The sentinels, with the option they came from.
    sentinels: Option<(&'static str, serde_json::Value)>,
    name: Option<String>,
    sentinel_password: Option<String>,
}

impl ClientOptions {
    /// Reads one `*_REDIS_OPTIONS` value: an object (or nothing: null, an empty string). Its
    /// `tls` key is read by [`options_tls`]; a key not listed here stops start-up.
    fn parse(option: &'static str, value: &serde_json::Value) -> Result<Self, ConfigError> {
        use serde_json::Value;
        let map = match value {
            Value::Null => return Ok(Self::default()),
            Value::String(s) if s.is_empty() => return Ok(Self::default()),
            Value::Object(map) => map,
            other => {
                return Err(ConfigError::RedisOptionsNotObject {
                    option,
                    value: other.clone(),
                });
            }
        };
        let bad = |key: &'static str, expected: &'static str, value: &Value| {
            ConfigError::RedisOptionsValue {
                option,
                key,
                expected,
                value: value.clone(),
            }
        };
        let text = |key: &'static str, value: &Value| match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            other => Err(bad(key, "a string", other)),
        };
        let number = |key: &'static str, value: &Value| -> Result<Option<u64>, ConfigError> {
            match value {
                Value::Null => Ok(None),
                Value::Number(n) => n
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| bad(key, "a whole number", value)),
                Value::String(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| bad(key, "a whole number", value)),
                other => Err(bad(key, "a whole number", other)),
            }
        };
        let mut out = Self::default();
        for (key, value) in map {
            match key.as_str() {
                "tls" => {}
                "host" => out.host = text("host", value)?.filter(|h| !h.is_empty()),
                "port" => {
                    out.port = number("port", value)?
                        .map(|p| u16::try_from(p).map_err(|_| bad("port", "a port", value)))
                        .transpose()?;
                }
                "username" => out.username = text("username", value)?,
                "password" => out.password = text("password", value)?,
                "db" => {
                    out.db = number("db", value)?
                        .map(|d| {
                            u32::try_from(d).map_err(|_| bad("db", "a database number", value))
                        })
                        .transpose()?;
                }
                "keyPrefix" => out.key_prefix = text("keyPrefix", value)?,
                "sentinels" => {
                    out.sentinels = (!value.is_null()).then(|| (option, value.clone()));
                }
                "name" => out.name = text("name", value)?,
                "sentinelPassword" => out.sentinel_password = text("sentinelPassword", value)?,
                _ => {
                    return Err(ConfigError::RedisOptionsKey {
                        option,
                        key: key.clone(),
                        reason: "this server does not apply to its Redis clients (it applies \
                                 host, port, username, password, db, keyPrefix, sentinels, \
                                 name, sentinelPassword and tls)",
                    });
                }
            }
        }
        Ok(out)
    }

    /// Takes the keys of `other`, which must agree with those already set: the adapter's
    /// publishing and subscribing options reach one Redis here.
    fn merge(&mut self, other: Self) -> Result<(), ConfigError> {
        fn take<T: PartialEq>(
            key: &'static str,
            mine: &mut Option<T>,
            theirs: Option<T>,
        ) -> Result<(), ConfigError> {
            match (mine.as_ref(), theirs) {
                (_, None) => Ok(()),
                (Some(a), Some(b)) if *a != b => Err(ConfigError::RedisOptionsDisagree { key }),
                (_, b) => {
                    *mine = b;
                    Ok(())
                }
            }
        }
        take("host", &mut self.host, other.host)?;
        take("port", &mut self.port, other.port)?;
        take("username", &mut self.username, other.username)?;
        take("password", &mut self.password, other.password)?;
        take("db", &mut self.db, other.db)?;
        take("keyPrefix", &mut self.key_prefix, other.key_prefix)?;
        // Sentinel lists from the two options agree when their values do.
        match (&self.sentinels, other.sentinels) {
            (_, None) => {}
            (Some((_, a)), Some((_, b))) if *a != b => {
                return Err(ConfigError::RedisOptionsDisagree { key: "sentinels" });
            }
            (_, b) => self.sentinels = b,
        }
        take("name", &mut self.name, other.name)?;
        take(
            "sentinelPassword",
            &mut self.sentinel_password,
            other.sentinel_password,
        )?;
        Ok(())
    }
}

/// The `tls` key of ioredis-style options, as soketi passes them to ioredis: `true` or an
/// object of Node's `tls.connect` options, of which `ca`, `cert` and `key` (PEM text, or a
/// list of PEM texts) and `rejectUnauthorized` are read. `None` without a `tls` key.
fn options_tls(
    option: &'static str,
    options: &serde_json::Value,
) -> Result<Option<RedisTls>, ConfigError> {
    use serde_json::Value;
    let Some(tls) = options.get("tls") else {
        return Ok(None);
    };
    let fail = |reason: String| ConfigError::RedisOptionsTls { option, reason };
    let map = match tls {
        Value::Null | Value::Bool(false) => return Ok(None),
        Value::Bool(true) => return Ok(Some(RedisTls::default())),
        Value::Object(map) => map,
        other => return Err(fail(format!("found {other}"))),
    };
    let pem = |key: &str| -> Result<Option<Vec<u8>>, ConfigError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_bytes().to_vec())),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(format!("{}\n", text.trim_end())),
                    other => Err(fail(format!("{key} holds {other}, not PEM text"))),
                })
                .collect::<Result<String, _>>()
                .map(|all| Some(all.into_bytes())),
            Some(other) => Err(fail(format!("{key} is {other}, not PEM text"))),
        }
    };
    for key in map.keys() {
        if !["ca", "cert", "key", "rejectUnauthorized"].contains(&key.as_str()) {
            return Err(fail(format!("{key} is not supported here")));
        }
    }
    let insecure = match map.get("rejectUnauthorized") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => false,
        Some(Value::Bool(false)) => true,
        Some(other) => return Err(fail(format!("rejectUnauthorized is {other}"))),
    };
    let client_identity = match (pem("cert")?, pem("key")?) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => return Err(fail("cert and key go together".into())),
    };
    Ok(Some(RedisTls {
        ca: pem("ca")?,
        client_identity,
        insecure,
    }))
}
