//! The Redis transport against a real redis-server on a free port: nodes meet and carry
//! messages with their sender, frames on the wire name their kind and sender, a megabyte
//! crosses, prefixes keep fleets apart, a Redis that refuses the node stops start-up while an
//! absent one only delays it, a Redis restart is survived, and soketi's channels are watched
//! until soketi 1.x is heard there.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use soketi_adapter_core::membership::{Frame, Kind};
use soketi_adapter_core::{Transport, TransportEvent};
use soketi_adapter_redis::{RedisTransport, RedisTransportConfig, RedisTransportError};
use support::{
    DEADLINE, MAX_RECONNECT_DELAY, RECONNECT_MARGIN, Redis, free_port, next_event, next_message,
    poll, raw, redis_server,
};
use tokio::sync::mpsc::UnboundedReceiver;

const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// Long enough that a node leaving within a test's deadline can only have said goodbye.
const LONG_NODE_TIMEOUT: Duration = Duration::from_secs(60);

fn config(url: &str, prefix: &str, node_timeout: Duration) -> RedisTransportConfig {
    RedisTransportConfig {
        endpoint: soketi_adapter_redis::RedisEndpoint::from_url(url).expect("a Redis URL"),
        prefix: prefix.to_owned(),
        heartbeat_interval: HEARTBEAT_INTERVAL,
        node_timeout,
        max_buffered: 1000,
    }
}

/// A started node and its events.
struct Node {
    transport: Arc<RedisTransport>,
    events: UnboundedReceiver<TransportEvent>,
}

impl Node {
    async fn start(url: &str, prefix: &str, node_timeout: Duration) -> Self {
        let transport = RedisTransport::start(config(url, prefix, node_timeout))
            .await
            .expect("the transport starts");
        let events = transport.events().expect("the first call gets the events");
        Self { transport, events }
    }

    fn id(&self) -> String {
        self.transport.node_id().to_owned()
    }
}

/// Waits until every node lists every other one.
async fn mesh(nodes: &mut [&mut Node]) {
    mesh_within(nodes, DEADLINE).await;
}

