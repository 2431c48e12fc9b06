//! The settings of the transports between nodes (cluster, Redis, NATS) and the URLs of the
//! databases, built from the configuration in one place.

use std::time::Duration;

use soketi_adapter_nats::NatsTransportConfig;
use soketi_adapter_redis::RedisTransportConfig;

use super::views::kb;
use super::{AdapterDriver, Config, ConfigError, SqlDatabase};

impl Config {
    /// The settings of the Redis transport.
    pub fn redis_transport_config(&self) -> RedisTransportConfig {
        let redis = &self.adapter.redis;
        RedisTransportConfig {
            url: self.redis_url(),
            prefix: redis.prefix.clone(),
            heartbeat_interval: Duration::from_millis(redis.heartbeat_interval),
            node_timeout: Duration::from_millis(redis.node_timeout),
            max_buffered: 100_000,
        }
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
