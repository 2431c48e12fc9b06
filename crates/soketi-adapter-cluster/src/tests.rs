use std::net::{IpAddr, Ipv4Addr};

use tokio::net::TcpListener;

use super::*;

fn config(max_queued_bytes: usize) -> ClusterConfig {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    ClusterConfig {
        prefix: "stall-test".into(),
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        // Nobody to send hellos to: the test adds its peer by hand.
        mode: Mode::Unicast(Vec::new()),
        hello_interval: Duration::from_secs(3600),
        check_interval: Duration::from_secs(3600),
        node_timeout: Duration::from_secs(3600),
        master_timeout: Duration::from_secs(3600),
        max_queued_frames: 100_000,
        max_queued_bytes,
        max_frame_bytes: 4 * 1024 * 1024,
    }
}

/// A data listener that accepts connections and never reads them.
async fn stuck_listener() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a listener");
    let addr = listener.local_addr().expect("its address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<TransportEvent>) -> TransportEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("events open")
}

#[tokio::test]
async fn a_peer_that_never_reads_is_dropped_and_publishing_goes_on() {
    const MAX_BYTES: usize = 4 * 1024 * 1024;
    let transport = ClusterTransport::start(config(MAX_BYTES))
        .await
        .expect("a transport");
    let mut events = transport.events().expect("the events");
    let (addr, _listener) = stuck_listener().await;
    transport.shared.seen("stuck", 0, addr);
    assert!(
        matches!(next_event(&mut events).await, TransportEvent::NodeJoined(id) if id == "stuck")
    );

    // The queue, the socket's buffers and the peer's unread buffer fill; then the peer goes.
    let frame = Bytes::from(vec![7u8; 1024 * 1024]);
    let mut publishes = 0;
    while transport.live_nodes().contains(&"stuck".to_owned()) {
        assert!(
            publishes < 1000,
            "the stuck peer is still a peer after {publishes} MB"
        );
        transport
            .publish(frame.clone())
            .await
            .expect("a publish never fails for a stuck peer");
        publishes += 1;
        tokio::task::yield_now().await;
    }
    assert!(matches!(next_event(&mut events).await, TransportEvent::NodeLeft(id) if id == "stuck"));
    transport
        .publish(frame.clone())
        .await
        .expect("publishing goes on without it");

    // Its hellos are ignored for a while, then it may join again.
    transport.shared.seen("stuck", 0, addr);
    assert!(
        transport.live_nodes().is_empty(),
        "a benched peer's hello is ignored"
    );
    transport.shared.benched.lock().clear();
    transport.shared.seen("stuck", 0, addr);
    assert_eq!(transport.live_nodes(), vec!["stuck".to_owned()]);
}

#[tokio::test]
async fn a_queue_is_bounded_in_bytes_but_takes_one_large_frame() {
    let (frames, _rx) = mpsc::channel(10);
    let queue = PeerQueue {
        frames,
        bytes: Arc::default(),
        max_bytes: 100,
    };
    assert_eq!(
        queue.offer(Bytes::from(vec![0; 150])),
        Ok(()),
        "alone over the limit"
    );
    assert_eq!(queue.offer(Bytes::from(vec![0; 1])), Err(Refused::Full));
    queue.bytes.store(0, Ordering::Release);
    assert_eq!(queue.offer(Bytes::from(vec![0; 60])), Ok(()));
    assert_eq!(queue.offer(Bytes::from(vec![0; 40])), Ok(()));
    assert_eq!(queue.offer(Bytes::from(vec![0; 1])), Err(Refused::Full));
    assert_eq!(
        queue.bytes.load(Ordering::Acquire),
        100,
        "a refused frame is not counted"
    );
}

#[test]
fn a_peer_that_stalls_again_is_ignored_longer() {
    let check = |node_timeout_ms: u64, strikes: u32, expected_ms: u64| {
        assert_eq!(
            bench_time(Duration::from_millis(node_timeout_ms), strikes),
            Duration::from_millis(expected_ms),
            "node timeout {node_timeout_ms} ms, strike {strikes}"
        );
    };
    check(2_000, 1, 2_000);
    check(2_000, 2, 4_000);
    check(2_000, 3, 8_000);
    check(2_000, 6, 60_000);
    check(2_000, 40, 60_000);
    check(100, 1, 1_000);
}

#[tokio::test]
async fn bytes_sent_to_a_reading_peer_leave_its_count() {
    let transport = ClusterTransport::start(config(2 * 1024 * 1024))
        .await
        .expect("a transport");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a listener");
    let addr = listener.local_addr().expect("its address");
    let _reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("a connection");
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut stream, &mut sink).await;
    });
    transport.shared.seen("reader", 0, addr);
    // Ten times the byte limit goes through a peer that reads.
    for _ in 0..100 {
        transport
            .publish(Bytes::from(vec![1u8; 100 * 1024]))
            .await
            .expect("a publish");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let queue = transport.queue("reader").expect("still a peer");
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.bytes.load(Ordering::Acquire) > 0 {
        assert!(Instant::now() < deadline, "the count never went back to 0");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

mod hello {
    use std::net::SocketAddr;

    use proptest::prelude::*;
    use prost::Message as _;

    use crate::discovery::{Heard, read_hello};
    use crate::proto::{self, Hello};

    proptest! {
        #[test]
        fn every_hello_a_node_sends_reads_back(
            node_id in "[a-z0-9-]{1,40}",
            started_at_ms in any::<u64>(),
            data_port in any::<u16>(),
            advertised in proptest::option::of(any::<[u8; 4]>()),
            leaving in any::<bool>(),
        ) {
            let from: SocketAddr = "10.1.2.3:6001".parse().unwrap();
            let hello = Hello {
                version: proto::VERSION,
                prefix: "fleet".into(),
                node_id: node_id.clone(),
                started_at_ms,
                data_port: u32::from(data_port),
                data_host: advertised.map(|ip| std::net::Ipv4Addr::from(ip).to_string()).unwrap_or_default(),
                leaving,
            };
            let heard = read_hello(&hello.encode_to_vec(), from, "fleet", "me");
            let expected = if leaving {
                Heard::Goodbye { node_id }
            } else {
                let host = advertised.map_or(from.ip(), |ip| std::net::Ipv4Addr::from(ip).into());
                Heard::Hello { node_id, started_at_ms, data_addr: SocketAddr::new(host, data_port) }
            };
            prop_assert_eq!(heard, expected);
            // The same hello is another cluster's to a node of another prefix.
            let foreign = read_hello(&hello.encode_to_vec(), from, "other", "me");
            prop_assert!(matches!(foreign, Heard::Foreign { version: 1, .. }), "{:?}", foreign);
        }
    }

    #[test]
    fn hellos_to_ignore() {
        let from: SocketAddr = "10.1.2.3:6001".parse().unwrap();
        let mine = Hello {
            version: proto::VERSION,
            prefix: "fleet".into(),
            node_id: "me".into(),
            data_port: 4000,
            ..Hello::default()
        };
        assert_eq!(
            read_hello(&mine.encode_to_vec(), from, "fleet", "me"),
            Heard::Nothing
        );
        let port_too_big = Hello {
            node_id: "other".into(),
            data_port: 70_000,
            ..mine.clone()
        };
        assert_eq!(
            read_hello(&port_too_big.encode_to_vec(), from, "fleet", "me"),
            Heard::Nothing
        );
        assert_eq!(
            read_hello(b"\xff\xff\xff", from, "fleet", "me"),
            Heard::Garbage
        );
    }
}