/// Waits until every node lists every other one, at most `within`.
async fn mesh_within(nodes: &mut [&mut Node], within: Duration) {
    let ids: Vec<String> = nodes.iter().map(|n| n.id()).collect();
    for node in nodes.iter_mut() {
        let me = node.id();
        let others: BTreeSet<String> = ids.iter().filter(|id| **id != me).cloned().collect();
        poll(
            &format!("node {me} to list exactly {others:?}"),
            within,
            || {
                let live: BTreeSet<String> = node.transport.live_nodes().into_iter().collect();
                let done = live == others;
                async move { done.then_some(()) }
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_meet_and_carry_messages_with_their_sender() {
    let Some(redis) = Redis::start("nodes_meet_and_carry_messages_with_their_sender", &[]) else {
        return;
    };
    let url = redis.url("", 0);
    let mut a = Node::start(&url, "meet", LONG_NODE_TIMEOUT).await;
    let mut b = Node::start(&url, "meet", LONG_NODE_TIMEOUT).await;
    let mut c = Node::start(&url, "meet", LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut a, &mut b, &mut c]).await;

    a.transport.publish("to all".into()).await.unwrap();
    for (label, node) in [("b", &mut b), ("c", &mut c)] {
        let got = next_message(&mut node.events, &format!("a's publish at {label}")).await;
        assert_eq!(got, (a.id(), b"to all".to_vec()), "at {label}");
    }

    // A message for b alone, then a publish: c's next message is the publish.
    a.transport.send_to(&b.id(), "for b".into()).await.unwrap();
    a.transport.publish("after".into()).await.unwrap();
    let at_b = (
        next_message(&mut b.events, "a's message for b").await,
        next_message(&mut b.events, "a's second publish at b").await,
    );
    assert_eq!(
        at_b,
        ((a.id(), b"for b".to_vec()), (a.id(), b"after".to_vec()))
    );
    let at_c = next_message(&mut c.events, "a's second publish at c").await;
    assert_eq!(
        at_c,
        (a.id(), b"after".to_vec()),
        "c never gets b's message"
    );

    // A node never hears its own messages: the first message a gets is b's.
    b.transport.publish("from b".into()).await.unwrap();
    let at_a = next_message(&mut a.events, "b's publish at a").await;
    assert_eq!(at_a, (b.id(), b"from b".to_vec()));

    // A goodbye removes c at once; the node timeout is a minute.
    let c_id = c.id();
    c.transport.leave().await.unwrap();
    for (label, node) in [("a", &mut a), ("b", &mut b)] {
        next_event(&mut node.events, &format!("c's goodbye at {label}"), |e| {
            *e == TransportEvent::NodeLeft(c_id.clone())
        })
        .await;
        assert_eq!(node.transport.live_nodes().len(), 1, "at {label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_on_the_wire_name_their_kind_and_sender() {
    let Some(redis) = Redis::start("frames_on_the_wire_name_their_kind_and_sender", &[]) else {
        return;
    };
    let url = redis.url("", 0);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut spy = client.get_async_pubsub().await.unwrap();
    spy.subscribe("wire#soketi-rs").await.unwrap();
    spy.psubscribe("wire#soketi-rs#*").await.unwrap();
    let mut wire = spy.into_on_message();

    // A node timeout of 1 s, so that a node heard once is dropped soon after.
    let node_timeout = Duration::from_secs(1);
    let mut a = Node::start(&url, "wire", node_timeout).await;
    let mut b = Node::start(&url, "wire", node_timeout).await;
    mesh(&mut [&mut a, &mut b]).await;

    let mut raw_conn = raw(&url).await;
    let channels: BTreeSet<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("wire*")
        .query_async(&mut raw_conn)
        .await
        .unwrap();
    let expected: BTreeSet<String> = [
        "wire#soketi-rs".to_owned(),
        format!("wire#soketi-rs#{}", a.id()),
        format!("wire#soketi-rs#{}", b.id()),
        "wire#redis-adapter".to_owned(),
        "wire#redis-adapter#comms#res".to_owned(),
    ]
    .into();
    assert_eq!(
        channels, expected,
        "the fleet's channel, one per node, and soketi's broadcasts and responses, watched"
    );

    a.transport.publish("published".into()).await.unwrap();
    a.transport.send_to(&b.id(), "sent".into()).await.unwrap();
    a.transport.leave().await.unwrap();

    // What a sent, in order, skipping the heartbeats of both nodes: each frame names a as its
    // sender and the channel it went to.
    let mut seen = Vec::new();
    let mut heartbeat_of_a = false;
    let collect = async {
        while let Some(msg) = wire.next().await {
            let bytes = msg.get_payload_bytes().to_vec();
            let frame = Frame::decode(&bytes).expect("a frame");
            if frame.node_id != a.id() {
                continue;
            }
            if frame.kind == Kind::Heartbeat {
                assert!(frame.payload.is_empty(), "a heartbeat carries nothing");
                heartbeat_of_a = true;
                continue;
            }
            let payload = String::from_utf8(frame.payload.to_vec()).unwrap();
            seen.push((msg.get_channel_name().to_owned(), frame.kind, payload));
            if frame.kind == Kind::Goodbye {
                return;
            }
        }
    };
    tokio::time::timeout(DEADLINE, collect)
        .await
        .expect("a's goodbye on the wire");
    assert!(heartbeat_of_a, "a's heartbeats are on the fleet channel");
    assert_eq!(
        seen,
        [
            (
                "wire#soketi-rs".to_owned(),
                Kind::Message,
                "published".to_owned()
            ),
            (
                format!("wire#soketi-rs#{}", b.id()),
                Kind::Message,
                "sent".to_owned()
            ),
            ("wire#soketi-rs".to_owned(), Kind::Goodbye, String::new()),
        ]
    );

    // Bytes that are not a frame are dropped; a frame from another program counts as a node
    // with its own id, and one heard once is gone after the node timeout.
    for garbage in [&b""[..], &[9, 0][..], &[0, 200, b'x'][..]] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("wire#soketi-rs")
            .arg(garbage)
            .query_async(&mut raw_conn)
            .await
            .unwrap();
    }
    let outsider = Frame::encode(Kind::Message, "outsider", b"from outside");
    let _: i64 = redis::cmd("PUBLISH")
        .arg("wire#soketi-rs")
        .arg(&outsider[..])
        .query_async(&mut raw_conn)
        .await
        .unwrap();
    next_event(&mut b.events, "the outsider joining", |e| {
        *e == TransportEvent::NodeJoined("outsider".into())
    })
    .await;
    let got = next_message(&mut b.events, "the outsider's message").await;
    assert_eq!(got, ("outsider".to_owned(), b"from outside".to_vec()));
    next_event(&mut b.events, "the silent outsider leaving", |e| {
        *e == TransportEvent::NodeLeft("outsider".into())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_beyond_64_kib_cross_intact() {
    let Some(redis) = Redis::start("messages_beyond_64_kib_cross_intact", &[]) else {
        return;
    };
    let url = redis.url("", 0);
    let mut a = Node::start(&url, "big", LONG_NODE_TIMEOUT).await;
    let mut b = Node::start(&url, "big", LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut a, &mut b]).await;

    for len in [64 * 1024 + 1, 1024 * 1024, 4 * 1024 * 1024] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        a.transport.publish(payload.clone().into()).await.unwrap();
        let (from, got) = next_message(&mut b.events, &format!("{len} bytes")).await;
        assert_eq!(from, a.id());
        assert!(got == payload, "{len} bytes arrive intact");
        b.transport
            .send_to(&a.id(), payload.clone().into())
            .await
            .unwrap();
        let (from, got) = next_message(&mut a.events, &format!("{len} bytes back")).await;
        assert_eq!(from, b.id());
        assert!(got == payload, "{len} bytes arrive intact at one node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_fleets_apart() {
    let Some(redis) = Redis::start("prefixes_keep_fleets_apart", &[]) else {
        return;
    };
    let url = redis.url("", 0);
    let mut x1 = Node::start(&url, "x", LONG_NODE_TIMEOUT).await;
    let mut x2 = Node::start(&url, "x", LONG_NODE_TIMEOUT).await;
    let mut y1 = Node::start(&url, "y", LONG_NODE_TIMEOUT).await;
    let mut y2 = Node::start(&url, "y", LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut x1, &mut x2]).await;
    mesh(&mut [&mut y1, &mut y2]).await;

    let mut raw_conn = raw(&url).await;
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("x#soketi-rs")
        .arg("y#soketi-rs")
        .query_async(&mut raw_conn)
        .await
        .unwrap();
    assert_eq!(
        counts,
        [("x#soketi-rs".into(), 2), ("y#soketi-rs".into(), 2)]
    );

    // x1's publish reaches x2; y1's first message is y2's sentinel, sent after it.
    x1.transport.publish("x only".into()).await.unwrap();
    let got = next_message(&mut x2.events, "x1's publish at x2").await;
    assert_eq!(got, (x1.id(), b"x only".to_vec()));
    y2.transport.publish("y sentinel".into()).await.unwrap();
    let got = next_message(&mut y1.events, "y2's sentinel at y1").await;
    assert_eq!(got, (y2.id(), b"y sentinel".to_vec()));
    // And y2's sentinel never reached fleet x: x2's next message is x1's second publish.
    x1.transport.publish("x sentinel".into()).await.unwrap();
    let got = next_message(&mut x2.events, "x1's sentinel at x2").await;
    assert_eq!(got, (x1.id(), b"x sentinel".to_vec()));
    assert_eq!(x1.transport.live_nodes(), [x2.id()]);
    assert_eq!(y1.transport.live_nodes(), [y2.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_refuses_the_node_stops_start_up() {
    let test = "a_redis_that_refuses_the_node_stops_start_up";
    // The default user needs a password; `limited` may not use the channels of prefix "p".
    let Some(redis) = Redis::start(
        test,
        &[
            "--requirepass",
            "right-password",
            "--user",
            "limited",
            "on",
            ">limited-password",
            "~*",
            "&other#*",
            "+@all",
        ],
    ) else {
        return;
    };
    let refused = [
        (redis.url(":wrong-password@", 0), "a wrong password"),
        (redis.url("", 0), "no password"),
        (
            redis.url(":right-password@", 99),
            "a database it does not have",
        ),
        (
            redis.url("limited:limited-password@", 0),
            "an ACL without the fleet's channels",
        ),
        (redis.url("nobody:right-password@", 0), "an unknown user"),
    ];
    for (url, why) in refused {
        let started = tokio::time::timeout(
            DEADLINE,
            RedisTransport::start(config(&url, "p", LONG_NODE_TIMEOUT)),
        )
        .await
        .unwrap_or_else(|_| panic!("start-up with {why} ends within {DEADLINE:?}"));
        match started {
            Err(e @ RedisTransportError::Refused { .. }) => {
                let message = e.to_string();
                assert!(message.contains("refused"), "{why}: {message}");
                assert!(
                    !message.contains("right-password") && !message.contains("wrong-password"),
                    "{why}: the message masks the password: {message}"
                );
            }
            Err(e) => panic!("{why}: another error: {e}"),
            Ok(_) => panic!("{why}: the transport started"),
        }
    }

    // The right password and a database other than 0 are accepted, and work.
    let url = redis.url(":right-password@", 5);
    let mut a = Node::start(&url, "p", LONG_NODE_TIMEOUT).await;
    let mut b = Node::start(&url, "p", LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut a, &mut b]).await;
    a.transport.publish("with a password".into()).await.unwrap();
    let got = next_message(&mut b.events, "a's publish").await;
    assert_eq!(got, (a.id(), b"with a password".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_absent_at_start_up_only_delays_the_fleet() {
    let test = "a_redis_that_is_absent_at_start_up_only_delays_the_fleet";
    if redis_server(test).is_none() {
        return;
    }
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    // Nothing listens: start-up logs and goes on (a refused connection fails at once).
    let started = tokio::time::timeout(DEADLINE, async {
        let a = Node::start(&url, "late", LONG_NODE_TIMEOUT).await;
        let b = Node::start(&url, "late", LONG_NODE_TIMEOUT).await;
        (a, b)
    })
    .await;
    let (mut a, mut b) = started.expect("start-up without Redis ends");

    let Some(_redis) = Redis::start_on(test, port, &[]) else {
        return;
    };
    // Each node's next attempt comes within the longest backoff.
    mesh_within(
        &mut [&mut a, &mut b],
        MAX_RECONNECT_DELAY + RECONNECT_MARGIN,
    )
    .await;
    b.transport.publish("now".into()).await.unwrap();
    let got = next_message(&mut a.events, "b's publish").await;
    assert_eq!(got, (b.id(), b"now".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_again_after_a_redis_restart() {
    let Some(mut redis) = Redis::start("nodes_talk_again_after_a_redis_restart", &[]) else {
        return;
    };
    let url = redis.url("", 0);
    let mut a = Node::start(&url, "restart", LONG_NODE_TIMEOUT).await;
    let mut b = Node::start(&url, "restart", LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut a, &mut b]).await;
    a.transport.publish("before".into()).await.unwrap();
    assert_eq!(
        next_message(&mut b.events, "a's publish before the restart").await,
        (a.id(), b"before".to_vec())
    );

    redis.restart();
    let restarted = tokio::time::Instant::now();

    // Each subscriber's next attempt comes within the longest backoff; until both are back,
    // a publish may go to nobody, as pub/sub keeps nothing.
    let within = MAX_RECONNECT_DELAY + RECONNECT_MARGIN;
    let raw_conn = raw(&url).await;
    poll("both nodes to subscribe again", within, || {
        let mut conn = raw_conn.clone();
        async move {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("restart#soketi-rs")
                .query_async(&mut conn)
                .await
                .ok()?;
            (counts == [("restart#soketi-rs".to_owned(), 2)]).then_some(())
        }
    })
    .await;
    let resubscribed = restarted.elapsed();

    a.transport.publish("after".into()).await.unwrap();
    assert_eq!(
        next_message(&mut b.events, "a's publish after the restart").await,
        (a.id(), b"after".to_vec())
    );
    b.transport.send_to(&a.id(), "back".into()).await.unwrap();
    assert_eq!(
        next_message(&mut a.events, "b's message after the restart").await,
        (b.id(), b"back".to_vec())
    );
    eprintln!("both nodes subscribed again {resubscribed:?} after the restart");
}

/// The subscriber counts of soketi's three channels for `prefix`.
async fn soketi_subscribers(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Vec<i64> {
    let names = soketi_adapter_redis::SoketiChannels::new(prefix);
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&names.broadcast)
        .arg(&names.requests)
        .arg(&names.responses)
        .query_async(conn)
        .await
        .unwrap();
    counts.into_iter().map(|(_, n)| n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soketis_channels_are_watched_until_soketi_is_heard() {
    let Some(redis) = Redis::start("soketis_channels_are_watched_until_soketi_is_heard", &[])
    else {
        return;
    };
    let url = redis.url("", 0);
    let mut a = Node::start(&url, "mixed", LONG_NODE_TIMEOUT).await;
    let mut b = Node::start(&url, "mixed", LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut a, &mut b]).await;
    let mut conn = raw(&url).await;
    // Not soketi's requests: soketi counts their subscribers as the nodes that will answer.
    assert_eq!(soketi_subscribers(&mut conn, "mixed").await, [2, 0, 2]);

    // A frame of an earlier build on soketi's channel is not taken for a member of this fleet,
    // and the channels stay watched.
    let earlier = Frame::encode(Kind::Message, "earlier-node", b"from an earlier build");
    let _: i64 = redis::cmd("PUBLISH")
        .arg("mixed#redis-adapter")
        .arg(&earlier[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    // soketi's JSON (the answer to a SOCKETS_COUNT request, as soketi 1.x sends one) makes both
    // nodes leave soketi's channels.
    let response = r#"{"requestId":"5b0b7c1e","appId":"app-id","totalCount":3}"#;
    let _: i64 = redis::cmd("PUBLISH")
        .arg("mixed#redis-adapter#comms#res")
        .arg(response)
        .query_async(&mut conn)
        .await
        .unwrap();
    poll("both nodes to leave soketi's channels", DEADLINE, || {
        let mut conn = conn.clone();
        async move { (soketi_subscribers(&mut conn, "mixed").await == [0, 0, 0]).then_some(()) }
    })
    .await;

    // The fleet still carries messages, and never counted the earlier build's node.
    a.transport.publish("after soketi".into()).await.unwrap();
    let got = next_message(&mut b.events, "a's message after soketi was heard").await;
    assert_eq!(got, (a.id(), b"after soketi".to_vec()));
    assert_eq!(b.transport.live_nodes(), [a.id()]);
    assert_eq!(a.transport.live_nodes(), [b.id()]);
}
