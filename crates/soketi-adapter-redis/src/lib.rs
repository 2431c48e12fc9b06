//! Everything soketi-server keeps in Redis: the [`Transport`] of a fleet that meets in one
//! Redis ([`RedisTransport`], for [`soketi_adapter_core::HorizontalAdapter`]), and the shared
//! [`RedisCache`], the durable [`RedisQueue`] and the fleet-wide [`RedisRateLimiter`]. Each is
//! picked on its own by the configuration; none needs the Redis transport.
//!
//! # The transport
//!
//! Every node subscribes to the fleet's channel (`<prefix>#soketi-rs`) and to its own
//! (`<prefix>#soketi-rs#<node id>`) for answers. Each frame carries its kind and the
//! sending node, so that a node ignores its own messages and knows who is alive without
//! decoding envelopes. Nodes send a heartbeat every `heartbeat_interval`; a node silent for
//! `node_timeout` is gone. While this node's own subscription is down, nobody is declared dead:
//! it is this node that cannot hear.
//!
//! Outgoing frames go through one writer task that pipelines them to Redis and, when Redis is
//! away, keeps them (up to a bound) and retries with backoff, so that a Redis restart loses
//! nothing this node sends. A batch that Redis took and did not answer (a stalled Redis) is not
//! sent again: Redis runs it when it resumes, and a second copy would be delivered twice.
//!
//! # Beside soketi
//!
//! The channels are not soketi's: soketi 1.x pattern-subscribes to `<prefix>#redis-adapter*` (or
//! `redis-adapter*` without a prefix) and `JSON.parse`s every message there unguarded, so this
//! node's binary frames on those names would crash a soketi node sharing the Redis and the
//! prefix during a migration. This node also listens, on one server or Sentinel, to soketi's
//! broadcasts and responses ([`SoketiChannels`]): the first JSON frame of soketi there is logged
//! once, with what to do, and those channels are then left. Frames of an earlier build of this
//! server, whose fleet channel was `<prefix>#redis-adapter` (soketi's name when a prefix is set),
//! are logged once too. On a Redis Cluster the two never meet (soketi uses
//! classic pub/sub, this node sharded pub/sub), and nothing is watched.
//!
//! # The services
//!
//! [`RedisCache`] is the shared [`soketi_adapter_core::Cache`] of cache channels, [`RedisQueue`]
//! the [`soketi_adapter_core::Queue`] that keeps jobs (webhooks) through restarts, and
//! [`RedisRateLimiter`] a [`soketi_adapter_core::RateLimiter`] with one budget per app in Redis.
//!
//! # Topologies
//!
//! Each of them reaches Redis through a [`RedisEndpoint`]: one server, the master that Sentinel
//! names, or a Redis Cluster, each in plain text or over TLS, all through redis-rs's own
//! clients. On a Cluster the transport uses sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`): a
//! message goes to the shard that owns its channel instead of over the cluster bus to every
//! node, and redis-rs subscribes again when a slot moves or a shard fails over.
//!
//! This crate knows nothing of the Pusher protocol; it carries bytes.

mod cache;
mod connect;
mod lazy;
mod queue;
mod ratelimit;
#[cfg(test)]
mod tests;

pub use cache::RedisCache;
pub use connect::{HostPort, RedisEndpoint, RedisTls, Topology, is_tls_failure};
pub use queue::RedisQueue;
pub use ratelimit::RedisRateLimiter;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use soketi_adapter_core::{AdapterError, Transport, TransportEvent};
use tokio::sync::{mpsc, oneshot};

use soketi_adapter_core::membership::{Frame, Kind, Membership};

/// The fleet's channel for `prefix`: `<prefix>#soketi-rs`. Not soketi's name, which soketi
/// 1.x reads as JSON (see the crate's documentation); a node's answers go to
/// `<prefix>#soketi-rs#<node id>`.
pub fn fleet_channel(prefix: &str) -> String {
    format!("{prefix}#soketi-rs")
}

/// The channels of soketi 1.x's Redis adapter for the same prefix: where a soketi node of a
/// mixed fleet publishes its broadcasts, requests and responses, as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoketiChannels {
    /// Broadcasts: `<prefix>#redis-adapter`, or `redis-adapter` without a prefix. Earlier builds
    /// of this server used it (with a `#` even without a prefix) as their fleet's channel.
    pub broadcast: String,
    /// Requests to every node: the broadcast channel followed by `#comms#req`.
    pub requests: String,
    /// Answers to requests: the broadcast channel followed by `#comms#res`.
    pub responses: String,
}

