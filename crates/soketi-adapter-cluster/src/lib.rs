//! The cluster adapter's [`Transport`]: soketi-server nodes of one private network find each
//! other over UDP and act as one server, with no third-party service.
//!
//! Discovery ([`discovery`]) sends a protobuf hello every keepalive interval to the broadcast
//! address, a multicast group or a unicast list (host names re-resolved every check interval,
//! so that the pods behind a Kubernetes headless Service are found as they come and go). A hello
//! carries the node id, its start time, the cluster prefix and the port of the node's data
//! listener. A node silent past the node timeout (the master timeout, for the master) is gone;
//! a goodbye removes it at once. The master is the longest-running node, ties broken by node
//! id: every node computes the same answer from the hellos it hears, with no vote.
//!
//! Data ([`data`]) goes over TCP: one connection per peer, length-delimited frames in order,
//! reconnected with backoff, behind a queue per peer bounded in frames and in bytes. A frame
//! that failed to go is sent again on the new connection, so a brief loss of a connection loses
//! nothing. A peer whose queue is full does not read what it is sent (stuck, or far too slow):
//! it is dropped from the cluster like a dead node, with one warning, and its hellos are ignored
//! for a while (longer each time it stalls again), so that it harms neither the publishes nor
//! the other peers; when it is heard again it joins anew and receives every node's state.
//!
//! This crate knows nothing of the Pusher protocol; it carries the adapter's envelopes.

pub mod data;
pub mod discovery;
#[doc(hidden)]
pub mod fuzzing;
mod proto;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use soketi_adapter_core::{AdapterError, PeerInfo, Transport, TransportEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use crate::discovery::{Heard, Mode, read_hello};

/// Settings of the cluster, with soketi's defaults.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The cluster's name: nodes with another prefix never join.
    pub prefix: String,
    /// This node's interface: the bind address for unicast, the interface for multicast, and
    /// the address of the data listener. `0.0.0.0` for every interface.
    pub host: IpAddr,
    /// The UDP port of discovery.
    pub port: u16,
    /// How hellos travel.
    pub mode: Mode,
    /// Time between hellos.
    pub hello_interval: Duration,
    /// Time between checks for dead nodes (and re-resolution of unicast names).
    pub check_interval: Duration,
    /// Silence after which a node is gone.
    pub node_timeout: Duration,
    /// Silence after which the master is gone.
    pub master_timeout: Duration,
    /// Frames queued for one peer before it counts as stalled and is dropped.
    pub max_queued_frames: usize,
    /// Bytes queued for one peer before it counts as stalled and is dropped; a frame larger
    /// than this still goes to a peer whose queue is empty.
    pub max_queued_bytes: usize,
    /// The largest frame accepted from a peer.
    pub max_frame_bytes: usize,
}

