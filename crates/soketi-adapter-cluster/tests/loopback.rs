//! Two cluster transports on this host find each other by multicast on 127.0.0.1 (never on the
//! machine's real interfaces), carry a megabyte intact, agree on the master, and hear a goodbye.
//!
//! Hellos go every 50 ms. A node is dropped after its timeout of silence, so a timeout close to
//! that interval would drop live nodes whenever a busy machine delays a hello; each test sets
//! one it can afford: never reached where nodes say goodbye, and 2 s (40 hello intervals) where
//! a silent node must be dropped, waited for with that timeout plus a margin.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use soketi_adapter_cluster::{ClusterConfig, ClusterTransport, Mode};
use soketi_adapter_core::{Transport, TransportEvent};
use tokio::sync::mpsc::UnboundedReceiver;

const HELLO_INTERVAL: Duration = Duration::from_millis(50);
/// For tests where every node leaves with a goodbye: silence never drops one.
const NEVER: Duration = Duration::from_secs(3600);
/// For the test where a silent node must be dropped: 40 hello intervals.
const SILENCE: Duration = Duration::from_secs(2);
/// How long discovery and messages may take on a busy machine.
const DEADLINE: Duration = Duration::from_secs(10);

fn config(port: u16, group: Ipv4Addr, prefix: &str, timeout: Duration) -> ClusterConfig {
    ClusterConfig {
        prefix: prefix.into(),
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        mode: Mode::Multicast(group),
        hello_interval: HELLO_INTERVAL,
        check_interval: HELLO_INTERVAL,
        node_timeout: timeout,
        master_timeout: timeout,
        max_queued_frames: 1000,
        max_queued_bytes: 64 * 1024 * 1024,
        max_frame_bytes: 4 * 1024 * 1024,
    }
}

/// The next event that matches, within `DEADLINE`.
async fn next(
    events: &mut UnboundedReceiver<TransportEvent>,
    what: &str,
    matches: impl Fn(&TransportEvent) -> bool,
) -> TransportEvent {
    next_within(DEADLINE, events, what, matches).await
}

/// The next event that matches, within `within`.
async fn next_within(
    within: Duration,
    events: &mut UnboundedReceiver<TransportEvent>,
    what: &str,
    matches: impl Fn(&TransportEvent) -> bool,
) -> TransportEvent {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
            .expect("events open");
        if matches(&event) {
            return event;
        }
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn group() -> Ipv4Addr {
    Ipv4Addr::new(239, 255, rand_byte(), rand_byte())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Returns once the wall clock has passed the millisecond it reads now: a node started after
/// that is younger (its start time larger) than one started before, whatever the machine's load.
async fn next_millisecond() {
    let now = now_ms();
    while now_ms() <= now {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn rand_byte() -> u8 {
    (std::process::id() as u8).wrapping_mul(31).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.subsec_nanos() as u8),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_meet_talk_and_part() {
    let (port, group) = (free_udp_port(), group());
    let a = ClusterTransport::start(config(port, group, "t", NEVER))
        .await
        .unwrap();
    let mut a_events = a.events().unwrap();
    // The master is the node that started first, by its start time in milliseconds.
    next_millisecond().await;
    let b = ClusterTransport::start(config(port, group, "t", NEVER))
        .await
        .unwrap();
    let mut b_events = b.events().unwrap();
    let b_id = b.node_id().to_owned();
    next(&mut a_events, "b joining a", |e| {
        *e == TransportEvent::NodeJoined(b_id.clone())
    })
    .await;
    next(&mut b_events, "a joining b", |e| {
        matches!(e, TransportEvent::NodeJoined(_))
    })
    .await;

    // The oldest node is master, and both say so.
    assert_eq!(a.master().as_deref(), Some(a.node_id()));
    assert_eq!(b.master().as_deref(), Some(a.node_id()));
    assert!(a.is_master() && !b.is_master());

    // A megabyte crosses intact, in order after a small one.
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    a.publish(Bytes::from_static(b"small")).await.unwrap();
    a.send_to(&b_id, Bytes::from(big.clone())).await.unwrap();
    let got = next(&mut b_events, "the small frame", |e| {
        matches!(e, TransportEvent::Message { .. })
    })
    .await;
    assert!(matches!(got, TransportEvent::Message { payload, .. } if payload == "small"));
    let got = next(&mut b_events, "the large frame", |e| {
        matches!(e, TransportEvent::Message { .. })
    })
    .await;
    match got {
        TransportEvent::Message { from, payload } => {
            assert_eq!(from, a.node_id());
            assert_eq!(payload.len(), big.len());
            assert!(payload[..] == big[..], "the megabyte arrives intact");
        }
        other => panic!("unexpected {other:?}"),
    }

    // A goodbye drops the node at once, and the survivor is master.
    a.leave().await.unwrap();
    let a_id = a.node_id().to_owned();
    next(&mut b_events, "a leaving", |e| {
        *e == TransportEvent::NodeLeft(a_id.clone())
    })
    .await;
    assert!(b.is_master());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_prefixes_stay_apart_and_silence_ends_a_node() {
    let (port, group) = (free_udp_port(), group());
    let a = ClusterTransport::start(config(port, group, "one", SILENCE))
        .await
        .unwrap();
    let mut a_events = a.events().unwrap();
    let other = ClusterTransport::start(config(port, group, "two", SILENCE))
        .await
        .unwrap();
    let b = ClusterTransport::start(config(port, group, "one", SILENCE))
        .await
        .unwrap();
    let b_id = b.node_id().to_owned();
    next(&mut a_events, "b joining", |e| {
        *e == TransportEvent::NodeJoined(b_id.clone())
    })
    .await;
    assert_eq!(
        a.live_nodes(),
        vec![b_id.clone()],
        "the other prefix never joins"
    );
    assert!(other.live_nodes().is_empty());
    // Dropping b stops its hellos without a goodbye, as a crash would.
    drop(b);
    // Dropped after its timeout and at most one check later; the margin is for a busy machine.
    next_within(
        SILENCE + HELLO_INTERVAL + DEADLINE,
        &mut a_events,
        "b timing out",
        |e| *e == TransportEvent::NodeLeft(b_id.clone()),
    )
    .await;
    drop(other);
    let _: Arc<ClusterTransport> = a;
}