impl SoketiChannels {
    /// soketi's channels for `prefix` (its `ADAPTER_REDIS_PREFIX`).
    pub fn new(prefix: &str) -> Self {
        let broadcast = if prefix.is_empty() {
            "redis-adapter".to_owned()
        } else {
            format!("{prefix}#redis-adapter")
        };
        Self {
            requests: format!("{broadcast}#comms#req"),
            responses: format!("{broadcast}#comms#res"),
            broadcast,
        }
    }
}

/// Who else a message on a watched channel says is on this Redis.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Neighbour {
    /// A soketi 1.x node: its frames are JSON objects.
    Soketi,
    /// A node of an earlier build of this server, which published its frames on soketi's
    /// channel name.
    EarlierBuild,
}

/// What the bytes heard on one of soketi's channels are from, if anything known.
pub(crate) fn neighbour(payload: &[u8]) -> Option<Neighbour> {
    let text = payload.trim_ascii();
    if text.starts_with(b"{") && text.ends_with(b"}") {
        return Some(Neighbour::Soketi);
    }
    Frame::decode(payload).map(|_| Neighbour::EarlierBuild)
}

/// How to reach Redis and how the fleet checks its members.
#[derive(Clone, Debug)]
pub struct RedisTransportConfig {
    /// Where Redis is.
    pub endpoint: RedisEndpoint,
    /// Prefix of the pub/sub channels; nodes with another prefix never meet.
    pub prefix: String,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence after which a node is gone.
    pub node_timeout: Duration,
    /// Frames kept while Redis is away; beyond this, publishing fails.
    pub max_buffered: usize,
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisTransportError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL {url}: {source}")]
    Url {
        /// The URL, its password masked.
        url: String,
        /// The cause.
        source: redis::RedisError,
    },
    /// Redis answered and refused this node: a wrong user or password, a database number it
    /// does not have, an ACL that forbids the fleet's channels, or not a Redis at all. Retrying
    /// would not help, so start-up stops instead of leaving the node alone without a fleet.
    #[error(
        "Redis at {url} refused the {what}'s connection: {source} \
         (check the Redis user, password and database number, and that its ACL allows the \
         adapter's channels)"
    )]
    Refused {
        /// The URL, its password masked.
        url: String,
        /// Which user of Redis: the adapter, the cache, the queue, the rate limiter.
        what: &'static str,
        /// What Redis answered.
        source: redis::RedisError,
    },
    /// The TLS handshake with Redis failed: its certificate is not trusted (not signed by the
    /// configured CA or a built-in root, or not for this host name), it wants a client
    /// certificate, or it does not speak TLS on that port. Nothing is sent in plain text
    /// instead.
    #[error(
        "TLS to Redis at {url} failed for the {what}: {source} (the server's certificate must \
         be signed by a CA in DB_REDIS_TLS_CA, or by a public root when that is unset, and \
         name the host; DB_REDIS_TLS_CERT and DB_REDIS_TLS_KEY give a client certificate; \
         check that the port serves TLS)"
    )]
    Tls {
        /// Where Redis is.
        url: String,
        /// Which user of Redis.
        what: &'static str,
        /// The handshake's error.
        source: redis::RedisError,
    },
}

/// `url` with the password of its user info, if any, masked, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// How long start-up waits for Redis to answer its first check. A Redis that does not answer in
/// time is treated as one that is down: the node starts and keeps trying.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

struct Outgoing {
    channel: String,
    frame: Bytes,
    sent: Option<oneshot::Sender<()>>,
}

/// A node of a fleet that meets in Redis.
pub struct RedisTransport {
    membership: Arc<Membership>,
    fleet_channel: String,
    node_channel_prefix: String,
    out: mpsc::Sender<Outgoing>,
    events: Mutex<Option<mpsc::UnboundedReceiver<TransportEvent>>>,
    stop: Arc<AtomicBool>,
}

