//! What another node of the fleet may send: any bytes, published to the fleet and sent to one
//! node, reach a node with a presence member, a subscriber and the cluster rate limiter, through
//! the in-process hub. Garbage is dropped; a valid envelope is acted on; nothing panics.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use soketi_adapter_core::{
    Adapter, HorizontalAdapter, LocalAdapter, MemoryCache, MemoryHub, Transport,
};
use soketi_channels::Outbox;
use soketi_protocol::message::PresenceMember;
use soketi_protocol::{CloseCode, SocketId};
use soketi_ratelimit_cluster::ClusterRateLimiter;

struct Fleet {
    runtime: tokio::runtime::Runtime,
    peer: Arc<dyn Transport>,
    _node: Arc<HorizontalAdapter>,
    _limiter: Arc<ClusterRateLimiter>,
}

/// A connection that drops what it is sent.
struct Sink(SocketId);

impl Outbox for Sink {
    fn socket_id(&self) -> &SocketId {
        &self.0
    }
    fn send(&self, _frame: Bytes) {}
    fn close(&self, _code: CloseCode, _reason: &str) {}
}

static FLEET: OnceLock<Fleet> = OnceLock::new();

fn fleet() -> &'static Fleet {
    FLEET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (node, peer, limiter) = runtime.block_on(async {
            let hub = MemoryHub::new();
            let local = LocalAdapter::new(Arc::new(MemoryCache::new()), Duration::from_secs(60));
            let node = HorizontalAdapter::start(local, hub.join("node"), Duration::from_millis(20));
            let limiter = ClusterRateLimiter::new(node.clone());
            let member = PresenceMember::from_channel_data(r#"{"user_id":"u","user_info":{}}"#)
                .expect("a member");
            let socket: Arc<dyn Outbox> = Arc::new(Sink(SocketId::from_parts(1, 1)));
            let _ = node
                .join_presence("app", "presence-room", socket.clone(), member, 100)
                .await;
            let _ = node.subscribe("app", "news", socket).await;
            (node, hub.join("peer"), limiter)
        });
        Fleet {
            runtime,
            peer,
            _node: node,
            _limiter: limiter,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fleet = fleet();
    fleet.runtime.block_on(async {
        let bytes = Bytes::copy_from_slice(data);
        let _ = fleet.peer.publish(bytes.clone()).await;
        let _ = fleet.peer.send_to("node", bytes).await;
        // The node's task takes the messages in.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    });
});
