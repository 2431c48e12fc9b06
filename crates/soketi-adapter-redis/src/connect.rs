//! Where Redis is and how to reach it: one server, a master found through Sentinel, or a
//! Redis Cluster, each optionally over TLS. Every Redis user of this crate (the transport, the
//! cache, the queue, the rate limiter) connects through a [`Connector`] made from a
//! [`RedisEndpoint`], so that all of them speak to the same topologies the same way.
//!
//! All three topologies are redis-rs's own: a plain [`redis::Client`], its
//! [`redis::sentinel::SentinelClient`] (asked for the current master on every new connection),
//! and its [`redis::cluster::ClusterClient`] (which follows slot moves and failovers itself).

use std::sync::Arc;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    ClientTlsConfig, Cmd, ConnectionAddr, Pipeline, RedisFuture, RedisResult, TlsCertificates,
    TlsMode, Value,
};
use tokio::sync::Mutex;

use crate::RedisTransportError;

/// A host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// How the Redis servers are laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a proxy in front of several).
    Single(HostPort),
    /// A master that Sentinel names; every new connection asks the sentinels where it is.
    Sentinel {
        /// The sentinels, tried in order.
        sentinels: Vec<HostPort>,
        /// The name the sentinels know the master by (`mymaster`).
        master_name: String,
        /// The sentinels' own password, if they need one.
        sentinel_password: Option<String>,
    },
    /// A Redis Cluster, found from any of these nodes.
    Cluster(Vec<HostPort>),
}

