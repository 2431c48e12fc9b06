//! Who is in a fleet that meets on a pub/sub bus (Redis, NATS): shared by the transports of
//! those buses, which differ only in how bytes travel.
//!
//! Every frame on the bus names its kind and its sender ([`Frame`]); any frame of a node counts
//! as a sign of life, a heartbeat says only that, a goodbye removes the node at once, and a
//! node silent past the node timeout is gone. While this node cannot hear the bus, nobody is
//! declared dead: it is this node that is deaf.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

pub use crate::pubsub_frame::{Frame, Kind};
use crate::transport::TransportEvent;

/// The live nodes of a fleet as this node hears them.
pub struct Membership {
    node_id: String,
    nodes: Mutex<HashMap<String, Instant>>,
    events: mpsc::UnboundedSender<TransportEvent>,
    listening: AtomicBool,
}

impl Membership {
    /// Membership for `node_id`; its events go to the returned receiver.
    pub fn new(node_id: String) -> (Self, mpsc::UnboundedReceiver<TransportEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        (
            Self {
                node_id,
                nodes: Mutex::default(),
                events,
                listening: AtomicBool::new(false),
            },
            rx,
        )
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// A frame of `kind` from this node, ready for the bus.
    pub fn frame(&self, kind: Kind, payload: &[u8]) -> Bytes {
        Frame::encode(kind, &self.node_id, payload)
    }

    /// Takes in bytes heard on the bus.
    pub fn receive(&self, bytes: &[u8]) {
        let Some(frame) = Frame::decode(bytes) else {
            tracing::warn!("dropping a frame that is not from a soketi node");
            return;
        };
        if frame.node_id == self.node_id {
            return;
        }
        let joined = {
            let mut nodes = self.nodes.lock();
            if frame.kind == Kind::Goodbye {
                if nodes.remove(frame.node_id).is_some() {
                    let _ = self
                        .events
                        .send(TransportEvent::NodeLeft(frame.node_id.to_owned()));
                }
                return;
            }
            nodes
                .insert(frame.node_id.to_owned(), Instant::now())
                .is_none()
        };
        if joined {
            let _ = self
                .events
                .send(TransportEvent::NodeJoined(frame.node_id.to_owned()));
        }
        if frame.kind == Kind::Message {
            let _ = self.events.send(TransportEvent::Message {
                from: frame.node_id.to_owned(),
                payload: Bytes::copy_from_slice(frame.payload),
            });
        }
    }

    /// Says whether this node hears the bus. On hearing it again, every known node gets a full
    /// timeout: they were unheard, not silent.
    pub fn set_listening(&self, listening: bool) {
        let was = self.listening.swap(listening, Ordering::AcqRel);
        if listening && !was {
            let now = Instant::now();
            for seen in self.nodes.lock().values_mut() {
                *seen = now;
            }
        }
    }

    /// Drops the nodes silent past `timeout`, unless this node cannot hear the bus.
    pub fn expire(&self, timeout: Duration) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let gone: Vec<String> = {
            let mut nodes = self.nodes.lock();
            let gone: Vec<String> = nodes
                .iter()
                .filter(|(_, seen)| now.duration_since(**seen) > timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &gone {
                nodes.remove(id);
            }
            gone
        };
        for id in gone {
            tracing::warn!(node = %id, "a node was silent past the node timeout");
            let _ = self.events.send(TransportEvent::NodeLeft(id));
        }
    }

    /// The other live nodes.
    pub fn live_nodes(&self) -> Vec<String> {
        self.nodes.lock().keys().cloned().collect()
    }
}
