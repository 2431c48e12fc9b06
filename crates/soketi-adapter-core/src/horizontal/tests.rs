use std::sync::Mutex as StdMutex;

use soketi_channels::Outbox;
use soketi_protocol::CloseCode;

use super::*;
use crate::transport::MemoryHub;

struct Recorder {
    id: SocketId,
    frames: StdMutex<Vec<String>>,
    closed: StdMutex<Option<u16>>,
}

impl Outbox for Recorder {
    fn socket_id(&self) -> &SocketId {
        &self.id
    }
    fn send(&self, frame: Bytes) {
        // Strip the WebSocket header: frames here are short text frames.
        let text = String::from_utf8_lossy(&frame[2..]).into_owned();
        self.frames.lock().unwrap().push(text);
    }
    fn close(&self, code: CloseCode, _reason: &str) {
        *self.closed.lock().unwrap() = Some(code.0);
    }
}

fn recorder(n: u64) -> Arc<Recorder> {
    Arc::new(Recorder {
        id: SocketId::from_parts(n, n),
        frames: StdMutex::default(),
        closed: StdMutex::default(),
    })
}

fn node(hub: &MemoryHub, id: &str) -> Arc<HorizontalAdapter> {
    let local = LocalAdapter::new(
        Arc::new(Registry::new()),
        Arc::new(crate::MemoryCache::new()),
        Duration::from_secs(60),
    );
    HorizontalAdapter::start(local, hub.join(id), Duration::from_millis(500))
}

fn member(user: &str) -> PresenceMember {
    PresenceMember::from_channel_data(&format!(r#"{{"user_id":"{user}","user_info":{{"n":1}}}}"#))
        .unwrap()
}

/// Waits until `check` holds, for at most two seconds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn publish_reaches_every_node_except_the_excluded_socket() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    let (ra, rb, rb2) = (recorder(1), recorder(2), recorder(3));
    a.local().app("app").subscribe("ch", ra.clone());
    b.local().app("app").subscribe("ch", rb.clone());
    b.local().app("app").subscribe("ch", rb2.clone());
    a.publish("app", "ch", Bytes::from_static(b"{}"), Some(&rb2.id))
        .await
        .unwrap();
    eventually("delivery on b", || rb.frames.lock().unwrap().len() == 1).await;
    assert_eq!(ra.frames.lock().unwrap().len(), 1);
    assert!(rb2.frames.lock().unwrap().is_empty());

    let big = "x".repeat(200 * 1024);
    a.publish("app", "ch", Bytes::from(big.clone()), None)
        .await
        .unwrap();
    eventually("the large frame on b", || {
        rb.frames.lock().unwrap().len() == 2
    })
    .await;
}

#[tokio::test]
async fn users_are_reached_and_terminated_on_every_node() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    let (ua, ub) = (recorder(1), recorder(2));
    a.local().app("app").add_user("u", ua.clone());
    b.local().app("app").add_user("u", ub.clone());
    a.send_to_user("app", "u", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    eventually("user event on b", || ub.frames.lock().unwrap().len() == 1).await;
    b.terminate_user_connections("app", "u").await.unwrap();
    eventually("terminate on a", || {
        *ua.closed.lock().unwrap() == Some(4009)
    })
    .await;
    assert_eq!(*ub.closed.lock().unwrap(), Some(4009));
}

#[tokio::test]
async fn queries_merge_every_node() {
    let hub = MemoryHub::new();
    let (a, b, c) = (node(&hub, "a"), node(&hub, "b"), node(&hub, "c"));
    a.local().app("app").subscribe("x", recorder(1));
    b.local().app("app").subscribe("x", recorder(2));
    c.local().app("app").subscribe("y", recorder(3));
    for n in [&a, &b, &c] {
        n.local().app("app").add_connection(None).unwrap();
    }
    let mut channels = a.channels("app").await.unwrap();
    channels.sort_by(|l, r| l.0.cmp(&r.0));
    let counts: Vec<(String, u64)> = channels
        .into_iter()
        .map(|(n, c)| (n, c.subscription_count))
        .collect();
    assert_eq!(counts, [("x".to_owned(), 2), ("y".to_owned(), 1)]);
    assert_eq!(
        b.channel_counts("app", "x")
            .await
            .unwrap()
            .subscription_count,
        2
    );
    assert_eq!(c.socket_count("app").await.unwrap(), 3);
}

#[tokio::test]
async fn presence_is_announced_once_for_the_fleet() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    let m = member("u");
    assert!(
        a.presence_joined("app", "presence-r", &m).await.unwrap(),
        "first anywhere"
    );
    a.local()
        .app("app")
        .join_presence("presence-r", recorder(1), m.clone(), 100)
        .unwrap();
    eventually("b's replica", || {
        b.replica.lock().has("app", "presence-r", "u")
    })
    .await;
    assert!(
        !b.presence_joined("app", "presence-r", &m).await.unwrap(),
        "the user is already on a"
    );
    let members = b.presence_members("app", "presence-r").await.unwrap();
    assert_eq!(members.len(), 1, "merged by user id");
    assert_eq!(
        b.channel_counts("app", "presence-r")
            .await
            .unwrap()
            .user_count,
        Some(1)
    );

    // The user leaves a: b still has it, so the fleet keeps the user.
    eventually("a's replica", || {
        a.replica.lock().has("app", "presence-r", "u")
    })
    .await;
    assert!(!a.presence_left("app", "presence-r", "u").await.unwrap());
}

