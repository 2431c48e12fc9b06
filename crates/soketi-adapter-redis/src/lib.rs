//! Everything soketi-server keeps in Redis: the [`Transport`] of a fleet that meets in one
//! Redis ([`RedisTransport`], for [`soketi_adapter_core::HorizontalAdapter`]), and the shared
//! [`RedisCache`], the durable [`RedisQueue`] and the fleet-wide [`RedisRateLimiter`]. Each is
//! picked on its own by the configuration; none needs the Redis transport.
//!
//! # The transport
//!
//! Every node subscribes to the fleet's channel (`<prefix>#redis-adapter`, soketi's name) and to
//! its own (`<prefix>#redis-adapter#<node id>`) for answers. Each frame carries its kind and the
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
//! # The services
//!
//! [`RedisCache`] is the shared [`soketi_adapter_core::Cache`] of cache channels, [`RedisQueue`]
//! the [`soketi_adapter_core::Queue`] that keeps jobs (webhooks) through restarts, and
//! [`RedisRateLimiter`] a [`soketi_adapter_core::RateLimiter`] with one budget per app in Redis.
//!
//! This crate knows nothing of the Pusher protocol; it carries bytes.

mod cache;
mod lazy;
mod queue;
mod ratelimit;
#[cfg(test)]
mod tests;

pub use cache::RedisCache;
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

use soketi_adapter_core::membership::{Kind, Membership};

/// How to reach Redis and how the fleet checks its members.
#[derive(Clone, Debug)]
pub struct RedisTransportConfig {
    /// A `redis://` URL.
    pub url: String,
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
        "Redis at {url} refused the adapter's connection: {source} \
         (check the Redis user, password and database number, and that its ACL allows the \
         adapter's channels)"
    )]
    Refused {
        /// The URL, its password masked.
        url: String,
        /// What Redis answered.
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
        let client = redis::Client::open(config.url.as_str()).map_err(|source| {
            RedisTransportError::Url {
                url: redact(&config.url),
                source,
            }
        })?;
        let node_id = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let fleet_channel = format!("{}#redis-adapter", config.prefix);
        let node_channel_prefix = format!("{fleet_channel}#");
        let (out, out_rx) = mpsc::channel(config.max_buffered.max(1));
        let (membership, events_rx) = Membership::new(node_id.clone());
        let membership = Arc::new(membership);
        let stop = Arc::new(AtomicBool::new(false));

        check(
            &client,
            &format!("{node_channel_prefix}{node_id}"),
            membership.frame(Kind::Heartbeat, &[]),
        )
        .await
        .map_err(|source| RedisTransportError::Refused {
            url: redact(&config.url),
            source,
        })?;

        tokio::spawn(write_loop(client.clone(), out_rx));
        tokio::spawn(subscribe_loop(Subscriber {
            client,
            channels: vec![
                fleet_channel.clone(),
                format!("{node_channel_prefix}{node_id}"),
            ],
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
/// when Redis answered with a refusal; an unreachable or silent Redis is logged and let be.
async fn check(
    client: &redis::Client,
    channel: &str,
    frame: Bytes,
) -> Result<(), redis::RedisError> {
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(&frame[..])
            .query_async::<i64>(&mut conn)
            .await
    };
    let error = match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) if !is_transient(&e) => return Err(e),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {CHECK_TIMEOUT:?}"),
    };
    tracing::warn!(
        error,
        "cannot reach Redis at start-up; this node works alone until it can"
    );
    Ok(())
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

async fn write_loop(client: redis::Client, mut rx: mpsc::Receiver<Outgoing>) {
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut attempt = 0;
    // Since when Redis has answered none of the batches written on this connection.
    let mut unanswered_since: Option<tokio::time::Instant> = None;
    loop {
        if batch.is_empty() && rx.recv_many(&mut batch, 512).await == 0 {
            return;
        }
        let conn = match &mut connection {
            Some(conn) => conn,
            None => match client.get_multiplexed_async_connection().await {
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
            pipe.cmd("PUBLISH")
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
    client: redis::Client,
    channels: Vec<String>,
    membership: Arc<Membership>,
    stop: Arc<AtomicBool>,
}

async fn subscribe_loop(sub: Subscriber) {
    let mut attempt = 0;
    while !sub.stop.load(Ordering::Acquire) {
        let mut pubsub = match sub.client.get_async_pubsub().await {
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
        if attempt > 0 {
            tracing::info!("reconnected to Redis for subscribing");
        }
        attempt = 0;
        sub.membership.set_listening(true);
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            sub.membership.receive(msg.get_payload_bytes());
            if sub.stop.load(Ordering::Acquire) {
                return;
            }
        }
        sub.membership.set_listening(false);
        tracing::warn!("lost the Redis subscription; reconnecting");
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