/// Why the cluster transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A socket could not be made or bound.
    #[error("cluster {what}: {source}")]
    Socket {
        /// Which socket.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A peer as discovery left it.
pub(crate) struct Peer {
    pub(crate) data_addr: SocketAddr,
    pub(crate) started_at_ms: u64,
    pub(crate) last_seen: Instant,
    pub(crate) queue: PeerQueue,
    pub(crate) sender: JoinHandle<()>,
}

/// The frames waiting for one peer's sender task, bounded in number (the channel) and in bytes
/// (`bytes` counts what is queued or written but not yet flushed).
#[derive(Clone)]
pub(crate) struct PeerQueue {
    frames: mpsc::Sender<Bytes>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// Why a frame was not queued for a peer.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// The peer's queue is full: it does not keep up.
    Full,
    /// The peer's sender is gone: the peer was just dropped.
    Closed,
}

impl PeerQueue {
    fn offer(&self, payload: Bytes) -> Result<(), Refused> {
        let len = payload.len();
        let before = self.bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before.saturating_add(len) > self.max_bytes {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        self.frames.try_send(payload).map_err(|e| {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }
}

/// A peer dropped for stalling: its hellos are ignored until `until`.
struct Bench {
    until: Instant,
    /// How many times in a row it stalled: each time doubles the pause.
    strikes: u32,
}

/// The longest a stalled peer's hellos are ignored.
const MAX_BENCH: Duration = Duration::from_secs(60);

/// How long a peer that stalled is left alone after its bench before a new stall counts as
/// its first again.
const FORGIVE_AFTER: Duration = Duration::from_secs(60);

/// How long the hellos of a peer that stalled `strikes` times in a row are ignored: the node
/// timeout (at least a second), doubled for each strike after the first, at most [`MAX_BENCH`].
fn bench_time(node_timeout: Duration, strikes: u32) -> Duration {
    let base = node_timeout.max(Duration::from_secs(1));
    base.saturating_mul(1 << strikes.saturating_sub(1).min(6))
        .min(MAX_BENCH)
}

/// What the discovery, the data listener and the transport share.
pub(crate) struct Shared {
    pub(crate) node_id: String,
    pub(crate) started_at_ms: u64,
    pub(crate) config: ClusterConfig,
    pub(crate) peers: Mutex<HashMap<String, Peer>>,
    /// Peers dropped for stalling, by node id.
    benched: Mutex<HashMap<String, Bench>>,
    pub(crate) events: mpsc::UnboundedSender<TransportEvent>,
}

impl Shared {
    /// Adds or refreshes a peer from its hello.
    pub(crate) fn seen(&self, node_id: &str, started_at_ms: u64, data_addr: SocketAddr) {
        if self
            .benched
            .lock()
            .get(node_id)
            .is_some_and(|bench| Instant::now() < bench.until)
        {
            return;
        }
        let mut peers = self.peers.lock();
        if let Some(peer) = peers.get_mut(node_id) {
            peer.last_seen = Instant::now();
            if peer.data_addr == data_addr {
                return;
            }
            // The node moved (a restart on another address with the same id is not possible,
            // ids are per process, but a changed advertised address is): reconnect there.
            peer.sender.abort();
        }
        let (frames, rx) = mpsc::channel(self.config.max_queued_frames.max(1));
        let queue = PeerQueue {
            frames,
            bytes: Arc::default(),
            max_bytes: self.config.max_queued_bytes,
        };
        let sender = tokio::spawn(data::send_loop(
            data_addr,
            data::Handshake {
                prefix: self.config.prefix.clone(),
                node_id: self.node_id.clone(),
            },
            rx,
            queue.bytes.clone(),
        ));
        let joined = peers
            .insert(
                node_id.to_owned(),
                Peer {
                    data_addr,
                    started_at_ms,
                    last_seen: Instant::now(),
                    queue,
                    sender,
                },
            )
            .is_none();
        drop(peers);
        if joined {
            tracing::info!(node = node_id, %data_addr, "a node joined the cluster");
            let _ = self
                .events
                .send(TransportEvent::NodeJoined(node_id.to_owned()));
        }
    }

    /// Removes a peer that left or went silent.
    pub(crate) fn gone(&self, node_id: &str, why: &str) {
        let removed = self.peers.lock().remove(node_id);
        if let Some(peer) = removed {
            peer.sender.abort();
            tracing::info!(node = node_id, why, "a node left the cluster");
            let _ = self
                .events
                .send(TransportEvent::NodeLeft(node_id.to_owned()));
        }
    }

    /// Drops a peer whose queue is full: it does not read what this node sends, and waiting
    /// for it would fail every publish (or grow memory) while delivery to the others is fine.
    /// Its hellos are ignored for a while, so that a peer that stays stuck is not taken back
    /// (and dropped again) at every hello.
    fn stalled(&self, node_id: &str) {
        let Some(peer) = self.peers.lock().remove(node_id) else {
            return;
        };
        peer.sender.abort();
        let queued_bytes = peer.queue.bytes.load(Ordering::Acquire);
        let pause = {
            let mut benched = self.benched.lock();
            let strikes = benched.get(node_id).map_or(0, |b| b.strikes) + 1;
            let pause = bench_time(self.config.node_timeout, strikes);
            benched.insert(
                node_id.to_owned(),
                Bench {
                    until: Instant::now() + pause,
                    strikes,
                },
            );
            pause
        };
        tracing::warn!(
            node = node_id,
            data_addr = %peer.data_addr,
            queued_bytes,
            ignored_for_ms = pause.as_millis() as u64,
            "a node does not read what this node sends: its queue is full; dropped from the cluster, its hellos ignored for a while"
        );
        let _ = self
            .events
            .send(TransportEvent::NodeLeft(node_id.to_owned()));
    }

    /// Queues `payload` for `node_id`; a full queue drops the peer (see [`Shared::stalled`]).
    fn offer(&self, node_id: &str, queue: &PeerQueue, payload: Bytes) -> Result<(), Refused> {
        let offered = queue.offer(payload);
        if offered == Err(Refused::Full) {
            self.stalled(node_id);
        }
        offered
    }

    /// Drops the peers silent past their timeout.
    pub(crate) fn expire(&self) {
        let master = self.master();
        let now = Instant::now();
        self.benched
            .lock()
            .retain(|_, bench| now < bench.until + FORGIVE_AFTER);
        let silent: Vec<String> = self
            .peers
            .lock()
            .iter()
            .filter(|(id, peer)| {
                let timeout = if Some(id.as_str()) == master.as_deref() {
                    self.config.master_timeout
                } else {
                    self.config.node_timeout
                };
                now.duration_since(peer.last_seen) > timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.gone(&id, "silent past its timeout");
        }
    }

    /// The longest-running live node, this one included; ties go to the smaller id.
    pub(crate) fn master(&self) -> Option<String> {
        let peers = self.peers.lock();
        let mut best = (self.started_at_ms, self.node_id.as_str());
        for (id, peer) in peers.iter() {
            if (peer.started_at_ms, id.as_str()) < best {
                best = (peer.started_at_ms, id.as_str());
            }
        }
        Some(best.1.to_owned())
    }
}

/// A node of a cluster.
pub struct ClusterTransport {
    shared: Arc<Shared>,
    events: Mutex<Option<mpsc::UnboundedReceiver<TransportEvent>>>,
    discovery: discovery::Discovery,
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterTransport {
    /// Binds the discovery socket and the data listener and starts finding peers.
    pub async fn start(config: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let node_id = format!(
            "{}-{:012x}",
            std::process::id(),
            rand::random::<u64>() >> 16
        );
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let listener = data::bind(config.host).await?;
        let data_port = listener.local_addr().map_or(0, |a| a.port());
        let shared = Arc::new(Shared {
            node_id,
            started_at_ms,
            config,
            peers: Mutex::default(),
            benched: Mutex::default(),
            events: events_tx,
        });
        let discovery = discovery::Discovery::bind(shared.clone(), data_port)?;
        let tasks = vec![
            tokio::spawn(data::accept_loop(listener, shared.clone())),
            tokio::spawn(discovery.clone().run()),
        ];
        tracing::info!(
            node = %shared.node_id,
            data_port,
            mode = ?shared.config.mode,
            "cluster discovery started"
        );
        Ok(Arc::new(Self {
            shared,
            events: Mutex::new(Some(events_rx)),
            discovery,
            tasks,
        }))
    }

    /// Whether this node is the master.
    pub fn is_master(&self) -> bool {
        self.shared.master().as_deref() == Some(self.shared.node_id.as_str())
    }

    fn queue(&self, node_id: &str) -> Option<PeerQueue> {
        self.shared
            .peers
            .lock()
            .get(node_id)
            .map(|p| p.queue.clone())
    }
}

impl Drop for ClusterTransport {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for (_, peer) in self.shared.peers.lock().drain() {
            peer.sender.abort();
        }
    }
}

#[async_trait]
impl Transport for ClusterTransport {
    fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// Queues `payload` for every peer. A peer that does not keep up is dropped rather than
    /// failing the publish: the others, and this node's own subscribers, got it.
    async fn publish(&self, payload: Bytes) -> Result<(), AdapterError> {
        let queues: Vec<(String, PeerQueue)> = self
            .shared
            .peers
            .lock()
            .iter()
            .map(|(id, p)| (id.clone(), p.queue.clone()))
            .collect();
        for (id, queue) in queues {
            // A refused frame was for a peer that is now gone from the cluster.
            let _ = self.shared.offer(&id, &queue, payload.clone());
        }
        Ok(())
    }

    async fn send_to(&self, node_id: &str, payload: Bytes) -> Result<(), AdapterError> {
        let queue = self
            .queue(node_id)
            .ok_or_else(|| AdapterError::Transport(format!("no live node {node_id}")))?;
        self.shared
            .offer(node_id, &queue, payload)
            .map_err(|refused| match refused {
                Refused::Full => AdapterError::Transport(format!(
                    "node {node_id} does not keep up; dropped from the cluster"
                )),
                Refused::Closed => AdapterError::Transport(format!("node {node_id} is gone")),
            })
    }

    fn live_nodes(&self) -> Vec<String> {
        self.shared.peers.lock().keys().cloned().collect()
    }

    fn events(&self) -> Option<mpsc::UnboundedReceiver<TransportEvent>> {
        self.events.lock().take()
    }

    async fn leave(&self) -> Result<(), AdapterError> {
        self.discovery.goodbye().await;
        Ok(())
    }

    fn master(&self) -> Option<String> {
        self.shared.master()
    }

    fn peers(&self) -> Vec<PeerInfo> {
        self.shared
            .peers
            .lock()
            .iter()
            .map(|(id, p)| PeerInfo {
                node_id: id.clone(),
                address: Some(p.data_addr.to_string()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
