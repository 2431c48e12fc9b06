//! Entry points for the fuzz targets of `fuzz/`: what a node reads from the network, run on
//! input from memory. Not an API: hidden from the docs, and free to change.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use soketi_adapter_core::TransportEvent;
use tokio::sync::mpsc;

use crate::{ClusterConfig, Shared, data};

/// A node's data listener, without a socket.
pub struct DataListener {
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<TransportEvent>,
}

impl DataListener {
    /// A listener of a node with `config`.
    pub fn new(config: ClusterConfig) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            node_id: "fuzzed-node".into(),
            started_at_ms: 0,
            config,
            peers: Default::default(),
            benched: Default::default(),
            events: events_tx,
        });
        Self { shared, events }
    }

    /// Reads `input` as everything one connection to the listener sent, and returns the frames
    /// the node handed on to its adapter, with the node they came from.
    pub async fn connection(&mut self, input: Vec<u8>) -> Vec<(String, Bytes)> {
        let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
        data::receive(std::io::Cursor::new(input), from, self.shared.clone()).await;
        let mut frames = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            if let TransportEvent::Message { from, payload } = event {
                frames.push((from, payload));
            }
        }
        frames
    }
}