impl RedisTransport {
    /// Joins the fleet: checks that Redis accepts this node, then starts the writer, the
    /// subscriber and the heartbeat.
    ///
    /// A Redis that refuses the node (see [`RedisTransportError::Refused`]) stops start-up. A
    /// Redis that cannot be reached only delays the fleet: connections are made in the
    /// background and retried forever.
    pub async fn start(config: RedisTransportConfig) -> Result<Arc<Self>, RedisTransportError> {
        let connector = config.endpoint.connector()?;
        let node_id = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        // On a Cluster the fleet's channel is a hash tag, so that the node channels after it
        // share its slot: the writer pipelines publishes to both, and a pipeline must stay on
        // one shard (redis-rs refuses one that crosses slots).
        let fleet_channel = if connector.endpoint().is_cluster() {
            format!("{{{}}}", fleet_channel(&config.prefix))
        } else {
            fleet_channel(&config.prefix)
        };
        let node_channel_prefix = format!("{fleet_channel}#");
        let (out, out_rx) = mpsc::channel(config.max_buffered.max(1));
        let (membership, events_rx) = Membership::new(node_id.clone());
        let membership = Arc::new(membership);
        let stop = Arc::new(AtomicBool::new(false));

        check(
            &connector,
            "adapter",
            &format!("{node_channel_prefix}{node_id}"),
            membership.frame(Kind::Heartbeat, &[]),
        )
        .await?;

        tokio::spawn(write_loop(connector.clone(), out_rx));
        tokio::spawn(subscribe_loop(Subscriber {
            connector,
            channels: vec![
                fleet_channel.clone(),
                format!("{node_channel_prefix}{node_id}"),
            ],
            watch: Arc::new(Watch::new(&config.prefix, &fleet_channel)),
            membership: membership.clone(),
            stop: stop.clone(),
        }));
        tokio::spawn(heartbeat_loop(Heartbeat {
            fleet_channel: fleet_channel.clone(),
            out: out.clone(),
            membership: membership.clone(),
            stop: stop.clone(),
            interval: config.heartbeat_interval,
            timeout: config.node_timeout,
        }));
        Ok(Arc::new(Self {
            membership,
            fleet_channel,
            node_channel_prefix,
            out,
            events: Mutex::new(Some(events_rx)),
            stop,
        }))
    }

    async fn send(&self, channel: String, kind: Kind, payload: &[u8]) -> Result<(), AdapterError> {
        let frame = self.membership.frame(kind, payload);
        self.out
            .try_send(Outgoing {
                channel,
                frame,
                sent: None,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => AdapterError::Transport(
                    "Redis is unreachable and the outgoing buffer is full".into(),
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    AdapterError::Transport("the Redis writer stopped".into())
                }
            })
    }
}

#[async_trait]
impl Transport for RedisTransport {
    fn node_id(&self) -> &str {
        self.membership.node_id()
    }

    async fn publish(&self, payload: Bytes) -> Result<(), AdapterError> {
        self.send(self.fleet_channel.clone(), Kind::Message, &payload)
            .await
    }

    async fn send_to(&self, node_id: &str, payload: Bytes) -> Result<(), AdapterError> {
        let channel = format!("{}{node_id}", self.node_channel_prefix);
        self.send(channel, Kind::Message, &payload).await
    }

    fn live_nodes(&self) -> Vec<String> {
        self.membership.live_nodes()
    }

    fn events(&self) -> Option<mpsc::UnboundedReceiver<TransportEvent>> {
        self.events.lock().take()
    }

    async fn leave(&self) -> Result<(), AdapterError> {
        self.stop.store(true, Ordering::Release);
        let (sent, done) = oneshot::channel();
        let frame = self.membership.frame(Kind::Goodbye, &[]);
        self.out
            .send(Outgoing {
                channel: self.fleet_channel.clone(),
                frame,
                sent: Some(sent),
            })
            .await
            .map_err(|_| AdapterError::Transport("the Redis writer stopped".into()))?;
        // Best effort: a Redis that is away cannot carry the goodbye; the others time out.
        let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
        Ok(())
    }
}

/// Publishes `frame` on this node's own channel, which nobody hears yet: a command that needs
/// what the fleet needs (the credentials, the database, the ACL's channel rights). Fails only
/// when Redis answered with a refusal or the TLS handshake failed; an unreachable or silent
/// Redis is logged and let be.
async fn check(
    connector: &connect::Connector,
    what: &'static str,
    channel: &str,
    frame: Bytes,
) -> Result<(), RedisTransportError> {
    let mut publish = redis::cmd(publish_command(connector));
    publish.arg(channel).arg(&frame[..]);
    probe(connector, what, publish).await
}

/// The command that publishes: `SPUBLISH` (sharded pub/sub) on a Redis Cluster, `PUBLISH`
/// elsewhere.
fn publish_command(connector: &connect::Connector) -> &'static str {
    if connector.endpoint().is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    }
}

