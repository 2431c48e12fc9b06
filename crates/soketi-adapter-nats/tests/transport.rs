//! The NATS transport against a real nats-server on a free port: nodes meet and carry
//! messages with their sender, frames on the wire name their kind and sender, large messages
//! cross (and one beyond the server's limit is an error, not a silent loss), prefixes keep
//! fleets apart, servers that refuse the credentials stop start-up while an absent one only
//! delays it, and a nats-server restart is survived.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use soketi_adapter_core::membership::{Frame, Kind};
use soketi_adapter_core::{Transport, TransportEvent};
use soketi_adapter_nats::{NatsTransport, NatsTransportConfig};
use support::{
    DEADLINE, MAX_RECONNECT_DELAY, Nats, RECONNECT_MARGIN, free_port, nats_server, next_event,
    next_message, poll,
};
use tokio::sync::mpsc::UnboundedReceiver;

const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// Long enough that a node leaving within a test's deadline can only have said goodbye.
const LONG_NODE_TIMEOUT: Duration = Duration::from_secs(60);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Credentials of a node.
#[derive(Clone, Default)]
struct Auth {
    user_password: Option<(String, String)>,
    token: Option<String>,
}

fn config(server: &str, prefix: &str, auth: &Auth, node_timeout: Duration) -> NatsTransportConfig {
    NatsTransportConfig {
        servers: vec![server.to_owned()],
        user_password: auth.user_password.clone(),
        token: auth.token.clone(),
        prefix: prefix.to_owned(),
        connect_timeout: CONNECT_TIMEOUT,
        heartbeat_interval: HEARTBEAT_INTERVAL,
        node_timeout,
    }
}

/// A started node and its events.
struct Node {
    transport: Arc<NatsTransport>,
    events: UnboundedReceiver<TransportEvent>,
}

impl Node {
    async fn start(server: &str, prefix: &str, auth: &Auth, node_timeout: Duration) -> Self {
        let transport = NatsTransport::start(config(server, prefix, auth, node_timeout))
            .await
            .expect("the transport starts");
        let events = transport.events().expect("the first call gets the events");
        Self { transport, events }
    }

