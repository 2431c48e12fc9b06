use std::sync::Mutex as StdMutex;

use soketi_channels::Outbox;
use soketi_protocol::CloseCode;

use super::*;
use crate::Departure;
use crate::transport::MemoryHub;
use crate::users::user_key;

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
        // Strip the WebSocket header of an unmasked text frame: 2 bytes, and 2 or 8 more for a
        // payload over 125 bytes.
        let header = match frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let text = String::from_utf8_lossy(&frame[header..]).into_owned();
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
    let local = LocalAdapter::new(Arc::new(crate::MemoryCache::new()), Duration::from_secs(60));
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

/// The `pusher_internal:` presence frames of `channel` a recorder got, as
/// `succeeded:<ids>`, `added:<id>` and `removed:<id>`, in order.
fn presence_frames(rec: &Recorder, channel: &str) -> Vec<String> {
    rec.frames
        .lock()
        .unwrap()
        .iter()
        .filter_map(|f| {
            let v: serde_json::Value = serde_json::from_str(f).ok()?;
            if v["channel"] != channel {
                return None;
            }
            let data: serde_json::Value = serde_json::from_str(v["data"].as_str()?).ok()?;
            match v["event"].as_str()? {
                "pusher_internal:subscription_succeeded" => {
                    let mut ids: Vec<String> = data["presence"]["ids"]
                        .as_array()?
                        .iter()
                        .filter_map(|id| id.as_str().map(str::to_owned))
                        .collect();
                    ids.sort();
                    Some(format!("succeeded:{}", ids.join(",")))
                }
                "pusher_internal:member_added" => {
                    Some(format!("added:{}", data["user_id"].as_str()?))
                }
                "pusher_internal:member_removed" => {
                    Some(format!("removed:{}", data["user_id"].as_str()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// Joins `rec` to `channel` on `node` as `user`.
async fn join(
    node: &HorizontalAdapter,
    channel: &str,
    rec: &Arc<Recorder>,
    user: &str,
) -> PresenceJoined {
    node.join_presence("app", channel, rec.clone(), member(user), 100)
        .await
        .unwrap()
}

#[tokio::test]
async fn presence_is_announced_once_for_the_fleet() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    let (u_on_a, u_on_b, watcher) = (recorder(1), recorder(2), recorder(3));
    join(&b, "presence-r", &watcher, "w").await;
    let first = join(&a, "presence-r", &u_on_a, "u").await;
    assert!(first.first_anywhere && first.first_on_channel, "{first:?}");
    eventually("b's replica", || {
        b.replica.lock().has("app", "presence-r", "u")
    })
    .await;
    let second = join(&b, "presence-r", &u_on_b, "u").await;
    assert!(
        !second.first_anywhere,
        "the user is already on a: {second:?}"
    );
    let members = b.presence_members("app", "presence-r").await.unwrap();
    assert_eq!(members.len(), 2, "merged by user id");
    assert_eq!(
        b.channel_counts("app", "presence-r")
            .await
            .unwrap()
            .user_count,
        Some(2)
    );
    // The watcher on b heard of u once, from a's change; u's second connection got the list.
    assert_eq!(
        presence_frames(&watcher, "presence-r"),
        ["succeeded:w", "added:u"]
    );
    assert_eq!(presence_frames(&u_on_b, "presence-r"), ["succeeded:u,w"]);

    // The user leaves a: b still has it, so the fleet keeps the user and nobody hears of it.
    let left = a
        .leave_channel("app", "presence-r", u_on_a.socket_id())
        .await
        .unwrap();
    assert_eq!(left.user_gone, None, "u is still on b");
    eventually("b's replica to drop u of a", || {
        !b.replica.lock().has("app", "presence-r", "u")
    })
    .await;
    assert_eq!(
        presence_frames(&watcher, "presence-r"),
        ["succeeded:w", "added:u"]
    );
    // Its last connection leaves b: gone from the fleet, and the watcher hears it.
    let left = b
        .leave_channel("app", "presence-r", u_on_b.socket_id())
        .await
        .unwrap();
    assert_eq!(left.user_gone.as_deref(), Some("u"));
    assert_eq!(
        presence_frames(&watcher, "presence-r"),
        ["succeeded:w", "added:u", "removed:u"]
    );
}

#[tokio::test]
async fn a_user_who_left_through_another_node_is_a_move_within_the_delay() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    let (watcher, u_on_b) = (recorder(1), recorder(2));
    join(&a, "presence-r", &watcher, "w").await;
    join(&b, "presence-r", &u_on_b, "u").await;
    let within = Duration::from_secs(5);
    eventually("a's replica", || {
        a.replica.lock().has("app", "presence-r", "u")
    })
    .await;
    assert!(
        !a.member_moved("app", "presence-r", "u", within),
        "u has not left"
    );
    b.leave_channel("app", "presence-r", u_on_b.socket_id())
        .await
        .unwrap();
    eventually("a to see u leave the fleet", || {
        a.member_moved("app", "presence-r", "u", within)
    })
    .await;
    assert!(
        !a.member_moved("app", "presence-r", "u", Duration::ZERO),
        "not within no time"
    );
    assert!(
        !a.member_moved("app", "presence-r", "w", within),
        "another user"
    );
    assert!(
        !b.member_moved("app", "presence-r", "u", within),
        "b saw it leave itself"
    );
}

/// The question a node asks when the occupancy of a channel changed now.
fn question(occupied: bool) -> crate::OccupancyQuestion {
    crate::OccupancyQuestion {
        occupied,
        since: std::time::Instant::now(),
        tolerance: Duration::from_millis(100),
        vacated_delay: Duration::from_secs(3),
    }
}

#[tokio::test]
async fn a_channel_that_moves_after_the_first_node_took_it_is_announced_once() {
    // For each order of node ids: the first node takes the channel, gives it up, and the other
    // takes it, before the first decided (its settle time) but after the tolerance.
    for (first, second) in [("a", "b"), ("b", "a")] {
        let hub = MemoryHub::new();
        let (one, two) = (node(&hub, first), node(&hub, second));
        let asked_first = question(true);
        one.occupancy_changed("app", "room", true).await.unwrap();
        eventually("the second node to hear of it", || {
            two.occupied_elsewhere("app", "room")
        })
        .await;
        one.occupancy_changed("app", "room", false).await.unwrap();
        eventually("the second node to hear it emptied", || {
            !two.occupied_elsewhere("app", "room")
        })
        .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let asked_second = question(true);
        two.occupancy_changed("app", "room", true).await.unwrap();
        eventually("the first node to hear of the move", || {
            one.occupied_elsewhere("app", "room")
        })
        .await;
        let said = [
            one.announces("app", "room", &asked_first),
            two.announces("app", "room", &asked_second),
        ];
        assert_eq!(
            said,
            [true, false],
            "{first} took it first, then {second}: {said:?}"
        );
    }
}

#[tokio::test]
async fn a_remote_join_is_in_the_list_or_announced_after_it_never_both() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    // Before: x's change reached a before s joins there, so s finds x in its list and hears
    // nothing more of it.
    let x = recorder(1);
    join(&b, "presence-before", &x, "x").await;
    eventually("a's replica", || {
        a.replica.lock().has("app", "presence-before", "x")
    })
    .await;
    let s = recorder(2);
    join(&a, "presence-before", &s, "s").await;
    assert_eq!(presence_frames(&s, "presence-before"), ["succeeded:s,x"]);

    // After: s joins first, x's change comes later and is announced after the list.
    let s = recorder(3);
    join(&a, "presence-after", &s, "s").await;
    let x = recorder(4);
    join(&b, "presence-after", &x, "x").await;
    eventually("x announced to s", || {
        presence_frames(&s, "presence-after").len() == 2
    })
    .await;
    assert_eq!(
        presence_frames(&s, "presence-after"),
        ["succeeded:s", "added:x"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_joining_at_once_on_two_nodes_add_up_for_every_socket() {
    // Many rounds of joins racing on two nodes: every socket's first frame is its
    // subscription_succeeded, and its list plus what it hears after is every member, once.
    for round in 0..50 {
        let hub = MemoryHub::new();
        let (a, b) = (node(&hub, "a"), node(&hub, "b"));
        let channel = format!("presence-race-{round}");
        let sockets: Vec<(Arc<Recorder>, String)> = (0..8)
            .map(|i| (recorder(10 + i), format!("m{i}")))
            .collect();
        let joins = sockets.iter().enumerate().map(|(i, (rec, user))| {
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (rec, user, channel) = (rec.clone(), user.clone(), channel.clone());
            tokio::spawn(async move {
                node.join_presence("app", &channel, rec, member(&user), 100)
                    .await
                    .unwrap();
            })
        });
        for join in joins.collect::<Vec<_>>() {
            join.await.unwrap();
        }
        let everyone: Vec<String> = sockets.iter().map(|(_, u)| u.clone()).collect();
        for (rec, user) in &sockets {
            eventually("every member to reach every socket", || {
                seen_members(&presence_frames(rec, &channel)).len() == everyone.len()
            })
            .await;
            let frames = presence_frames(rec, &channel);
            assert!(
                frames[0].starts_with("succeeded:"),
                "round {round}, {user}: the first frame is subscription_succeeded: {frames:?}"
            );
            let mut seen = seen_members(&frames);
            seen.sort();
            let mut expected = everyone.clone();
            expected.sort();
            assert_eq!(seen, expected, "round {round}, {user}: {frames:?}");
        }
    }
}

/// The members a socket knows from its presence frames; panics on a member counted twice.
fn seen_members(frames: &[String]) -> Vec<String> {
    let mut members: Vec<String> = Vec::new();
    for frame in frames {
        if let Some(ids) = frame.strip_prefix("succeeded:") {
            members = ids.split(',').map(str::to_owned).collect();
        } else if let Some(id) = frame.strip_prefix("added:") {
            assert!(
                !members.iter().any(|m| m == id),
                "{id} added twice: {frames:?}"
            );
            members.push(id.to_owned());
        } else if let Some(id) = frame.strip_prefix("removed:") {
            members.retain(|m| m != id);
        }
    }
    members
}

#[tokio::test]
async fn a_dead_node_takes_its_members_and_the_survivors_say_so() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    let watcher = recorder(9);
    join(&a, "presence-r", &watcher, "w").await;
    join(&b, "presence-r", &recorder(2), "gone").await;
    eventually("a's replica", || {
        a.replica.lock().has("app", "presence-r", "gone")
    })
    .await;
    hub.kill("b");
    eventually("member_removed on a", || {
        presence_frames(&watcher, "presence-r").contains(&"removed:gone".to_owned())
    })
    .await;
    assert_eq!(
        presence_frames(&watcher, "presence-r"),
        ["succeeded:w", "added:gone", "removed:gone"]
    );
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
    join(&c, "presence-r", &recorder(1), "gone").await;
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

/// Records the extension messages it hears.
#[derive(Default)]
struct Heard(StdMutex<Vec<(String, Vec<u8>)>>);

impl Extension for Heard {
    fn on_message(&self, from: &str, payload: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push((from.to_owned(), payload.to_vec()));
    }
    fn on_node_joined(&self, _node: &str, _is_master: bool) -> Option<Bytes> {
        None
    }
}

#[tokio::test]
async fn an_extension_message_before_its_registration_is_handed_over() {
    // A master's greeting can reach a node before the node has registered the extension it is
    // for: it is kept, and the extension gets it when it registers.
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    a.send_extension("limits", Bytes::from_static(b"early"), Some("b"))
        .await
        .unwrap();
    eventually("b to keep the early message", || {
        !b.unclaimed.lock().is_empty()
    })
    .await;
    let heard = Arc::new(Heard::default());
    b.register_extension("limits", heard.clone());
    assert_eq!(
        *heard.0.lock().unwrap(),
        [("a".to_owned(), b"early".to_vec())]
    );
    assert!(b.unclaimed.lock().is_empty(), "handed over, not kept twice");
    a.send_extension("limits", Bytes::from_static(b"later"), Some("b"))
        .await
        .unwrap();
    eventually("the later message", || heard.0.lock().unwrap().len() == 2).await;
}

#[tokio::test]
async fn the_connection_quota_counts_every_node_and_forgets_a_dead_one() {
    let hub = MemoryHub::new();
    let (a, b, c) = (node(&hub, "a"), node(&hub, "b"), node(&hub, "c"));
    let quota = Some(10);
    for _ in 0..4 {
        a.open_connection("app", quota).await.unwrap();
    }
    for _ in 0..4 {
        b.open_connection("app", quota).await.unwrap();
    }
    let heard = |n: &Arc<HorizontalAdapter>, node: &str, count: u64| {
        n.peer_connections()
            .get(node)
            .and_then(|apps| apps.get("app").copied())
            == Some(count)
    };
    eventually("c hears of a and b", || {
        heard(&c, "a", 4) && heard(&c, "b", 4)
    })
    .await;
    let mut admitted = 0;
    for _ in 0..4 {
        match c.open_connection("app", quota).await {
            Ok(()) => admitted += 1,
            Err(AdapterError::Channels(soketi_channels::ChannelsError::ConnectionLimit {
                max,
            })) => assert_eq!(max, 10),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(admitted, 2, "c admits what the quota leaves");
    // Another app has a quota of its own.
    c.open_connection("other", Some(1)).await.unwrap();

    // A connection that closes on a frees room on c.
    a.close_connection("app", &SocketId::from_parts(1, 1), None)
        .await;
    eventually("c hears a's close", || heard(&c, "a", 3)).await;
    c.open_connection("app", quota).await.unwrap();
    assert!(c.open_connection("app", quota).await.is_err());

    // A node that dies takes its connections with it.
    hub.kill("b");
    eventually("c forgets b", || !c.peer_connections().contains_key("b")).await;
    for _ in 0..4 {
        c.open_connection("app", quota).await.unwrap();
    }
    assert!(c.open_connection("app", quota).await.is_err());

    // A node that joins learns the others' counts from their snapshots.
    let d = node(&hub, "d");
    eventually("d hears of a and c", || {
        heard(&d, "a", 3) && heard(&d, "c", 7)
    })
    .await;
    assert!(d.open_connection("app", quota).await.is_err());
}

#[tokio::test]
async fn the_presence_member_limit_counts_the_members_of_every_node() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    a.join_presence("app", "presence-x", recorder(1), member("u1"), 2)
        .await
        .unwrap();
    eventually("b hears of u1", || {
        b.replica.lock().has("app", "presence-x", "u1")
    })
    .await;
    b.join_presence("app", "presence-x", recorder(2), member("u2"), 2)
        .await
        .unwrap();
    // u1 is in the fleet already: another connection of it is no new member.
    b.join_presence("app", "presence-x", recorder(3), member("u1"), 2)
        .await
        .unwrap();
    match b
        .join_presence("app", "presence-x", recorder(4), member("u3"), 2)
        .await
    {
        Err(AdapterError::Channels(soketi_channels::ChannelsError::PresenceFull { max })) => {
            assert_eq!(max, 2)
        }
        other => panic!("u3 is a third member of a channel of two: {other:?}"),
    }
    eventually("a hears of u2", || {
        a.replica.lock().has("app", "presence-x", "u2")
    })
    .await;
    assert!(
        a.join_presence("app", "presence-x", recorder(5), member("u3"), 2)
            .await
            .is_err()
    );
}

/// Records what an adapter counts of its requests, as `what app` lines.
#[derive(Default)]
struct Counted(StdMutex<Vec<String>>);

impl Counted {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl RequestMetrics for Counted {
    fn request_sent(&self, app_id: &str) {
        self.0.lock().unwrap().push(format!("sent {app_id}"));
    }
    fn request_received(&self, app_id: &str) {
        self.0.lock().unwrap().push(format!("received {app_id}"));
    }
    fn response_received(&self, app_id: &str) {
        self.0.lock().unwrap().push(format!("response {app_id}"));
    }
    fn request_resolved(&self, app_id: &str, complete: bool, elapsed: Duration) {
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let how = if complete { "resolved" } else { "uncomplete" };
        self.0.lock().unwrap().push(format!("{how} {app_id}"));
    }
}

#[tokio::test]
async fn requests_answers_and_their_outcome_are_counted_where_they_happen() {
    let hub = MemoryHub::new();
    let (a, b, c) = (node(&hub, "a"), node(&hub, "b"), node(&hub, "c"));
    let sinks: Vec<Arc<Counted>> = [&a, &b, &c]
        .iter()
        .map(|n| {
            let sink = Arc::new(Counted::default());
            n.set_request_metrics(sink.clone());
            sink
        })
        .collect();
    b.local().app("app").subscribe("x", recorder(1));
    let channels = a.channels("app").await.unwrap();
    assert_eq!(channels.len(), 1);
    // Both answers were in before the request resolved; each answering node counts its answer
    // once it has sent it, so wait for theirs.
    eventually("both answers counted", || {
        sinks[1].lines() == ["received app"] && sinks[2].lines() == ["received app"]
    })
    .await;
    assert_eq!(
        sinks[0].lines(),
        ["sent app", "response app", "response app", "resolved app"]
    );

    // A node that never answers: the request resolves incomplete at the timeout.
    let _silent = hub.join("silent");
    a.socket_count("app").await.unwrap();
    assert_eq!(
        sinks[0].lines()[4..],
        ["sent app", "response app", "response app", "uncomplete app"]
    );
}

#[tokio::test]
async fn a_node_alone_sends_no_request() {
    let hub = MemoryHub::new();
    let a = node(&hub, "a");
    let sink = Arc::new(Counted::default());
    a.set_request_metrics(sink.clone());
    a.channels("app").await.unwrap();
    assert!(sink.lines().is_empty(), "{:?}", sink.lines());
}

/// The watchlist events a recorder got, each as `name:ids` (`online:u1,u2`), in order.
fn watchlist_frames(rec: &Recorder) -> Vec<String> {
    let mut seen = Vec::new();
    for frame in rec.frames.lock().unwrap().iter() {
        let v: serde_json::Value = serde_json::from_str(frame).unwrap();
        if v["event"] != "pusher_internal:watchlist_events" {
            continue;
        }
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        for e in data["events"].as_array().unwrap() {
            let ids: Vec<&str> = e["user_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap())
                .collect();
            seen.push(format!("{}:{}", e["name"].as_str().unwrap(), ids.join(",")));
        }
    }
    seen
}

#[tokio::test]
async fn a_user_is_online_once_for_the_fleet_however_many_nodes_have_it() {
    let hub = MemoryHub::new();
    let (a, b, c) = (node(&hub, "a"), node(&hub, "b"), node(&hub, "c"));
    let watcher = recorder(9);
    a.watch("app", watcher.clone(), &["u".into(), "v".into()]);
    assert_eq!(watchlist_frames(&watcher), ["offline:u,v"]);

    // u signs in on b, then on c: online once for a's watcher. Each node says when it is the
    // user's first or last connection there, for the webhooks' arbitration.
    assert!(b.user_signed_in("app", "u").await);
    eventually("online on a", || watchlist_frames(&watcher).len() == 2).await;
    eventually("c to know of u", || c.user_online("app", "u")).await;
    assert!(c.user_signed_in("app", "u").await, "the first on c");
    eventually("b to know c has u", || {
        b.occupied_elsewhere("app", &user_key("u"))
    })
    .await;
    // A second connection on one node changes nothing.
    assert!(!b.user_signed_in("app", "u").await);
    assert!(!b.user_signed_out("app", "u").await);
    // b's last connection goes: c still has u.
    assert!(b.user_signed_out("app", "u").await, "the last on b");
    eventually("a to hear b let u go", || {
        a.occupancy
            .lock()
            .get(&("app".into(), user_key("u")))
            .map(|n| n.len())
            == Some(1)
    })
    .await;
    assert!(a.user_online("app", "u"));
    // c's last: offline for the fleet.
    assert!(c.user_signed_out("app", "u").await);
    eventually("offline on a", || watchlist_frames(&watcher).len() == 3).await;
    assert_eq!(
        watchlist_frames(&watcher),
        ["offline:u,v", "online:u", "offline:u"]
    );
    assert!(!a.user_online("app", "u"));

    // A watcher who signs in later gets the current state at once.
    assert!(a.user_signed_in("app", "v").await);
    eventually("b to know of v", || b.user_online("app", "v")).await;
    let late = recorder(10);
    b.watch("app", late.clone(), &["u".into(), "v".into()]);
    assert_eq!(watchlist_frames(&late), ["online:v", "offline:u"]);
    b.unwatch("app", &late.id);
    assert!(a.user_signed_out("app", "v").await);
    eventually("b to hear v go", || !b.user_online("app", "v")).await;
    assert_eq!(
        watchlist_frames(&late).len(),
        2,
        "unwatched: no more events"
    );
}

#[tokio::test]
async fn a_dead_nodes_users_go_offline_and_one_survivor_reports_them() {
    let hub = MemoryHub::new();
    let (a, b, c) = (node(&hub, "a"), node(&hub, "b"), node(&hub, "c"));
    let (seen_a, seen_b) = (
        Arc::new(Departures::default()),
        Arc::new(Departures::default()),
    );
    a.set_departure_sink(seen_a.clone());
    b.set_departure_sink(seen_b.clone());
    let (wa, wb) = (recorder(1), recorder(2));
    a.watch("app", wa.clone(), &["gone".into(), "stays".into()]);
    b.watch("app", wb.clone(), &["gone".into()]);
    c.user_signed_in("app", "gone").await;
    // "stays" is on c and on b: c's death leaves it online.
    c.user_signed_in("app", "stays").await;
    b.user_signed_in("app", "stays").await;
    eventually("a to see both online", || {
        watchlist_frames(&wa) == ["offline:gone,stays", "online:gone", "online:stays"]
    })
    .await;
    eventually("a to hear b has stays", || {
        a.occupancy
            .lock()
            .get(&("app".into(), user_key("stays")))
            .map(|n| n.len())
            == Some(2)
    })
    .await;
    eventually("b to see gone online", || watchlist_frames(&wb).len() == 2).await;
    hub.kill("c");
    eventually("offline on a", || watchlist_frames(&wa).len() == 4).await;
    eventually("offline on b", || watchlist_frames(&wb).len() == 3).await;
    assert_eq!(watchlist_frames(&wa)[3], "offline:gone");
    assert_eq!(watchlist_frames(&wb)[2], "offline:gone");
    eventually("a's report", || !seen_a.0.lock().unwrap().is_empty()).await;
    assert_eq!(
        *seen_a.0.lock().unwrap(),
        [Departure::UserOffline {
            app_id: "app".into(),
            user_id: "gone".into()
        }]
    );
    assert!(
        seen_b.0.lock().unwrap().is_empty(),
        "b leaves the report to a"
    );
    assert!(a.user_online("app", "stays"));
}

#[tokio::test]
async fn a_joining_node_learns_who_is_online() {
    let hub = MemoryHub::new();
    let a = node(&hub, "a");
    a.user_signed_in("app", "early").await;
    let b = node(&hub, "b");
    eventually("the snapshot on b", || b.user_online("app", "early")).await;
    let watcher = recorder(1);
    b.watch("app", watcher.clone(), &["early".into()]);
    assert_eq!(watchlist_frames(&watcher), ["online:early"]);
}

/// Whether the changes `adapter` has for the server include `channel`.
fn count_changed(adapter: &HorizontalAdapter, channel: &str) -> bool {
    adapter
        .take_subscription_count_changes()
        .iter()
        .any(|(app, c)| app == "app" && c == channel)
}

#[tokio::test]
async fn subscription_counts_add_up_across_the_fleet_and_drop_a_dead_nodes() {
    let hub = MemoryHub::new();
    let (a, b, c) = (node(&hub, "a"), node(&hub, "b"), node(&hub, "c"));
    let subscribers = [recorder(1), recorder(2), recorder(3)];
    for (node, socket) in [
        (&a, &subscribers[0]),
        (&b, &subscribers[1]),
        (&c, &subscribers[2]),
    ] {
        node.subscribe("app", "room", socket.clone()).await;
        node.subscription_count_changed("app", "room");
    }
    for node in [&a, &b, &c] {
        eventually("the fleet's count of 3", || {
            node.subscription_count("app", "room").count == 3
        })
        .await;
    }
    // One node speaks for the channel: the smallest id with subscribers.
    assert!(a.subscription_count("app", "room").speaks);
    assert!(!b.subscription_count("app", "room").speaks);
    assert!(!c.subscription_count("app", "room").speaks);
    // Every node has the channel to send about, whichever node's count changed.
    assert!(count_changed(&b, "room"));

    // a's subscriber leaves: 2 everywhere, and b speaks now.
    a.leave_channel("app", "room", subscribers[0].socket_id())
        .await
        .unwrap();
    a.subscription_count_changed("app", "room");
    eventually("c to hear a's count drop", || {
        c.subscription_count("app", "room").count == 2
    })
    .await;
    assert!(count_changed(&c, "room"));
    assert_eq!(a.subscription_count("app", "room").count, 2);
    assert!(
        !a.subscription_count("app", "room").speaks,
        "none left on a"
    );
    assert!(b.subscription_count("app", "room").speaks);

    // A node that joins gets the counts in the snapshot.
    let d = node(&hub, "d");
    eventually("d to learn the counts", || {
        d.subscription_count("app", "room").count == 2
    })
    .await;

    // c dies without a word: its subscriber no longer counts.
    hub.kill("c");
    eventually("b to drop c's subscriber", || {
        b.subscription_count("app", "room").count == 1
    })
    .await;
    assert!(count_changed(&b, "room"));
    eventually("d to drop c's subscriber", || {
        d.subscription_count("app", "room").count == 1
    })
    .await;
}

#[tokio::test]
async fn a_channel_nobody_marks_is_not_shared() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, "a"), node(&hub, "b"));
    let socket = recorder(1);
    a.subscribe("app", "quiet", socket.clone()).await;
    assert_eq!(a.subscription_count("app", "quiet").count, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.subscription_count("app", "quiet").count, 0);
    assert!(!count_changed(&b, "quiet"));
}
