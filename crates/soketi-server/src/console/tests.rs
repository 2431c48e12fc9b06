use super::*;
use serde_json::json;

fn watch_message(app_ids: &[&str]) -> Vec<u8> {
    proto::Message {
        body: Some(Body::Watch(proto::Watch {
            app_ids: app_ids.iter().map(|id| (*id).to_owned()).collect(),
            ttl_ms: 5_000,
        })),
    }
    .encode_to_vec()
}

fn parsed(line: &Bytes) -> Value {
    serde_json::from_slice(line).expect("a line is JSON")
}

#[tokio::test]
async fn nothing_is_built_while_nobody_watches() {
    let console = Console::new("n1".into());
    let mut built = false;
    console.emit("app", "event", || {
        built = true;
        json!({})
    });
    assert!(!built);
    assert!(!console.watches("app"));
}

#[tokio::test]
async fn an_open_console_gets_its_app_lines_and_no_other() {
    let console = Console::new("n1".into());
    let (watching, mut lines) = console.watch("app");
    console.emit("other", "event", || json!({ "channel": "x" }));
    console.emit(
        "app",
        "subscribed",
        || json!({ "socket_id": "1.2", "channel": "news" }),
    );
    let line = parsed(&lines.try_recv().expect("a line"));
    assert_eq!(line["type"], "subscribed");
    assert_eq!(line["node"], "n1");
    assert_eq!(line["channel"], "news");
    assert_eq!(line["socket_id"], "1.2");
    assert!(line["time"].as_u64().is_some_and(|t| t > 1_600_000_000_000));
    assert!(lines.try_recv().is_err(), "the other app's line stayed out");

    drop(watching);
    assert!(!console.watches("app"));
    let mut built = false;
    console.emit("app", "event", || {
        built = true;
        json!({})
    });
    assert!(!built, "closing the console removes the tap");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let console = Console::new("n1".into());
    let (watching, mut lines) = console.watch("app");
    for i in 0..QUEUE_LINES + 10 {
        console.emit("app", "event", || json!({ "n": i }));
    }
    assert_eq!(watching.take_dropped(), 10);
    assert_eq!(watching.take_dropped(), 0, "told once");
    let first = parsed(&lines.try_recv().expect("a line"));
    assert_eq!(first["n"], 0, "the first lines are kept, in order");
}

#[tokio::test]
async fn two_consoles_on_one_app_each_get_every_line() {
    let console = Console::new("n1".into());
    let (first, mut first_lines) = console.watch("app");
    let (_second, mut second_lines) = console.watch("app");
    console.emit("app", "connection", || json!({ "socket_id": "1.1" }));
    assert!(first_lines.try_recv().is_ok());
    assert!(second_lines.try_recv().is_ok());
    drop(first);
    assert!(console.watches("app"), "the second console is still open");
}

#[tokio::test]
async fn another_nodes_watch_gathers_lines_for_it_until_it_lets_go() {
    let console = Console::new("n1".into());
    console.on_message("n2", &watch_message(&["app"]));
    assert!(console.watches("app"));
    console.emit("app", "event", || json!({ "channel": "a" }));
    console.emit("other", "event", || json!({ "channel": "b" }));
    {
        let outbox = console.outbox.lock();
        assert_eq!(outbox.lines.len(), 1);
        assert_eq!(outbox.lines["app"].len(), 1);
    }
    let unwatch = proto::Message {
        body: Some(Body::Unwatch(proto::Unwatch {
            app_ids: vec!["app".into()],
        })),
    }
    .encode_to_vec();
    console.on_message("n2", &unwatch);
    assert!(!console.watches("app"));
}

#[tokio::test]
async fn lines_of_other_nodes_reach_the_consoles_open_here() {
    let console = Console::new("n1".into());
    let (_watching, mut lines) = console.watch("app");
    let remote = proto::Message {
        body: Some(Body::Lines(proto::Lines {
            app_id: "app".into(),
            lines: vec![
                r#"{"type":"event","node":"n2"}"#.into(),
                "{\"type\":\"event\"}\ndata: forged".into(),
            ],
        })),
    }
    .encode_to_vec();
    console.on_message("n2", &remote);
    assert_eq!(parsed(&lines.try_recv().expect("a line"))["node"], "n2");
    assert!(
        lines.try_recv().is_err(),
        "a line with a line break would forge events; it is left out"
    );
    // Garbage from a peer is dropped, not a panic.
    console.on_message("n2", &[0xff, 0x01, 0x02]);
}

#[tokio::test]
async fn a_new_node_is_asked_for_the_apps_watched_here() {
    let console = Console::new("n1".into());
    assert!(console.on_node_joined("n3", true).is_none());
    let (_watching, _lines) = console.watch("app");
    let greeting = console.on_node_joined("n3", true).expect("a watch");
    let message = proto::Message::decode(greeting.as_ref()).expect("it decodes");
    match message.body {
        Some(Body::Watch(watch)) => assert_eq!(watch.app_ids, vec!["app".to_owned()]),
        other => panic!("expected a watch, got {other:?}"),
    }
}

#[test]
fn excerpts_show_the_text_of_strings_and_cut_long_data() {
    let check = |data: &str, expected: &str| assert_eq!(excerpt(data), expected);
    check(r#""hello""#, "hello");
    check(r#"{"a":1}"#, r#"{"a":1}"#);
    let long = format!("\"{}\"", "é".repeat(EXCERPT_BYTES));
    let cut = excerpt(&long);
    assert!(cut.ends_with('…'));
    assert!(cut.len() <= EXCERPT_BYTES + '…'.len_utf8());
}