/// Runs `command` once on a new connection within [`CHECK_TIMEOUT`]: a refusal or a failed TLS
/// handshake is an error, an unreachable or silent Redis a warning.
async fn probe(
    connector: &connect::Connector,
    what: &'static str,
    command: redis::Cmd,
) -> Result<(), RedisTransportError> {
    let attempt = async {
        let mut conn = connector.connect(None).await?;
        command.query_async::<redis::Value>(&mut conn).await
    };
    let url = || connector.endpoint().describe();
    let error = match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) if connector.endpoint().tls.is_some() && is_tls_failure(&e) => {
            return Err(RedisTransportError::Tls {
                url: url(),
                what,
                source: e,
            });
        }
        Ok(Err(e)) if !is_transient(&e) => {
            return Err(RedisTransportError::Refused {
                url: url(),
                what,
                source: e,
            });
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {CHECK_TIMEOUT:?}"),
    };
    if connector.endpoint().tls.is_some() {
        tracing::warn!(
            error,
            redis = %url(),
            "cannot reach Redis over TLS for the {what} at start-up (is it a TLS port?); \
             trying again in the background, never in plain text"
        );
    } else {
        tracing::warn!(
            error,
            redis = %url(),
            "cannot reach Redis for the {what} at start-up; trying again in the background"
        );
    }
    Ok(())
}

/// Checks at start-up that Redis at `endpoint` accepts the `what` (the cache, the queue, the
/// rate limiter): a refusal (credentials, database) or a failed TLS handshake stops start-up,
/// as it does for the adapter; an unreachable Redis is only logged.
pub async fn check_endpoint(
    endpoint: &RedisEndpoint,
    what: &'static str,
) -> Result<(), RedisTransportError> {
    let connector = endpoint.connector()?;
    probe(&connector, what, redis::cmd("PING")).await
}

/// Whether an error says that Redis is away or busy for now, rather than that it refuses us.
fn is_transient(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        )
}

/// Backoff between reconnection attempts.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(5)).min(2000))
}

/// How long the writer keeps a connection on which Redis answers nothing (every batch timed
/// out) before it makes a new one: a connection that died without a reset looks the same as a
/// stalled Redis, and only a new connection tells them apart.
const STALE_CONNECTION: Duration = Duration::from_secs(5);

