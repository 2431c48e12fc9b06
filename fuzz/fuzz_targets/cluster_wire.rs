//! What reaches a cluster node from the network before the adapter: any datagram on the
//! discovery port (the first byte even), or any bytes on a data connection (odd): the
//! handshake, then length-prefixed frames. A hello is read into one answer, a connection into
//! the frames it carried, each within the frame limit; nothing panics, nothing hangs.

#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use soketi_adapter_cluster::fuzzing::DataListener;
use soketi_adapter_cluster::{ClusterConfig, Heard, Mode, read_hello};

const PREFIX: &str = "soketi";
const MAX_FRAME: usize = 64 * 1024;

struct Node {
    runtime: tokio::runtime::Runtime,
    listener: Mutex<DataListener>,
}

static NODE: std::sync::OnceLock<Node> = std::sync::OnceLock::new();

fn node() -> &'static Node {
    NODE.get_or_init(|| {
        let config = ClusterConfig {
            prefix: PREFIX.into(),
            host: Ipv4Addr::LOCALHOST.into(),
            port: 0,
            mode: Mode::Unicast(Vec::new()),
            hello_interval: Duration::from_secs(1),
            check_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(3),
            master_timeout: Duration::from_secs(3),
            max_queued_frames: 16,
            max_queued_bytes: 1 << 20,
            max_frame_bytes: MAX_FRAME,
        };
        Node {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
            listener: Mutex::new(DataListener::new(config)),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let from = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 7), 6001));
        match read_hello(rest, from, PREFIX, "me") {
            Heard::Hello { node_id, .. } | Heard::Goodbye { node_id } => {
                assert!(!node_id.is_empty() && node_id != "me");
            }
            Heard::Foreign { version, prefix } => assert!(version != 1 || prefix != PREFIX),
            Heard::Garbage | Heard::Nothing => {}
        }
        return;
    }
    let node = node();
    let mut listener = node.listener.lock().expect("one input at a time");
    let frames = node.runtime.block_on(listener.connection(rest.to_vec()));
    let carried: usize = frames.iter().map(|(_, frame)| frame.len() + 4).sum();
    assert!(carried <= rest.len(), "more came out than went in");
    assert!(frames.iter().all(|(_, frame)| frame.len() <= MAX_FRAME));
});
