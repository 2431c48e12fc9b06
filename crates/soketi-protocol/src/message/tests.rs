use expect_test::{Expect, expect};
use serde_json::value::RawValue;

use super::*;

fn check(actual: String, expected: Expect) {
    expected.assert_eq(&actual);
}

#[test]
fn server_frames() {
    check(
        connection_established("1.2", 30),
        expect![[
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":30}"}"#
        ]],
    );
    check(
        error(Some(4001), "App key x does not exist.", None),
        expect![[
            r#"{"event":"pusher:error","data":{"code":4001,"message":"App key x does not exist."}}"#
        ]],
    );
    check(
        error(None, "bad", None),
        expect![[r#"{"event":"pusher:error","data":{"code":null,"message":"bad"}}"#]],
    );
    check(
        error(Some(4301), "no", Some("private-a")),
        expect![[
            r#"{"event":"pusher:error","channel":"private-a","data":{"code":4301,"message":"no"}}"#
        ]],
    );
    check(
        subscription_succeeded("a"),
        expect![[
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"a","data":"{}"}"#
        ]],
    );
    // pusher-js parses `data` and re-emits it as `pusher:subscription_count`.
    check(
        subscription_count("a", 3),
        expect![[
            r#"{"event":"pusher_internal:subscription_count","channel":"a","data":"{\"subscription_count\":3}"}"#
        ]],
    );
    check(
        subscription_error("private-a", "AuthError", "bad", 401),
        expect![[
            r#"{"event":"pusher:subscription_error","channel":"private-a","data":{"type":"AuthError","error":"bad","status":401}}"#
        ]],
    );
    let m = PresenceMember::from_channel_data(r#"{"user_id":7,"user_info":{"name":"A"}}"#).unwrap();
    check(
        presence_subscription_succeeded("presence-r", std::slice::from_ref(&m)),
        expect![[
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-r","data":"{\"presence\":{\"count\":1,\"hash\":{\"7\":{\"name\":\"A\"}},\"ids\":[\"7\"]}}"}"#
        ]],
    );
    check(
        member_added("presence-r", &m),
        expect![[
            r#"{"event":"pusher_internal:member_added","channel":"presence-r","data":"{\"user_id\":\"7\",\"user_info\":{\"name\":\"A\"}}"}"#
        ]],
    );
    check(
        member_removed("presence-r", "7"),
        expect![[
            r#"{"event":"pusher_internal:member_removed","channel":"presence-r","data":"{\"user_id\":\"7\"}"}"#
        ]],
    );
    check(
        signin_success(r#"{"id":"u"}"#),
        expect![[
            r#"{"event":"pusher:signin_success","data":"{\"user_data\":\"{\\\"id\\\":\\\"u\\\"}\"}"}"#
        ]],
    );
    let (on, off) = (vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()]);
    check(
        watchlist_events(&[("online", &on), ("offline", &off), ("offline", &[])]),
        expect![[
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"a\",\"b\"]},{\"name\":\"offline\",\"user_ids\":[\"c\"]}]}"}"#
        ]],
    );
    check(
        format!(
            "{:?}",
            watchlist_from_user_data(r#"{"id":"u","watchlist":["a",7]}"#)
        ),
        expect![[r#"Ok(["a", "7"])"#]],
    );
    check(
        format!("{:?}", watchlist_from_user_data(r#"{"id":"u"}"#)),
        expect![[r#"Ok([])"#]],
    );
    check(
        format!(
            "{:?}",
            watchlist_from_user_data(r#"{"id":"u","watchlist":"a"}"#).is_err()
        ),
        expect![[r#"true"#]],
    );
    let data = RawValue::from_string(r#"{"x":1}"#.into()).unwrap();
    check(
        channel_event("client-a", "presence-r", &data, Some("7")),
        expect![[r#"{"event":"client-a","channel":"presence-r","data":{"x":1},"user_id":"7"}"#]],
    );
    check(
        cache_miss("cache-a"),
        expect![[r#"{"event":"pusher:cache_miss","channel":"cache-a","data":"{}"}"#]],
    );
}

#[test]
fn client_messages() {
    let m =
        ClientMessage::parse(r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}"#)
            .unwrap();
    let d: SubscribeData = m.data_as().unwrap();
    assert_eq!(d.channel, "a");
    assert_eq!(d.auth.as_deref(), Some("k:s"));
    // Data encoded as a string is accepted too.
    let m = ClientMessage::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#)
        .unwrap();
    assert_eq!(m.data_as::<SubscribeData>().unwrap().channel, "b");
    for bad in ["", "[]", "{", r#"{"data":{}}"#, r#"{"event":1}"#] {
        assert!(ClientMessage::parse(bad).is_err(), "{bad:?}");
    }
    let m = ClientMessage::parse(r#"{"event":"pusher:subscribe","data":{"nochannel":1}}"#).unwrap();
    assert!(m.data_as::<SubscribeData>().is_err());
    let m = ClientMessage::parse(r#"{"event":"pusher:subscribe"}"#).unwrap();
    assert!(m.data_as::<SubscribeData>().is_err());
}

#[test]
fn user_data() {
    assert_eq!(user_id_from_user_data(r#"{"id":"a"}"#).unwrap(), "a");
    assert_eq!(user_id_from_user_data(r#"{"id":5}"#).unwrap(), "5");
    for bad in [
        r#"{}"#,
        r#"{"id":""}"#,
        r#"{"id":null}"#,
        "nope",
        r#"{"id":[1]}"#,
    ] {
        assert!(user_id_from_user_data(bad).is_err(), "{bad:?}");
    }
    for bad in [r#"{}"#, r#"{"user_id":""}"#, "x", r#"{"user_id":{}}"#] {
        assert!(PresenceMember::from_channel_data(bad).is_err(), "{bad:?}");
    }
    let m = PresenceMember::from_channel_data(r#"{"user_id":"u"}"#).unwrap();
    assert!(m.user_info.is_none());
    assert_eq!(m.info_size(), 0);
}
