//! How nodes reach each other: the [`Transport`] trait, and [`MemoryHub`], a transport between
//! adapters of one process (for tests and embedding).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::AdapterError;

/// What a transport reports to its adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// A message from another node.
    Message {
        /// The sending node.
        from: String,
        /// The encoded envelope.
        payload: Bytes,
    },
    /// A node appeared (its first heartbeat or message).
    NodeJoined(String),
    /// A node said goodbye or was silent past the node timeout.
    NodeLeft(String),
}

/// Carries envelopes between the nodes of a fleet and knows which nodes are alive. Held as
/// `Arc<dyn Transport>` by [`crate::HorizontalAdapter`].
#[async_trait]
pub trait Transport: Send + Sync {
    /// This node's id, unique in the fleet.
    fn node_id(&self) -> &str;

    /// Sends a payload to every other node.
    async fn publish(&self, payload: Bytes) -> Result<(), AdapterError>;

    /// Sends a payload to one node.
    async fn send_to(&self, node_id: &str, payload: Bytes) -> Result<(), AdapterError>;

    /// The other nodes believed alive.
    fn live_nodes(&self) -> Vec<String>;

    /// The events of this transport. Only the first call gets them; later calls get `None`.
    fn events(&self) -> Option<mpsc::UnboundedReceiver<TransportEvent>>;

    /// Tells the other nodes that this one leaves, so that they need not wait for a timeout.
    async fn leave(&self) -> Result<(), AdapterError>;

    /// The node the fleet treats as master, when the transport elects one.
    fn master(&self) -> Option<String> {
        None
    }

    /// The other live nodes with the address they are reached at, for operators.
    fn peers(&self) -> Vec<PeerInfo> {
        self.live_nodes()
            .into_iter()
            .map(|node_id| PeerInfo {
                node_id,
                address: None,
            })
            .collect()
    }
}

/// A live node as a transport knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The node's id.
    pub node_id: String,
    /// Where its messages go, when the transport has addresses.
    pub address: Option<String>,
}

/// A fleet inside one process: every [`MemoryHub::join`] makes a node whose messages reach
/// the others through channels.
#[derive(Clone, Default)]
pub struct MemoryHub {
    nodes: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<TransportEvent>>>>,
}

impl MemoryHub {
    /// An empty fleet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new node of the fleet; the others hear that it joined, and it hears of them.
    pub fn join(&self, node_id: &str) -> Arc<MemoryTransport> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut nodes = self.nodes.lock();
        for (id, other) in nodes.iter() {
            let _ = other.send(TransportEvent::NodeJoined(node_id.to_owned()));
            let _ = tx.send(TransportEvent::NodeJoined(id.clone()));
        }
        nodes.insert(node_id.to_owned(), tx);
        Arc::new(MemoryTransport {
            hub: self.clone(),
            node_id: node_id.to_owned(),
            events: Mutex::new(Some(rx)),
        })
    }

    /// Removes a node as if it died: the others hear that it left.
    pub fn kill(&self, node_id: &str) {
        let mut nodes = self.nodes.lock();
        nodes.remove(node_id);
        for other in nodes.values() {
            let _ = other.send(TransportEvent::NodeLeft(node_id.to_owned()));
        }
    }
}

/// One node of a [`MemoryHub`].
pub struct MemoryTransport {
    hub: MemoryHub,
    node_id: String,
    events: Mutex<Option<mpsc::UnboundedReceiver<TransportEvent>>>,
}

#[async_trait]
impl Transport for MemoryTransport {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn publish(&self, payload: Bytes) -> Result<(), AdapterError> {
        for (id, node) in self.hub.nodes.lock().iter() {
            if *id != self.node_id {
                let _ = node.send(TransportEvent::Message {
                    from: self.node_id.clone(),
                    payload: payload.clone(),
                });
            }
        }
        Ok(())
    }

    async fn send_to(&self, node_id: &str, payload: Bytes) -> Result<(), AdapterError> {
        let nodes = self.hub.nodes.lock();
        let node = nodes
            .get(node_id)
            .ok_or_else(|| AdapterError::Transport(format!("no node {node_id}")))?;
        node.send(TransportEvent::Message {
            from: self.node_id.clone(),
            payload,
        })
        .map_err(|_| AdapterError::Transport(format!("node {node_id} is gone")))
    }

    fn live_nodes(&self) -> Vec<String> {
        self.hub
            .nodes
            .lock()
            .keys()
            .filter(|id| **id != self.node_id)
            .cloned()
            .collect()
    }

    fn events(&self) -> Option<mpsc::UnboundedReceiver<TransportEvent>> {
        self.events.lock().take()
    }

    async fn leave(&self) -> Result<(), AdapterError> {
        self.hub.kill(&self.node_id);
        Ok(())
    }
}
