use std::sync::Mutex as StdMutex;

use super::*;

/// An outbox that records what it was given.
struct Recorder {
    id: SocketId,
    frames: StdMutex<Vec<Bytes>>,
    closed: StdMutex<Option<(u16, String)>>,
}

impl Recorder {
    fn new(n: u64) -> Arc<Self> {
        Arc::new(Self {
            id: SocketId::from_parts(n, n),
            frames: StdMutex::default(),
            closed: StdMutex::default(),
        })
    }
    fn received(&self) -> Vec<String> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

impl Outbox for Recorder {
    fn socket_id(&self) -> &SocketId {
        &self.id
    }
    fn send(&self, frame: Bytes) {
        self.frames.lock().unwrap().push(frame);
    }
    fn close(&self, code: CloseCode, reason: &str) {
        *self.closed.lock().unwrap() = Some((code.0, reason.to_owned()));
    }
}

fn member(user_id: &str) -> PresenceMember {
    PresenceMember::from_channel_data(&format!(
        r#"{{"user_id":"{user_id}","user_info":{{"n":"{user_id}"}}}}"#
    ))
    .unwrap()
}

#[test]
fn publish_reaches_subscribers_except_one() {
    let app = AppChannels::default();
    let (a, b, c) = (Recorder::new(1), Recorder::new(2), Recorder::new(3));
    assert_eq!(
        app.subscribe("ch", a.clone()),
        Some(true),
        "the channel's first"
    );
    assert_eq!(
        app.subscribe("ch", a.clone()),
        None,
        "second subscribe is a no-op"
    );
    assert_eq!(app.subscribe("ch", b.clone()), Some(false));
    app.subscribe("other", c.clone());
    let sent = app.publish("ch", &Bytes::from_static(b"x"), Some(&b.id));
    assert_eq!(sent, 1);
    assert_eq!(a.received(), ["x"]);
    assert!(b.received().is_empty());
    assert!(c.received().is_empty());
    assert_eq!(app.publish("nobody", &Bytes::from_static(b"x"), None), 0);
}

#[test]
fn unsubscribe_empties_and_removes_channels() {
    let app = AppChannels::default();
    let (a, b) = (Recorder::new(1), Recorder::new(2));
    app.subscribe("ch", a.clone());
    app.subscribe("ch", b.clone());
    assert_eq!(app.channel_counts("ch").subscription_count, 2);
    assert_eq!(
        app.unsubscribe("ch", &a.id),
        Some(Left {
            user_removed: None,
            channel_empty: false
        })
    );
    assert_eq!(
        app.unsubscribe("ch", &a.id),
        None,
        "not subscribed any more"
    );
    assert_eq!(
        app.unsubscribe("ch", &b.id),
        Some(Left {
            user_removed: None,
            channel_empty: true
        })
    );
    assert!(app.channels().is_empty());
    assert_eq!(app.channel_counts("ch"), ChannelCounts::default());
}

#[test]
fn presence_counts_each_user_once() {
    let app = AppChannels::default();
    let (a1, a2, b) = (Recorder::new(1), Recorder::new(2), Recorder::new(3));
    let j = app
        .join_presence("presence-r", a1.clone(), member("a"), 100)
        .unwrap();
    assert!(j.first_for_user);
    let j = app
        .join_presence("presence-r", a2.clone(), member("a"), 100)
        .unwrap();
    assert!(!j.first_for_user, "second connection of the same user");
    assert_eq!(j.members.len(), 1);
    let j = app
        .join_presence("presence-r", b.clone(), member("b"), 100)
        .unwrap();
    assert!(j.first_for_user);
    assert_eq!(j.members.len(), 2);
    assert_eq!(
        app.channel_counts("presence-r"),
        ChannelCounts {
            subscription_count: 3,
            user_count: Some(2)
        }
    );
    let left = app.unsubscribe("presence-r", &a1.id).unwrap();
    assert_eq!(left.user_removed, None, "a still has a connection");
    let left = app.unsubscribe("presence-r", &a2.id).unwrap();
    assert_eq!(left.user_removed.as_deref(), Some("a"));
    let mut ids: Vec<_> = app
        .presence_members("presence-r")
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["b"]);
}

#[test]
fn presence_limit_counts_users_not_connections() {
    let app = AppChannels::default();
    let (a1, a2, b, c) = (
        Recorder::new(1),
        Recorder::new(2),
        Recorder::new(3),
        Recorder::new(4),
    );
    app.join_presence("presence-r", a1, member("a"), 2).unwrap();
    app.join_presence("presence-r", b, member("b"), 2).unwrap();
    assert_eq!(
        app.join_presence("presence-r", c.clone(), member("c"), 2)
            .unwrap_err(),
        ChannelsError::PresenceFull { max: 2 }
    );
    assert!(!app.is_subscribed("presence-r", &c.id));
    app.join_presence("presence-r", a2, member("a"), 2)
        .expect("another connection of a present user still joins");
}

#[test]
fn connection_limit() {
    let app = AppChannels::default();
    app.add_connection(Some(2)).unwrap();
    app.add_connection(Some(2)).unwrap();
    assert_eq!(
        app.add_connection(Some(2)),
        Err(ChannelsError::ConnectionLimit { max: 2 })
    );
    assert_eq!(app.connection_count(), 2);
    app.remove_connection();
    app.add_connection(Some(2)).unwrap();
    app.add_connection(None).unwrap();
    assert_eq!(app.connection_count(), 3);
    for _ in 0..5 {
        app.remove_connection();
    }
    assert_eq!(app.connection_count(), 0);
}

#[test]
fn users() {
    let app = AppChannels::default();
    let (a, b) = (Recorder::new(1), Recorder::new(2));
    app.add_user("u", a.clone());
    app.add_user("u", b.clone());
    assert_eq!(app.user_sockets("u").len(), 2);
    app.remove_user("u", &a.id);
    app.remove_user("u", &b.id);
    assert!(app.user_sockets("u").is_empty());
}

#[test]
fn registry_keeps_apps_apart() {
    let registry = Registry::new();
    let a = Recorder::new(1);
    registry.app("1").subscribe("ch", a.clone());
    assert_eq!(
        registry
            .app("2")
            .publish("ch", &Bytes::from_static(b"x"), None),
        0
    );
    assert_eq!(
        registry
            .app("1")
            .publish("ch", &Bytes::from_static(b"x"), None),
        1
    );
    assert!(registry.get_app("3").is_none());
}