/// TLS to Redis.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM certificates to trust instead of the built-in roots (a private CA).
    pub ca: Option<Vec<u8>>,
    /// A PEM client certificate chain and its PEM private key.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept any certificate. Only ever set from an explicit setting; it is logged loudly.
    pub insecure: bool,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.as_ref().map(|_| "<pem>"))
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|_| "<pem>"),
            )
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// Where Redis is, and the credentials and transport security to reach it with.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    /// The servers.
    pub topology: Topology,
    /// Database number (0 with a Cluster, which has no other).
    pub db: i64,
    /// ACL user.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// TLS, when Redis is reached over TLS.
    pub tls: Option<RedisTls>,
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("topology", &self.topology)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl RedisEndpoint {
    /// One plain-text server at `url` (`redis://[user:password@]host:port/db`), as the tests
    /// and earlier callers name it.
    pub fn from_url(url: &str) -> Result<Self, RedisTransportError> {
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|source| {
            RedisTransportError::Url {
                url: crate::redact(url),
                source,
            }
        })?;
        let (host, port, tls) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port, None),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => (
                host.clone(),
                *port,
                Some(RedisTls {
                    insecure: *insecure,
                    ..RedisTls::default()
                }),
            ),
            _ => {
                return Err(RedisTransportError::Url {
                    url: crate::redact(url),
                    source: redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "only TCP addresses are supported",
                    )),
                });
            }
        };
        let redis = info.redis_settings();
        Ok(Self {
            topology: Topology::Single(HostPort { host, port }),
            db: redis.db(),
            username: redis.username().map(str::to_owned),
            password: redis.password().map(str::to_owned),
            tls,
        })
    }

    /// A description for messages and logs, without secrets.
    pub fn describe(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let list = |nodes: &[HostPort]| {
            nodes
                .iter()
                .map(|n| format!("{}:{}", n.host, n.port))
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.topology {
            Topology::Single(n) => format!("{scheme}://{}:{}/{}", n.host, n.port, self.db),
            Topology::Sentinel {
                sentinels,
                master_name,
                ..
            } => format!(
                "the master {master_name:?} of Sentinel {} ({scheme})",
                list(sentinels)
            ),
            Topology::Cluster(nodes) => format!("Redis Cluster {} ({scheme})", list(nodes)),
        }
    }

    /// Whether this is a Redis Cluster, where keys used together need one hash slot and the
    /// adapter uses sharded pub/sub.
    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster(_))
    }

    fn url(&self, node: &HostPort) -> String {
        let encode = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        let auth = match (&self.username, &self.password) {
            (Some(user), Some(password)) => format!("{}:{}@", encode(user), encode(password)),
            (None, Some(password)) => format!(":{}@", encode(password)),
            (Some(user), None) => format!("{}@", encode(user)),
            (None, None) => String::new(),
        };
        let (scheme, fragment) = match &self.tls {
            None => ("redis", ""),
            Some(tls) if tls.insecure => ("rediss", "#insecure"),
            Some(_) => ("rediss", ""),
        };
        let host = if node.host.contains(':') && !node.host.starts_with('[') {
            format!("[{}]", node.host)
        } else {
            node.host.clone()
        };
        format!(
            "{scheme}://{auth}{host}:{}/{}{fragment}",
            node.port, self.db
        )
    }

    fn certificates(&self) -> Option<TlsCertificates> {
        let tls = self.tls.as_ref()?;
        if tls.ca.is_none() && tls.client_identity.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: tls
                .client_identity
                .as_ref()
                .map(|(cert, key)| ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: tls.ca.clone(),
        })
    }

    fn client(&self, node: &HostPort) -> RedisResult<redis::Client> {
        let url = self.url(node);
        match self.certificates() {
            Some(certs) => redis::Client::build_with_tls(url, certs),
            None => redis::Client::open(url),
        }
    }

    /// The connector of this endpoint; fails only on settings redis-rs refuses (a PEM that
    /// does not parse, an empty list of nodes).
    pub(crate) fn connector(&self) -> Result<Arc<Connector>, RedisTransportError> {
        let invalid = |source| RedisTransportError::Url {
            url: self.describe(),
            source,
        };
        if self.tls.as_ref().is_some_and(|tls| tls.insecure) {
            tracing::warn!(
                redis = %self.describe(),
                "TLS CERTIFICATE VERIFICATION IS OFF for Redis (DB_REDIS_TLS_INSECURE or \
                 rejectUnauthorized: false): anyone on the path can read and change this \
                 server's Redis traffic"
            );
        }
        let kind = match &self.topology {
            Topology::Single(node) => ConnectorKind::Single(self.client(node).map_err(invalid)?),
            Topology::Sentinel {
                sentinels,
                master_name,
                sentinel_password,
            } => {
                let addrs = sentinels.iter().map(|n| match &self.tls {
                    None => ConnectionAddr::Tcp(n.host.clone(), n.port),
                    Some(tls) => ConnectionAddr::TcpTls {
                        host: n.host.clone(),
                        port: n.port,
                        insecure: tls.insecure,
                        tls_params: None,
                    },
                });
                let mut builder =
                    SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)
                        .map_err(invalid)?
                        .set_client_to_redis_db(self.db);
                if let Some(user) = &self.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &self.password {
                    builder = builder.set_client_to_redis_password(password);
                }
                if let Some(password) = sentinel_password {
                    builder = builder.set_client_to_sentinel_password(password);
                }
                if let Some(tls) = &self.tls {
                    let mode = if tls.insecure {
                        TlsMode::Insecure
                    } else {
                        TlsMode::Secure
                    };
                    builder = builder
                        .set_client_to_redis_tls_mode(mode)
                        .set_client_to_sentinel_tls_mode(mode);
                    if let Some(certs) = self.certificates() {
                        builder = builder
                            .set_client_to_redis_certificates(certs.clone())
                            .set_client_to_sentinel_certificates(certs);
                    }
                }
                ConnectorKind::Sentinel(Mutex::new(builder.build().map_err(invalid)?))
            }
            Topology::Cluster(nodes) => {
                let urls: Vec<String> = nodes.iter().map(|n| self.url(n)).collect();
                ConnectorKind::Cluster(self.cluster_builder(urls, None).build().map_err(invalid)?)
            }
        };
        Ok(Arc::new(Connector {
            endpoint: self.clone(),
            kind,
        }))
    }

    fn cluster_builder(
        &self,
        urls: Vec<String>,
        response_timeout: Option<std::time::Duration>,
    ) -> ClusterClientBuilder {
        let mut builder = ClusterClientBuilder::new(urls);
        if let Some(tls) = &self.tls {
            builder = builder.tls(if tls.insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
            if let Some(certs) = self.certificates() {
                builder = builder.certs(certs);
            }
        }
        if let Some(timeout) = response_timeout {
            builder = builder.response_timeout(timeout);
        }
        builder
    }
}

