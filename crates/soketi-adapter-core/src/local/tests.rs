use std::sync::Mutex;

use soketi_channels::Outbox;

use super::*;

struct Recorder {
    id: SocketId,
    frames: Mutex<Vec<Bytes>>,
    closed: Mutex<Option<u16>>,
}

impl Outbox for Recorder {
    fn socket_id(&self) -> &SocketId {
        &self.id
    }
    fn send(&self, frame: Bytes) {
        self.frames.lock().unwrap().push(frame);
    }
    fn close(&self, code: CloseCode, _reason: &str) {
        *self.closed.lock().unwrap() = Some(code.0);
    }
}

fn recorder(n: u64) -> Arc<Recorder> {
    Arc::new(Recorder {
        id: SocketId::from_parts(n, n),
        frames: Mutex::default(),
        closed: Mutex::default(),
    })
}

#[tokio::test]
async fn publish_encodes_once_and_caches() {
    let adapter = LocalAdapter::new(Arc::new(crate::MemoryCache::new()), Duration::from_secs(60));
    let (a, b) = (recorder(1), recorder(2));
    let app = adapter.local().app("app");
    app.subscribe("cache-x", a.clone());
    app.subscribe("cache-x", b.clone());
    adapter
        .publish("app", "cache-x", Bytes::from_static(b"{}"), Some(&b.id))
        .await
        .unwrap();
    let frames = a.frames.lock().unwrap().clone();
    assert_eq!(frames, [ws::text(b"{}")]);
    assert!(b.frames.lock().unwrap().is_empty());
    let key = crate::cache::channel_key("app", "cache-x");
    assert_eq!(
        adapter.cache().get(&key).await.unwrap().as_deref(),
        Some(&b"{}"[..])
    );
    assert_eq!(
        adapter.channel_counts("app", "cache-x").await.unwrap(),
        ChannelCounts {
            subscription_count: 2,
            user_count: None
        }
    );
    assert_eq!(adapter.channels("missing").await.unwrap(), vec![]);
}

#[tokio::test]
async fn users_receive_and_are_terminated() {
    let adapter = LocalAdapter::new(Arc::new(crate::MemoryCache::new()), Duration::from_secs(60));
    let (a, b) = (recorder(1), recorder(2));
    let app = adapter.local().app("app");
    app.add_user("u", a.clone());
    app.add_user("v", b.clone());
    adapter
        .send_to_user("app", "u", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(a.frames.lock().unwrap().len(), 1);
    assert!(b.frames.lock().unwrap().is_empty());
    adapter
        .terminate_user_connections("app", "u")
        .await
        .unwrap();
    assert_eq!(*a.closed.lock().unwrap(), Some(4009));
    assert_eq!(*b.closed.lock().unwrap(), None);
}

#[tokio::test]
async fn internal_events_are_not_cached() {
    let adapter = LocalAdapter::new(Arc::new(crate::MemoryCache::new()), Duration::from_secs(60));
    let m =
        soketi_protocol::message::PresenceMember::from_channel_data(r#"{"user_id":"u"}"#).unwrap();
    let added = soketi_protocol::message::member_added("presence-cache-x", &m);
    adapter
        .publish("app", "presence-cache-x", Bytes::from(added), None)
        .await
        .unwrap();
    let key = crate::cache::channel_key("app", "presence-cache-x");
    assert_eq!(adapter.cache().get(&key).await.unwrap(), None);
}

#[tokio::test]
async fn a_connection_lives_through_the_adapter() {
    let adapter = LocalAdapter::new(Arc::new(crate::MemoryCache::new()), Duration::from_secs(60));
    let (a, b) = (recorder(1), recorder(2));
    adapter.open_connection("app", Some(1)).await.unwrap();
    let refused = adapter.open_connection("app", Some(1)).await;
    assert!(matches!(
        refused,
        Err(AdapterError::Channels(
            crate::ChannelsError::ConnectionLimit { max: 1 }
        ))
    ));
    adapter.open_connection("app", None).await.unwrap();
    assert_eq!(adapter.socket_count("app").await.unwrap(), 2);

    let first = adapter.subscribe("app", "news", a.clone()).await;
    assert_eq!(
        first,
        Some(crate::Subscribed {
            first_on_channel: true
        })
    );
    assert_eq!(adapter.subscribe("app", "news", a.clone()).await, None);
    let second = adapter.subscribe("app", "news", b.clone()).await;
    assert_eq!(
        second,
        Some(crate::Subscribed {
            first_on_channel: false
        })
    );
    assert!(adapter.occupied("app", "news"));

    adapter.sign_in("app", a.clone(), "u", None).await;
    adapter.sign_in("app", a.clone(), "v", Some("u")).await;
    adapter
        .send_to_user("app", "u", Bytes::from_static(b"to u"))
        .await
        .unwrap();
    adapter
        .send_to_user("app", "v", Bytes::from_static(b"to v"))
        .await
        .unwrap();
    let frames = a.frames.lock().unwrap().clone();
    assert_eq!(frames.len(), 1, "only the user it signed in as last");
    assert!(frames[0].ends_with(b"to v"));

    for socket in [&a, &b] {
        let left = adapter.leave_channel("app", "news", &socket.id).await;
        assert!(left.is_some());
    }
    assert!(!adapter.occupied("app", "news"));
    adapter.close_connection("app", &a.id, Some("v")).await;
    adapter.close_connection("app", &b.id, None).await;
    assert_eq!(adapter.socket_count("app").await.unwrap(), 0);
    adapter
        .send_to_user("app", "v", Bytes::from_static(b"gone"))
        .await
        .unwrap();
    assert_eq!(
        a.frames.lock().unwrap().len(),
        1,
        "a closed connection is no user's"
    );
}