#[tokio::test]
async fn a_dead_node_takes_its_members_and_the_survivors_say_so() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    let watcher = recorder(9);
    a.local()
        .app("app")
        .join_presence("presence-r", watcher.clone(), member("w"), 100)
        .unwrap();
    let m = member("gone");
    b.local()
        .app("app")
        .join_presence("presence-r", recorder(2), m.clone(), 100)
        .unwrap();
    b.presence_joined("app", "presence-r", &m).await.unwrap();
    eventually("a's replica", || {
        a.replica.lock().has("app", "presence-r", "gone")
    })
    .await;
    hub.kill("b");
    eventually("member_removed on a", || {
        watcher
            .frames
            .lock()
            .unwrap()
            .iter()
            .any(|f| f.contains("member_removed") && f.contains("gone"))
    })
    .await;
    assert_eq!(
        a.presence_members("app", "presence-r").await.unwrap().len(),
        1
    );
}

/// Records the departures an adapter reports.
#[derive(Default)]
struct Departures(StdMutex<Vec<Departure>>);

impl DepartureSink for Departures {
    fn departed(&self, departures: Vec<Departure>) {
        self.0.lock().unwrap().extend(departures);
    }
}

#[tokio::test]
async fn one_survivor_reports_what_a_dead_node_took_with_it() {
    let hub = MemoryHub::new();
    let (a, b, c) = (node(&hub, "a"), node(&hub, "b"), node(&hub, "c"));
    let (seen_a, seen_b) = (
        Arc::new(Departures::default()),
        Arc::new(Departures::default()),
    );
    a.set_departure_sink(seen_a.clone());
    b.set_departure_sink(seen_b.clone());
    // c holds a presence user of its own, a channel alone, and a channel b holds too.
    let m = member("gone");
    c.local()
        .app("app")
        .join_presence("presence-r", recorder(1), m.clone(), 100)
        .unwrap();
    c.presence_joined("app", "presence-r", &m).await.unwrap();
    for channel in ["presence-r", "only-c", "shared"] {
        c.local().app("app").subscribe(channel, recorder(2));
        c.occupancy_changed("app", channel, true).await.unwrap();
    }
    b.local().app("app").subscribe("shared", recorder(3));
    b.occupancy_changed("app", "shared", true).await.unwrap();
    eventually("a and b to know what c holds", || {
        [&a, &b].iter().all(|n| {
            n.replica.lock().has("app", "presence-r", "gone")
                && n.occupied_elsewhere("app", "only-c")
                && n.occupied_elsewhere("app", "presence-r")
        }) && a.occupied_elsewhere("app", "shared")
    })
    .await;
    hub.kill("c");
    eventually("a's report", || seen_a.0.lock().unwrap().len() == 3).await;
    let mut reported = seen_a.0.lock().unwrap().clone();
    reported.sort_by_key(|d| format!("{d:?}"));
    let vacated = |channel: &str| Departure::Vacated {
        app_id: "app".into(),
        channel: channel.into(),
    };
    assert_eq!(
        reported,
        vec![
            Departure::MemberRemoved {
                app_id: "app".into(),
                channel: "presence-r".into(),
                user_id: "gone".into(),
            },
            vacated("only-c"),
            vacated("presence-r"),
        ],
        "a, the survivor with the smallest id, reports the user and the channels only c held"
    );
    // b heard of c's death too (its occupancy has forgotten c) and reported nothing.
    eventually("b to forget c", || !b.occupied_elsewhere("app", "only-c")).await;
    assert!(
        seen_b.0.lock().unwrap().is_empty(),
        "b leaves the report to a"
    );
}

#[tokio::test]
async fn a_joining_node_learns_the_members_of_the_others() {
    let hub = MemoryHub::new();
    let a = node(&hub, "a");
    a.local()
        .app("app")
        .join_presence("presence-r", recorder(1), member("early"), 100)
        .unwrap();
    let b = node(&hub, "b");
    eventually("the snapshot on b", || {
        b.replica.lock().has("app", "presence-r", "early")
    })
    .await;
}

#[tokio::test]
async fn a_silent_node_gives_a_partial_answer_after_the_timeout() {
    let hub = MemoryHub::new();
    let a = node(&hub, "a");
    // A node that never answers: its transport exists, no adapter reads it.
    let _silent = hub.join("silent");
    a.local().app("app").subscribe("x", recorder(1));
    let started = tokio::time::Instant::now();
    let counts = a.channel_counts("app", "x").await.unwrap();
    assert_eq!(counts.subscription_count, 1);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(a.pending.is_empty(), "the request is forgotten");
}
