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

    /// Where `user` finds Redis: a Redis Cluster when its `*_CLUSTER_MODE` is on, else the
    /// master Sentinel names when `database.redis.sentinels` lists sentinels, else the one
    /// server of `database.redis`; over TLS when `database.redis.tls*` or the `tls` key of its
    /// `*_REDIS_OPTIONS` asks for it. Reads the TLS files.
    pub fn redis_endpoint(&self, user: RedisUser) -> Result<RedisEndpoint, ConfigError> {
        let db = &self.database.redis;
        let (cluster_mode, mode_option, options): (
            bool,
            &'static str,
            Vec<(&'static str, &serde_json::Value)>,
        ) = match user {
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
        };
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
            if db.db != 0 {
                return Err(ConfigError::RedisClusterDb {
                    option: mode_option,
                    db: db.db,
                });
            }
            Topology::Cluster(nodes)
        } else {
            let sentinels = match &db.sentinels {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(list) => host_ports("database.redis.sentinels (DB_REDIS_SENTINELS)", list)?,
            };
            if sentinels.is_empty() {
                Topology::Single(HostPort {
                    host: db.host.clone(),
                    port: db.port,
                })
            } else {
                Topology::Sentinel {
                    sentinels,
                    master_name: db.name.clone(),
                    sentinel_password: db.sentinel_password.clone().filter(|p| !p.is_empty()),
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
            db: i64::from(db.db),
            username: db.username.clone().filter(|u| !u.is_empty()),
            password: db.password.clone().filter(|p| !p.is_empty()),
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