    fn id(&self) -> String {
        self.transport.node_id().to_owned()
    }
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

async fn mesh(nodes: &mut [&mut Node]) {
    mesh_within(nodes, DEADLINE).await;
}

/// Publishes numbered probes from `from` until `to` hears one, at most `within`, and returns
/// how long that took. Until both have subscribed again after an outage, a publish may reach
/// nobody: NATS keeps nothing for absent subscribers.
async fn until_heard(from: &Node, to: &mut Node, within: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    let deadline = started + within;
    let mut sent = 0u32;
    loop {
        sent += 1;
        // A publish while the client reconnects is buffered by it, or fails: either is fine.
        let _ = from
            .transport
            .publish(format!("probe {sent}").into_bytes().into())
            .await;
        let wait = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(event)) =
            tokio::time::timeout_at(wait.min(deadline), to.events.recv()).await
        {
            if let TransportEvent::Message {
                from: sender,
                payload,
            } = event
                && sender == from.id()
                && payload.starts_with(b"probe ")
            {
                return started.elapsed();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "none of {sent} probes from {} reached {} within {within:?}",
            from.id(),
            to.id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_meet_and_carry_messages_with_their_sender() {
    let Some(nats) = Nats::start("nodes_meet_and_carry_messages_with_their_sender", &[]) else {
        return;
    };
    let server = nats.address();
    let auth = Auth::default();
    let mut a = Node::start(&server, "meet.", &auth, LONG_NODE_TIMEOUT).await;
    let mut b = Node::start(&server, "meet.", &auth, LONG_NODE_TIMEOUT).await;
    let mut c = Node::start(&server, "meet.", &auth, LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut a, &mut b, &mut c]).await;

    a.transport.publish("to all".into()).await.unwrap();
    for (label, node) in [("b", &mut b), ("c", &mut c)] {
        let got = next_message(&mut node.events, &format!("a's publish at {label}")).await;
        assert_eq!(got, (a.id(), b"to all".to_vec()), "at {label}");
    }

    // A message for b alone, then a publish: c's next message is the publish. The two reach b
    // on two subscriptions, each read by its own task, so their order at b is not kept.
    a.transport.send_to(&b.id(), "for b".into()).await.unwrap();
    a.transport.publish("after".into()).await.unwrap();
    let at_b: BTreeSet<_> = [
        next_message(&mut b.events, "a's message for b").await,
        next_message(&mut b.events, "a's second publish at b").await,
    ]
    .into();
    assert_eq!(
        at_b,
        [(a.id(), b"for b".to_vec()), (a.id(), b"after".to_vec())].into()
    );
    let at_c = next_message(&mut c.events, "a's second publish at c").await;
    assert_eq!(
        at_c,
        (a.id(), b"after".to_vec()),
        "c never gets b's message"
    );

    // NATS echoes a client's own messages; a node ignores them: the first message a gets is b's.
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
    let Some(nats) = Nats::start("frames_on_the_wire_name_their_kind_and_sender", &[]) else {
        return;
    };
    let server = nats.address();
    let spy = async_nats::connect(server.as_str()).await.unwrap();
    let mut fleet_subject = spy.subscribe("wire.soketi.nats-adapter").await.unwrap();
    let mut node_subjects = spy.subscribe("wire.soketi.nats-adapter.>").await.unwrap();
    spy.flush().await.unwrap();

    let auth = Auth::default();
    // A node timeout of 1 s, so that a node heard once is dropped soon after.
    let node_timeout = Duration::from_secs(1);
    let mut a = Node::start(&server, "wire.", &auth, node_timeout).await;
    let mut b = Node::start(&server, "wire.", &auth, node_timeout).await;
    mesh(&mut [&mut a, &mut b]).await;

    a.transport.publish("published".into()).await.unwrap();
    a.transport.send_to(&b.id(), "sent".into()).await.unwrap();
    a.transport.leave().await.unwrap();

    // What a sent on the fleet subject, in order, skipping heartbeats: each frame names a.
    let mut seen = Vec::new();
    let mut heartbeat_of_a = false;
    let collect = async {
        while let Some(msg) = fleet_subject.next().await {
            let frame = Frame::decode(&msg.payload).expect("a frame");
            if frame.node_id != a.id() {
                continue;
            }
            if frame.kind == Kind::Heartbeat {
                assert!(frame.payload.is_empty(), "a heartbeat carries nothing");
                heartbeat_of_a = true;
                continue;
            }
            seen.push((
                frame.kind,
                String::from_utf8(frame.payload.to_vec()).unwrap(),
            ));
            if frame.kind == Kind::Goodbye {
                return;
            }
        }
    };
    tokio::time::timeout(DEADLINE, collect)
        .await
        .expect("a's goodbye on the wire");
    assert!(heartbeat_of_a, "a's heartbeats are on the fleet subject");
    assert_eq!(
        seen,
        [
            (Kind::Message, "published".to_owned()),
            (Kind::Goodbye, String::new())
        ]
    );
    let to_b = tokio::time::timeout(DEADLINE, node_subjects.next())
        .await
        .expect("a's message for b on the wire")
        .unwrap();
    assert_eq!(
        to_b.subject.as_str(),
        format!("wire.soketi.nats-adapter.{}", b.id())
    );
    let frame = Frame::decode(&to_b.payload).unwrap();
    assert_eq!(
        (frame.kind, frame.node_id, frame.payload),
        (Kind::Message, a.id().as_str(), &b"sent"[..])
    );

    // Bytes that are not a frame are dropped; a frame from another program counts as a node
    // with its own id, and one heard once is gone after the node timeout.
    for garbage in [&b""[..], &[9, 0][..], &[0, 200, b'x'][..]] {
        spy.publish("wire.soketi.nats-adapter", garbage.to_vec().into())
            .await
            .unwrap();
    }
    let outsider = Frame::encode(Kind::Message, "outsider", b"from outside");
    spy.publish("wire.soketi.nats-adapter", outsider)
        .await
        .unwrap();
    spy.flush().await.unwrap();
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
async fn large_messages_cross_and_one_beyond_the_server_limit_is_an_error() {
    let Some(nats) = Nats::start(
        "large_messages_cross_and_one_beyond_the_server_limit_is_an_error",
        &[],
    ) else {
        return;
    };
    let server = nats.address();
    let auth = Auth::default();
    let mut a = Node::start(&server, "big.", &auth, LONG_NODE_TIMEOUT).await;
    let mut b = Node::start(&server, "big.", &auth, LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut a, &mut b]).await;

    // nats-server's max_payload is 1 MiB by default, the frame's header included.
    for len in [64 * 1024 + 1, 512 * 1024, 1024 * 1024 - 1024] {
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

    let too_big = vec![0u8; 2 * 1024 * 1024];
    let refused = a.transport.publish(too_big.into()).await;
    assert!(refused.is_err(), "2 MiB is beyond the server's max_payload");
    a.transport.publish("still here".into()).await.unwrap();
    let got = next_message(&mut b.events, "the next message").await;
    assert_eq!(
        got,
        (a.id(), b"still here".to_vec()),
        "the connection survives"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_fleets_apart() {
    let Some(nats) = Nats::start("prefixes_keep_fleets_apart", &[]) else {
        return;
    };
    let server = nats.address();
    let auth = Auth::default();
    let mut x1 = Node::start(&server, "x.", &auth, LONG_NODE_TIMEOUT).await;
    let mut x2 = Node::start(&server, "x.", &auth, LONG_NODE_TIMEOUT).await;
    let mut y1 = Node::start(&server, "y.", &auth, LONG_NODE_TIMEOUT).await;
    let mut y2 = Node::start(&server, "y.", &auth, LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut x1, &mut x2]).await;
    mesh(&mut [&mut y1, &mut y2]).await;

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

/// Starts a transport that must be refused, and returns the error's message.
async fn refused(server: &str, auth: &Auth, why: &str) -> String {
    let started = tokio::time::timeout(
        DEADLINE,
        NatsTransport::start(config(server, "auth.", auth, LONG_NODE_TIMEOUT)),
    )
    .await
    .unwrap_or_else(|_| panic!("start-up with {why} ends within {DEADLINE:?}"));
    match started {
        Ok(_) => panic!("{why}: the transport started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_used_and_refused_ones_stop_start_up() {
    let test = "credentials_are_used_and_refused_ones_stop_start_up";
    let Some(with_user) = Nats::start(test, &["--user", "soketi", "--pass", "right-password"])
    else {
        return;
    };
    let Some(with_token) = Nats::start(test, &["--auth", "right-token"]) else {
        return;
    };
    let user = |password: &str| Auth {
        user_password: Some(("soketi".into(), password.into())),
        token: None,
    };
    let token = |token: &str| Auth {
        user_password: None,
        token: Some(token.into()),
    };

    for (server, auth, why) in [
        (
            with_user.address(),
            user("wrong-password"),
            "a wrong password",
        ),
        (with_user.address(), Auth::default(), "no credentials"),
        (with_token.address(), token("wrong-token"), "a wrong token"),
        (with_token.address(), Auth::default(), "no token"),
    ] {
        let message = refused(&server, &auth, why).await;
        assert!(
            message.contains("authorization violation") && message.contains(&server),
            "{why}: {message}"
        );
        assert!(
            !message.contains("wrong-password") && !message.contains("wrong-token"),
            "{why}: the message shows no secret: {message}"
        );
    }

    for (server, auth, what) in [
        (
            with_user.address(),
            user("right-password"),
            "user and password",
        ),
        (with_token.address(), token("right-token"), "token"),
    ] {
        let mut a = Node::start(&server, "auth.", &auth, LONG_NODE_TIMEOUT).await;
        let mut b = Node::start(&server, "auth.", &auth, LONG_NODE_TIMEOUT).await;
        mesh(&mut [&mut a, &mut b]).await;
        a.transport
            .publish(what.as_bytes().to_vec().into())
            .await
            .unwrap();
        let got = next_message(&mut b.events, &format!("a's publish with a {what}")).await;
        assert_eq!(got, (a.id(), what.as_bytes().to_vec()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_that_is_absent_at_start_up_only_delays_the_fleet() {
    let test = "a_nats_that_is_absent_at_start_up_only_delays_the_fleet";
    if nats_server(test).is_none() {
        return;
    }
    let port = free_port();
    let server = format!("127.0.0.1:{port}");
    let auth = Auth::default();
    // Nothing listens: a refused connection fails at once, and start-up goes on.
    let started = tokio::time::timeout(DEADLINE, async {
        let a = Node::start(&server, "late.", &auth, LONG_NODE_TIMEOUT).await;
        let b = Node::start(&server, "late.", &auth, LONG_NODE_TIMEOUT).await;
        (a, b)
    })
    .await;
    let (mut a, mut b) = started.expect("start-up without NATS ends");

    let Some(_nats) = Nats::start_on(test, port, &[]) else {
        return;
    };
    // Each client's next attempt comes within the longest reconnect delay.
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
async fn nodes_talk_again_after_a_nats_restart() {
    let Some(mut nats) = Nats::start("nodes_talk_again_after_a_nats_restart", &[]) else {
        return;
    };
    let server = nats.address();
    let auth = Auth::default();
    let mut a = Node::start(&server, "restart.", &auth, LONG_NODE_TIMEOUT).await;
    let mut b = Node::start(&server, "restart.", &auth, LONG_NODE_TIMEOUT).await;
    mesh(&mut [&mut a, &mut b]).await;
    a.transport.publish("before".into()).await.unwrap();
    assert_eq!(
        next_message(&mut b.events, "a's publish before the restart").await,
        (a.id(), b"before".to_vec())
    );

    nats.restart();
    let within = MAX_RECONNECT_DELAY + RECONNECT_MARGIN;
    let a_to_b = until_heard(&a, &mut b, within).await;
    let b_to_a = until_heard(&b, &mut a, within).await;
    eprintln!("after the restart, a reached b in {a_to_b:?}, then b reached a in {b_to_a:?}");
    b.transport.send_to(&a.id(), "back".into()).await.unwrap();
    assert_eq!(
        next_message(&mut a.events, "b's message for a after the restart").await,
        (b.id(), b"back".to_vec())
    );
    // Unheard during the outage, not silent: nobody was declared gone.
    assert_eq!(a.transport.live_nodes(), [b.id()]);
    assert_eq!(b.transport.live_nodes(), [a.id()]);
}
