use expect_test::{Expect, expect};

use super::*;
use crate::config::{MetricsConfig, PrometheusConfig};

fn config(enabled: bool, prefix: &str) -> MetricsConfig {
    MetricsConfig {
        enabled,
        prometheus: PrometheusConfig {
            prefix: prefix.to_owned(),
        },
        ..MetricsConfig::default()
    }
}

fn enabled(prefix: &str) -> Metrics {
    Metrics::new(&config(true, prefix), 6001).expect("a valid prefix")
}

/// Counts a little traffic on two apps, then compares the exposition with `expected`.
fn check(metrics: &Metrics, expected: Expect) {
    let a = metrics.app("app-a");
    a.connected();
    a.connected();
    a.disconnected();
    a.ws_received(10);
    a.ws_sent(100);
    a.ws_sent(50);
    a.http_call(30, 2);
    // A second handle of the same app counts into the same series.
    metrics.app("app-a").ws_received(5);
    metrics.app("app-b").connected();
    expected.assert_eq(&metrics.encode());
}

#[test]
fn exposition_has_soketis_names_and_labels() {
    check(
        &enabled("soketi_"),
        expect![[r##"
            # HELP soketi_connected The number of currently connected sockets.
            # TYPE soketi_connected gauge
            soketi_connected{app_id="app-a",port="6001"} 1
            soketi_connected{app_id="app-b",port="6001"} 1
            # HELP soketi_new_connections_total Total amount of soketi connection requests.
            # TYPE soketi_new_connections_total counter
            soketi_new_connections_total{app_id="app-a",port="6001"} 2
            soketi_new_connections_total{app_id="app-b",port="6001"} 1
            # HELP soketi_new_disconnections_total Total amount of soketi disconnections.
            # TYPE soketi_new_disconnections_total counter
            soketi_new_disconnections_total{app_id="app-a",port="6001"} 1
            soketi_new_disconnections_total{app_id="app-b",port="6001"} 0
            # HELP soketi_socket_received_bytes Total amount of bytes that soketi received.
            # TYPE soketi_socket_received_bytes counter
            soketi_socket_received_bytes{app_id="app-a",port="6001"} 15
            soketi_socket_received_bytes{app_id="app-b",port="6001"} 0
            # HELP soketi_socket_transmitted_bytes Total amount of bytes that soketi transmitted.
            # TYPE soketi_socket_transmitted_bytes counter
            soketi_socket_transmitted_bytes{app_id="app-a",port="6001"} 150
            soketi_socket_transmitted_bytes{app_id="app-b",port="6001"} 0
            # HELP soketi_ws_messages_received_total The total amount of WS messages received from connections by the server.
            # TYPE soketi_ws_messages_received_total counter
            soketi_ws_messages_received_total{app_id="app-a",port="6001"} 2
            soketi_ws_messages_received_total{app_id="app-b",port="6001"} 0
            # HELP soketi_ws_messages_sent_total The total amount of WS messages sent to the connections from the server.
            # TYPE soketi_ws_messages_sent_total counter
            soketi_ws_messages_sent_total{app_id="app-a",port="6001"} 2
            soketi_ws_messages_sent_total{app_id="app-b",port="6001"} 0
            # HELP soketi_http_received_bytes Total amount of bytes that soketi's REST API received.
            # TYPE soketi_http_received_bytes counter
            soketi_http_received_bytes{app_id="app-a",port="6001"} 30
            soketi_http_received_bytes{app_id="app-b",port="6001"} 0
            # HELP soketi_http_transmitted_bytes Total amount of bytes that soketi's REST API sent back.
            # TYPE soketi_http_transmitted_bytes counter
            soketi_http_transmitted_bytes{app_id="app-a",port="6001"} 2
            soketi_http_transmitted_bytes{app_id="app-b",port="6001"} 0
            # HELP soketi_http_calls_received_total Total amount of received REST API calls.
            # TYPE soketi_http_calls_received_total counter
            soketi_http_calls_received_total{app_id="app-a",port="6001"} 1
            soketi_http_calls_received_total{app_id="app-b",port="6001"} 0
        "##]],
    );
}

#[test]
fn metrics_are_described_before_they_have_series() {
    expect![[r#"
        # HELP soketi_connected The number of currently connected sockets.
        # TYPE soketi_connected gauge
        # HELP soketi_new_connections_total Total amount of soketi connection requests.
        # TYPE soketi_new_connections_total counter
        # HELP soketi_new_disconnections_total Total amount of soketi disconnections.
        # TYPE soketi_new_disconnections_total counter
        # HELP soketi_socket_received_bytes Total amount of bytes that soketi received.
        # TYPE soketi_socket_received_bytes counter
        # HELP soketi_socket_transmitted_bytes Total amount of bytes that soketi transmitted.
        # TYPE soketi_socket_transmitted_bytes counter
        # HELP soketi_ws_messages_received_total The total amount of WS messages received from connections by the server.
        # TYPE soketi_ws_messages_received_total counter
        # HELP soketi_ws_messages_sent_total The total amount of WS messages sent to the connections from the server.
        # TYPE soketi_ws_messages_sent_total counter
        # HELP soketi_http_received_bytes Total amount of bytes that soketi's REST API received.
        # TYPE soketi_http_received_bytes counter
        # HELP soketi_http_transmitted_bytes Total amount of bytes that soketi's REST API sent back.
        # TYPE soketi_http_transmitted_bytes counter
        # HELP soketi_http_calls_received_total Total amount of received REST API calls.
        # TYPE soketi_http_calls_received_total counter
    "#]]
    .assert_eq(&enabled("soketi_").encode());
}

#[test]
fn threads_count_into_one_series() {
    let metrics = enabled("soketi_");
    let app = metrics.app("app-a");
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..1000 {
                    app.ws_sent(3);
                }
            });
        }
    });
    let text = metrics.encode();
    for line in [
        "soketi_ws_messages_sent_total{app_id=\"app-a\",port=\"6001\"} 8000\n",
        "soketi_socket_transmitted_bytes{app_id=\"app-a\",port=\"6001\"} 24000\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[test]
fn the_prefix_is_used_as_given() {
    let metrics = enabled("x:");
    metrics.app("a").ws_sent(1);
    let text = metrics.encode();
    for name in std::iter::once(&CONNECTED).chain(&COUNTERS).map(|s| s.name) {
        assert!(
            text.contains(&format!("# TYPE x:{name} ")),
            "x:{name} in\n{text}"
        );
    }
    assert!(
        !text.contains("soketi_") && !text.contains("_total_total"),
        "{text}"
    );
}

#[test]
fn label_values_are_left_alone() {
    // An app whose id is a metric's name must not lose its `_total`.
    let metrics = enabled("soketi_");
    metrics
        .app("soketi_socket_received_bytes_total")
        .ws_received(1);
    let text = metrics.encode();
    assert!(
        text.contains(
            "soketi_socket_received_bytes{app_id=\"soketi_socket_received_bytes_total\",port=\"6001\"} 1\n"
        ),
        "{text}"
    );
}

#[test]
fn json_has_prom_clients_shape() {
    let metrics = enabled("soketi_");
    let a = metrics.app("app-a");
    a.connected();
    a.ws_sent(7);
    let json = metrics.to_json();
    let all = json.as_array().expect("an array");
    assert_eq!(all.len(), 1 + COUNTERS.len());
    expect![[r#"{"aggregator":"sum","help":"The number of currently connected sockets.","name":"soketi_connected","type":"gauge","values":[{"labels":{"app_id":"app-a","port":6001},"value":1}]}"#]]
        .assert_eq(&all[0].to_string());
    let sent = all
        .iter()
        .find(|m| m["name"] == "soketi_socket_transmitted_bytes")
        .expect("the byte counter");
    assert_eq!(sent["type"], "counter");
    assert_eq!(sent["values"][0]["value"], 7);
}

#[test]
fn disabled_metrics_count_nothing() {
    let metrics = Metrics::new(&config(false, "soketi_"), 6001).expect("disabled");
    assert!(!metrics.is_enabled());
    let app = metrics.app("app-a");
    app.connected();
    app.ws_sent(10);
    assert!(app.0.is_none());
    assert_eq!(metrics.encode(), "");
    assert_eq!(metrics.to_json(), json!([]));
}

#[test]
fn prefixes() {
    for (prefix, valid) in [
        ("soketi_", true),
        ("", true),
        ("my:app_", true),
        ("_x", true),
        ("9lives_", false),
        ("my-app_", false),
        ("my app", false),
        ("é_", false),
    ] {
        let made = Metrics::new(&config(true, prefix), 6001);
        assert_eq!(made.is_ok(), valid, "prefix {prefix:?}");
    }
    // A disabled server does not care about its prefix.
    assert!(Metrics::new(&config(false, "9lives"), 6001).is_ok());
}

#[test]
fn suffixes_are_dropped_only_from_whole_names() {
    let unsuffixed = ["p_bytes_total".to_owned()];
    let text = "# HELP p_bytes_total Bytes.\n# TYPE p_bytes_total counter\np_bytes_total{a=\"p_bytes_total\"} 1\np_bytes_total 2\np_bytes_total_x 3\nq_p_bytes_total 4\n# HELP p_other_total x\n";
    expect![[r#"
        # HELP p_bytes Bytes.
        # TYPE p_bytes counter
        p_bytes{a="p_bytes_total"} 1
        p_bytes 2
        p_bytes_total_x 3
        q_p_bytes_total 4
        # HELP p_other_total x
    "#]]
    .assert_eq(&drop_total_suffix(text, &unsuffixed));
}