enum ConnectorKind {
    Single(redis::Client),
    Sentinel(Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

/// Makes connections to a [`RedisEndpoint`].
pub(crate) struct Connector {
    endpoint: RedisEndpoint,
    kind: ConnectorKind,
}

impl Connector {
    /// The endpoint.
    pub(crate) fn endpoint(&self) -> &RedisEndpoint {
        &self.endpoint
    }

    /// A client of the one server, or of the master that the sentinels name now. `None` for a
    /// Cluster, which has no one server.
    pub(crate) async fn server(&self) -> Option<RedisResult<redis::Client>> {
        match &self.kind {
            ConnectorKind::Single(client) => Some(Ok(client.clone())),
            ConnectorKind::Sentinel(sentinel) => {
                Some(sentinel.lock().await.async_get_client().await)
            }
            ConnectorKind::Cluster(_) => None,
        }
    }

    /// A new multiplexed connection: to the server, to the master the sentinels name now, or to
    /// the Cluster (one connection per node, routed by key).
    pub(crate) async fn connect(
        &self,
        response_timeout: Option<std::time::Duration>,
    ) -> RedisResult<Conn> {
        match &self.kind {
            ConnectorKind::Cluster(client) => {
                let client = match response_timeout {
                    None => client.clone(),
                    Some(timeout) => self.cluster_client(None, Some(timeout))?,
                };
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
            _ => {
                let client = self
                    .server()
                    .await
                    .unwrap_or_else(|| Err(unreachable_cluster()))?;
                let mut config = redis::AsyncConnectionConfig::new();
                if let Some(timeout) = response_timeout {
                    config = config.set_response_timeout(Some(timeout));
                }
                Ok(Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
        }
    }

    /// A connection that re-makes itself after Redis goes away: redis-rs's
    /// [`ConnectionManager`] for one server, a [`SentinelConnection`] that asks the sentinels
    /// again after an error, and the Cluster connection, which heals itself.
    pub(crate) async fn managed(
        self: &Arc<Self>,
        response_timeout: Option<std::time::Duration>,
    ) -> RedisResult<Conn> {
        match &self.kind {
            ConnectorKind::Single(client) => {
                let mut config = ConnectionManagerConfig::new();
                if let Some(timeout) = response_timeout {
                    config = config.set_response_timeout(Some(timeout));
                }
                Ok(Conn::Managed(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            ConnectorKind::Sentinel(_) => {
                let first = match self.connect(response_timeout).await? {
                    Conn::Single(conn) => conn,
                    _ => unreachable!("a Sentinel connector makes single-server connections"),
                };
                Ok(Conn::Sentinel(SentinelConnection {
                    connector: self.clone(),
                    response_timeout,
                    current: Arc::new(Mutex::new(Some(first))),
                    db: self.endpoint.db,
                }))
            }
            ConnectorKind::Cluster(_) => self.connect(response_timeout).await,
        }
    }

    /// A Cluster client with a push sender (for sharded pub/sub over RESP3) or a response
    /// timeout of its own.
    pub(crate) fn cluster_client(
        &self,
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
        response_timeout: Option<std::time::Duration>,
    ) -> RedisResult<ClusterClient> {
        let Topology::Cluster(nodes) = &self.endpoint.topology else {
            return Err(unreachable_cluster());
        };
        let urls = nodes.iter().map(|n| self.endpoint.url(n)).collect();
        let mut builder = self.endpoint.cluster_builder(urls, response_timeout);
        if let Some(push) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder.build()
    }
}

fn unreachable_cluster() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "not a Redis Cluster endpoint",
    ))
}

/// A connection to the master that Sentinel names: after an error that says the connection is
/// gone or that the server is no longer the master (`READONLY` after a failover), the next
/// command asks the sentinels again and connects to the master they name then.
#[derive(Clone)]
pub(crate) struct SentinelConnection {
    connector: Arc<Connector>,
    response_timeout: Option<std::time::Duration>,
    current: Arc<Mutex<Option<MultiplexedConnection>>>,
    db: i64,
}

impl SentinelConnection {
    async fn get(&self) -> RedisResult<MultiplexedConnection> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref() {
            return Ok(conn.clone());
        }
        match self.connector.connect(self.response_timeout).await? {
            Conn::Single(conn) => Ok(current.insert(conn).clone()),
            _ => Err(unreachable_cluster()),
        }
    }

    async fn failed(&self, e: &redis::RedisError) {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown
                )
            )
        {
            *self.current.lock().await = None;
        }
    }
}

/// A connection of any topology, usable wherever redis-rs takes an async connection.
#[derive(Clone)]
pub(crate) enum Conn {
    /// A multiplexed connection to one server.
    Single(MultiplexedConnection),
    /// A self-healing connection to one server.
    Managed(ConnectionManager),
    /// The master Sentinel names, asked again after errors.
    Sentinel(SentinelConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => Box::pin(async move {
                let mut conn = s.get().await?;
                let result = conn.req_packed_command(cmd).await;
                if let Err(e) = &result {
                    s.failed(e).await;
                }
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(s) => Box::pin(async move {
                let mut conn = s.get().await?;
                let result = conn.req_packed_commands(pipeline, offset, count).await;
                if let Err(e) = &result {
                    s.failed(e).await;
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Managed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(s) => s.db,
        }
    }
}

/// Whether `e` is a failed TLS handshake: a certificate that is not trusted, or a server that
/// does not speak TLS. Such an error never goes away by retrying, and the connection is never
/// made in plain text instead.
pub fn is_tls_failure(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut chain = text.clone();
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let chain = chain.to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "received corrupt message",
        "invalidcontenttype",
        "handshake",
        "peer is incompatible",
        "bad_certificate",
        "alert",
    ]
    .iter()
    .any(|needle| chain.contains(needle))
}