async fn write_loop(connector: Arc<connect::Connector>, mut rx: mpsc::Receiver<Outgoing>) {
    let publish = publish_command(&connector);
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut connection: Option<connect::Conn> = None;
    let mut attempt = 0;
    // Since when Redis has answered none of the batches written on this connection.
    let mut unanswered_since: Option<tokio::time::Instant> = None;
    loop {
        if batch.is_empty() && rx.recv_many(&mut batch, 512).await == 0 {
            return;
        }
        let conn = match &mut connection {
            Some(conn) => conn,
            None => match connector.connect(None).await {
                Ok(conn) => {
                    if attempt > 0 {
                        tracing::info!("reconnected to Redis for publishing");
                    }
                    attempt = 0;
                    connection.insert(conn)
                }
                Err(e) => {
                    if attempt == 0 {
                        tracing::warn!(error = %e, "cannot reach Redis to publish; retrying");
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            },
        };
        let mut pipe = redis::pipe();
        for out in &batch {
            pipe.cmd(publish)
                .arg(&out.channel)
                .arg(&out.frame[..])
                .ignore();
        }
        match pipe.query_async::<()>(conn).await {
            Ok(()) => {
                if unanswered_since.take().is_some() {
                    tracing::info!("Redis answers the publishes again");
                }
                for out in batch.drain(..) {
                    if let Some(sent) = out.sent {
                        let _ = sent.send(());
                    }
                }
            }
            Err(e) if e.is_timeout() => {
                // The batch went out on a connection that is still open, and Redis does not
                // answer: it is stalled (a pause, a slow command, a stopped process), and it
                // runs what this connection wrote once it resumes. Sending the batch again
                // would deliver it twice, so it counts as sent.
                let since = *unanswered_since.get_or_insert_with(|| {
                    tracing::warn!(
                        error = %e,
                        "Redis does not answer the publishes; they stay on the connection and are not sent again"
                    );
                    tokio::time::Instant::now()
                });
                batch.clear();
                if since.elapsed() > STALE_CONNECTION {
                    tracing::warn!(
                        "no answer from Redis for {STALE_CONNECTION:?}; making a new connection for publishing"
                    );
                    connection = None;
                    unanswered_since = None;
                    attempt += 1;
                }
            }
            Err(e) => {
                // Keep the batch and send it again on a new connection.
                tracing::warn!(error = %e, "publishing to Redis failed; retrying");
                connection = None;
                unanswered_since = None;
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

struct Subscriber {
    connector: Arc<connect::Connector>,
    channels: Vec<String>,
    watch: Arc<Watch>,
    membership: Arc<Membership>,
    stop: Arc<AtomicBool>,
}

/// soketi's channels, listened to for what else shares this Redis and prefix: each neighbour is
/// logged once, and soketi's channels are left once soketi has been seen, so that its traffic
/// costs nothing after that.
struct Watch {
    soketi: SoketiChannels,
    /// The fleet's channel of earlier builds, `<prefix>#redis-adapter`: soketi's broadcast
    /// channel but for an empty prefix, where soketi's has no `#`.
    earlier: String,
    /// This node's fleet channel, named in the log lines.
    ours: String,
    soketi_seen: AtomicBool,
    earlier_build_seen: AtomicBool,
}

impl Watch {
    fn new(prefix: &str, ours: &str) -> Self {
        Self {
            soketi: SoketiChannels::new(prefix),
            earlier: format!("{prefix}#redis-adapter"),
            ours: ours.to_owned(),
            soketi_seen: AtomicBool::new(false),
            earlier_build_seen: AtomicBool::new(false),
        }
    }

    /// The channels still to listen to: soketi's broadcasts and responses and the fleet's
    /// channel of earlier builds, until soketi has been seen. Not soketi's requests: soketi
    /// counts the subscribers of its request channel (`PUBSUB NUMSUB`) as the nodes that will
    /// answer, and would wait out its request timeout for this node's answer.
    fn channels(&self) -> Vec<String> {
        if self.soketi_seen.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut channels = vec![self.soketi.broadcast.clone(), self.soketi.responses.clone()];
        if self.earlier != self.soketi.broadcast {
            channels.push(self.earlier.clone());
        }
        channels
    }

    fn is_watched(&self, channel: &str) -> bool {
        channel == self.soketi.broadcast
            || channel == self.soketi.responses
            || channel == self.earlier
    }

    /// Logs what `payload`, heard on one of soketi's channels, says; true when the channels are
    /// to be left now, because soketi has been seen for the first time.
    fn heard(&self, channel: &str, payload: &[u8]) -> bool {
        match neighbour(payload) {
            Some(Neighbour::Soketi) => {
                if self.soketi_seen.swap(true, Ordering::AcqRel) {
                    return false;
                }
                tracing::warn!(
                    channel,
                    "a soketi 1.x node shares this Redis and prefix: it publishes JSON on \
                     {channel}, and this node uses {ours}, so the two fleets run side by side \
                     without crashing each other but do not exchange events: clients of one do \
                     not get what is published through the other. Move every client and \
                     publisher to one fleet, or give each fleet its own ADAPTER_REDIS_PREFIX \
                     (docs/migrating-from-soketi.md, \"Beside soketi\")",
                    ours = self.ours,
                );
                true
            }
            Some(Neighbour::EarlierBuild) => {
                if !self.earlier_build_seen.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        channel,
                        "a node of an earlier soketi-rs build shares this Redis and prefix: it \
                         publishes on {channel}, and this node uses {ours}, so the two do not \
                         hear each other until every node runs this build (a rolling upgrade \
                         splits the fleet while it lasts; docs/migrating-from-soketi.md)",
                        ours = self.ours,
                    );
                }
                false
            }
            None => false,
        }
    }
}

async fn subscribe_loop(sub: Subscriber) {
    if sub.connector.endpoint().is_cluster() {
        return subscribe_cluster(sub).await;
    }
    let mut attempt = 0;
    while !sub.stop.load(Ordering::Acquire) {
        let pubsub = match sub.connector.server().await {
            Some(Ok(client)) => client.get_async_pubsub().await,
            Some(Err(e)) => Err(e),
            None => return,
        };
        let mut pubsub = match pubsub {
            Ok(pubsub) => pubsub,
            Err(e) => {
                if attempt == 0 {
                    tracing::warn!(error = %e, "cannot reach Redis to subscribe; retrying");
                }
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        let mut subscribed = true;
        for channel in &sub.channels {
            if let Err(e) = pubsub.subscribe(channel).await {
                tracing::warn!(error = %e, channel, "cannot subscribe in Redis; retrying");
                subscribed = false;
                break;
            }
        }
        if !subscribed {
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        // Best effort: an ACL that allows only this node's channels forbids soketi's, and the
        // fleet works without watching them.
        let watched = sub.watch.channels();
        if !watched.is_empty()
            && let Err(e) = pubsub.subscribe(&watched).await
        {
            tracing::debug!(error = %e, "not watching soketi's channels");
        }
        if attempt > 0 {
            tracing::info!("reconnected to Redis for subscribing");
        }
        attempt = 0;
        sub.membership.set_listening(true);
        let (sink, mut messages) = pubsub.split();
        while let Some(msg) = messages.next().await {
            let channel = msg.get_channel_name();
            if sub.watch.is_watched(channel) {
                if sub.watch.heard(channel, msg.get_payload_bytes()) {
                    let mut sink = sink.clone();
                    let watched = watched.clone();
                    tokio::spawn(async move {
                        if let Err(e) = sink.unsubscribe(&watched).await {
                            tracing::debug!(error = %e, "cannot leave soketi's channels");
                        }
                    });
                }
            } else {
                sub.membership.receive(msg.get_payload_bytes());
            }
            if sub.stop.load(Ordering::Acquire) {
                return;
            }
        }
        sub.membership.set_listening(false);
        tracing::warn!("lost the Redis subscription; reconnecting");
    }
}

/// The subscriber on a Redis Cluster: sharded subscriptions on redis-rs's Cluster connection,
/// which follows the shards that own the channels and subscribes again after a failover or a
/// slot move. Messages arrive as RESP3 pushes.
async fn subscribe_cluster(sub: Subscriber) {
    let mut attempt = 0;
    while !sub.stop.load(Ordering::Acquire) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let subscribed = async {
            let client = sub.connector.cluster_client(Some(tx), None)?;
            let mut conn = client.get_async_connection().await?;
            // One channel at a time: a sharded subscription names channels of one slot only.
            for channel in &sub.channels {
                conn.ssubscribe(channel).await?;
            }
            Ok::<_, redis::RedisError>(conn)
        }
        .await;
        let conn = match subscribed {
            Ok(conn) => conn,
            Err(e) => {
                if attempt == 0 {
                    tracing::warn!(error = %e, "cannot subscribe in the Redis Cluster; retrying");
                }
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        if attempt > 0 {
            tracing::info!("subscribed in the Redis Cluster");
        }
        attempt = 0;
        sub.membership.set_listening(true);
        while let Some(push) = rx.recv().await {
            tracing::trace!(kind = ?push.kind, "a push from the Redis Cluster");
            match push.kind {
                redis::PushKind::SMessage | redis::PushKind::Message => {
                    // Hearing anything (this node's own heartbeats included) means hearing the
                    // bus again after a shard's connection was lost.
                    sub.membership.set_listening(true);
                    if let Some(redis::Value::BulkString(payload)) = push.data.get(1) {
                        sub.membership.receive(payload);
                    }
                }
                // A shard's connection is gone: nobody is declared dead until this node hears
                // the fleet again.
                redis::PushKind::Disconnection => sub.membership.set_listening(false),
                redis::PushKind::SSubscribe => sub.membership.set_listening(true),
                _ => {}
            }
            if sub.stop.load(Ordering::Acquire) {
                return;
            }
        }
        drop(conn);
        sub.membership.set_listening(false);
        tracing::warn!("lost the Redis Cluster subscription; subscribing again");
    }
}

struct Heartbeat {
    fleet_channel: String,
    out: mpsc::Sender<Outgoing>,
    membership: Arc<Membership>,
    stop: Arc<AtomicBool>,
    interval: Duration,
    timeout: Duration,
}

async fn heartbeat_loop(hb: Heartbeat) {
    let mut ticks = tokio::time::interval(hb.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !hb.stop.load(Ordering::Acquire) {
        ticks.tick().await;
        // A heartbeat that cannot be queued is dropped: the next one says the same.
        let _ = hb.out.try_send(Outgoing {
            channel: hb.fleet_channel.clone(),
            frame: hb.membership.frame(Kind::Heartbeat, &[]),
            sent: None,
        });
        hb.membership.expire(hb.timeout);
    }
}
