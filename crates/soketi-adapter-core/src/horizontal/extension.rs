//! Extensions: something built on the fleet's channel, such as the cluster rate limiter,
//! sends its own messages through the adapter's transport and hears those of its kind. It
//! sees the fleet through the narrow [`Fleet`] trait.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::HorizontalAdapter;
use crate::AdapterError;
use crate::wire::v1;

/// Something built on the fleet's channel, such as the cluster rate limiter: it receives the
/// [`v1::Extension`] messages of its kind, and may greet nodes that join.
pub trait Extension: Send + Sync {
    /// A message of this extension from another node.
    fn on_message(&self, from: &str, payload: &[u8]);
    /// A node joined; the returned payload, if any, is sent to it alone. `is_master` says
    /// whether this node is the one that greets newcomers (always true without a master).
    fn on_node_joined(&self, node: &str, is_master: bool) -> Option<Bytes>;
}

/// What an [`Extension`] needs of the fleet: its own messages to every other node or to one,
/// the fleet's messages of its kind and the nodes that join, and whether this node is the
/// master. [`HorizontalAdapter`] is one over any transport (cluster, Redis, NATS); an extension
/// holds it as `Arc<dyn Fleet>`, so it depends on nothing else of the adapter.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// Sends an extension message to every other node, or to one.
    async fn send_extension(
        &self,
        kind: &str,
        payload: Bytes,
        to: Option<&str>,
    ) -> Result<(), AdapterError>;

    /// Routes the extension messages of `kind`, and the nodes that join, to `extension`.
    fn register_extension(&self, kind: &str, extension: Arc<dyn Extension>);

    /// Whether this node greets newcomers: the master, or every node without one.
    fn is_master(&self) -> bool;
}

#[async_trait]
impl Fleet for HorizontalAdapter {
    async fn send_extension(
        &self,
        kind: &str,
        payload: Bytes,
        to: Option<&str>,
    ) -> Result<(), AdapterError> {
        let envelope = self.envelope(
            "",
            v1::envelope::Body::Extension(v1::Extension {
                kind: kind.to_owned(),
                payload: payload.to_vec(),
            }),
        );
        match to {
            Some(node) => self.transport.send_to(node, envelope).await,
            None => self.transport.publish(envelope).await,
        }
    }

    fn register_extension(&self, kind: &str, extension: Arc<dyn Extension>) {
        self.extensions
            .write()
            .insert(kind.to_owned(), extension.clone());
        let early: Vec<(String, v1::Extension)> = {
            let mut unclaimed = self.unclaimed.lock();
            let (mine, others) = std::mem::take(&mut *unclaimed)
                .into_iter()
                .partition(|(_, message)| message.kind == kind);
            *unclaimed = others;
            mine
        };
        for (from, message) in early {
            extension.on_message(&from, &message.payload);
        }
    }

    fn is_master(&self) -> bool {
        self.transport
            .master()
            .is_none_or(|m| m == self.transport.node_id())
    }
}

/// How many extension messages of kinds nobody registered are kept for a later registration.
const MAX_UNCLAIMED: usize = 256;

impl HorizontalAdapter {
    /// Another node's extension message, for the extension of its kind.
    pub(super) fn on_extension(&self, from: &str, extension: v1::Extension) {
        // Looked up with the unclaimed messages held, so that a registration in between hands
        // this one over rather than missing it.
        let handler = {
            let mut unclaimed = self.unclaimed.lock();
            let handler = self.extensions.read().get(&extension.kind).cloned();
            if handler.is_none() {
                if unclaimed.len() < MAX_UNCLAIMED {
                    tracing::debug!(
                        kind = extension.kind,
                        "an extension message before its extension; kept"
                    );
                    unclaimed.push((from.to_owned(), extension));
                } else {
                    tracing::debug!(kind = extension.kind, "no extension of this kind");
                }
                return;
            }
            handler
        };
        if let Some(handler) = handler {
            handler.on_message(from, &extension.payload);
        }
    }

    /// Sends `node`, which joined, each extension's greeting.
    pub(super) async fn greet(&self, node: &str) {
        let is_master = self.is_master();
        let greetings: Vec<(String, Bytes)> = self
            .extensions
            .read()
            .iter()
            .filter_map(|(kind, ext)| {
                ext.on_node_joined(node, is_master)
                    .map(|payload| (kind.clone(), payload))
            })
            .collect();
        for (kind, payload) in greetings {
            if let Err(e) = self.send_extension(&kind, payload, Some(node)).await {
                tracing::warn!(node, kind, error = %e, "could not greet a new node");
            }
        }
    }
}
