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
//! reconnected with backoff, behind a bounded queue per peer. A frame that failed to go is sent
//! again on the new connection, so a brief loss of a connection loses nothing.
//!
//! This crate knows nothing of the Pusher protocol; it carries the adapter's envelopes.

pub mod data;
pub mod discovery;
mod proto;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use soketi_adapter_core::{AdapterError, PeerInfo, Transport, TransportEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use crate::discovery::Mode;

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
    /// Frames queued for one peer before publishing to it fails.
    pub max_queued_frames: usize,
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
    pub(crate) queue: mpsc::Sender<Bytes>,
    pub(crate) sender: JoinHandle<()>,
}

/// What the discovery, the data listener and the transport share.
pub(crate) struct Shared {
    pub(crate) node_id: String,
    pub(crate) started_at_ms: u64,
    pub(crate) config: ClusterConfig,
    pub(crate) peers: Mutex<HashMap<String, Peer>>,
    pub(crate) events: mpsc::UnboundedSender<TransportEvent>,
}

impl Shared {
    /// Adds or refreshes a peer from its hello.
    pub(crate) fn seen(&self, node_id: &str, started_at_ms: u64, data_addr: SocketAddr) {
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
        let (queue, rx) = mpsc::channel(self.config.max_queued_frames.max(1));
        let sender = tokio::spawn(data::send_loop(
            data_addr,
            data::Handshake {
                prefix: self.config.prefix.clone(),
                node_id: self.node_id.clone(),
            },
            rx,
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

    /// Drops the peers silent past their timeout.
    pub(crate) fn expire(&self) {
        let master = self.master();
        let now = Instant::now();
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

    fn queue(&self, node_id: &str) -> Option<mpsc::Sender<Bytes>> {
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

fn enqueue(node_id: &str, queue: &mpsc::Sender<Bytes>, payload: Bytes) -> Result<(), AdapterError> {
    queue.try_send(payload).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => AdapterError::Transport(format!(
            "the queue to node {node_id} is full; it does not keep up"
        )),
        mpsc::error::TrySendError::Closed(_) => {
            AdapterError::Transport(format!("node {node_id} is gone"))
        }
    })
}

#[async_trait]
impl Transport for ClusterTransport {
    fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    async fn publish(&self, payload: Bytes) -> Result<(), AdapterError> {
        let queues: Vec<(String, mpsc::Sender<Bytes>)> = self
            .shared
            .peers
            .lock()
            .iter()
            .map(|(id, p)| (id.clone(), p.queue.clone()))
            .collect();
        let mut failure = None;
        for (id, queue) in queues {
            if let Err(e) = enqueue(&id, &queue, payload.clone()) {
                failure = Some(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn send_to(&self, node_id: &str, payload: Bytes) -> Result<(), AdapterError> {
        let queue = self
            .queue(node_id)
            .ok_or_else(|| AdapterError::Transport(format!("no live node {node_id}")))?;
        enqueue(node_id, &queue, payload)
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
