use std::time::Duration;

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
    // The horizontal adapter asked two nodes twice for app-a: both answered in 0.3 ms, then
    // one of them only, before the timeout at 7 s. It answered one request about app-b.
    metrics.request_sent("app-a");
    metrics.response_received("app-a");
    metrics.response_received("app-a");
    metrics.request_resolved("app-a", true, Duration::from_micros(300));
    metrics.request_sent("app-a");
    metrics.response_received("app-a");
    metrics.request_resolved("app-a", false, Duration::from_secs(7));
    metrics.request_received("app-b");
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
            # HELP soketi_horizontal_adapter_resolve_time The average resolve time for requests to other nodes.
            # TYPE soketi_horizontal_adapter_resolve_time histogram
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="0.005"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="0.01"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="0.025"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="0.05"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="0.1"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="0.25"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="0.5"} 1
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="1"} 1
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="2.5"} 1
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="5"} 1
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="10"} 1
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-a",port="6001",le="+Inf"} 2
            soketi_horizontal_adapter_resolve_time_sum{app_id="app-a",port="6001"} 7000.3
            soketi_horizontal_adapter_resolve_time_count{app_id="app-a",port="6001"} 2
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="0.005"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="0.01"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="0.025"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="0.05"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="0.1"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="0.25"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="0.5"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="1"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="2.5"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="5"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="10"} 0
            soketi_horizontal_adapter_resolve_time_bucket{app_id="app-b",port="6001",le="+Inf"} 0
            soketi_horizontal_adapter_resolve_time_sum{app_id="app-b",port="6001"} 0.0
            soketi_horizontal_adapter_resolve_time_count{app_id="app-b",port="6001"} 0
            # HELP soketi_horizontal_adapter_resolved_promises The total amount of promises that were fulfilled by other nodes.
            # TYPE soketi_horizontal_adapter_resolved_promises counter
            soketi_horizontal_adapter_resolved_promises{app_id="app-a",port="6001"} 1
            soketi_horizontal_adapter_resolved_promises{app_id="app-b",port="6001"} 0
            # HELP soketi_horizontal_adapter_uncomplete_promises The total amount of promises that were not fulfilled entirely by other nodes.
            # TYPE soketi_horizontal_adapter_uncomplete_promises counter
            soketi_horizontal_adapter_uncomplete_promises{app_id="app-a",port="6001"} 1
            soketi_horizontal_adapter_uncomplete_promises{app_id="app-b",port="6001"} 0
            # HELP soketi_horizontal_adapter_sent_requests The total amount of sent requests to other nodes.
            # TYPE soketi_horizontal_adapter_sent_requests counter
            soketi_horizontal_adapter_sent_requests{app_id="app-a",port="6001"} 2
            soketi_horizontal_adapter_sent_requests{app_id="app-b",port="6001"} 0
            # HELP soketi_horizontal_adapter_received_requests The total amount of received requests from other nodes.
            # TYPE soketi_horizontal_adapter_received_requests counter
            soketi_horizontal_adapter_received_requests{app_id="app-a",port="6001"} 0
            soketi_horizontal_adapter_received_requests{app_id="app-b",port="6001"} 1
            # HELP soketi_horizontal_adapter_received_responses The total amount of received responses from other nodes.
            # TYPE soketi_horizontal_adapter_received_responses counter
            soketi_horizontal_adapter_received_responses{app_id="app-a",port="6001"} 3
            soketi_horizontal_adapter_received_responses{app_id="app-b",port="6001"} 0
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
        # HELP soketi_horizontal_adapter_resolve_time The average resolve time for requests to other nodes.
        # TYPE soketi_horizontal_adapter_resolve_time histogram
        # HELP soketi_horizontal_adapter_resolved_promises The total amount of promises that were fulfilled by other nodes.
        # TYPE soketi_horizontal_adapter_resolved_promises counter
        # HELP soketi_horizontal_adapter_uncomplete_promises The total amount of promises that were not fulfilled entirely by other nodes.
        # TYPE soketi_horizontal_adapter_uncomplete_promises counter
        # HELP soketi_horizontal_adapter_sent_requests The total amount of sent requests to other nodes.
        # TYPE soketi_horizontal_adapter_sent_requests counter
        # HELP soketi_horizontal_adapter_received_requests The total amount of received requests from other nodes.
        # TYPE soketi_horizontal_adapter_received_requests counter
        # HELP soketi_horizontal_adapter_received_responses The total amount of received responses from other nodes.
        # TYPE soketi_horizontal_adapter_received_responses counter
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
    for name in [&CONNECTED, &RESOLVE_TIME]
        .into_iter()
        .chain(&COUNTERS)
        .map(|s| s.name)
    {
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
    assert_eq!(all.len(), 2 + COUNTERS.len());
    expect![[r#"{"aggregator":"sum","help":"The number of currently connected sockets.","name":"soketi_connected","type":"gauge","values":[{"labels":{"app_id":"app-a","port":6001},"value":1}]}"#]]
        .assert_eq(&all[0].to_string());
    let sent = all
        .iter()
        .find(|m| m["name"] == "soketi_socket_transmitted_bytes")
        .expect("the byte counter");
    assert_eq!(sent["type"], "counter");
    assert_eq!(sent["values"][0]["value"], 7);

    metrics.request_resolved("app-a", true, Duration::from_millis(2));
    let json = metrics.to_json();
    let time = json
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|m| m["name"] == "soketi_horizontal_adapter_resolve_time")
        })
        .expect("the histogram");
    assert_eq!(time["type"], "histogram");
    let values = time["values"].as_array().expect("its values");
    // 11 bounds and +Inf, then the sum and the count.
    assert_eq!(values.len(), 14);
    expect![[r#"{"labels":{"app_id":"app-a","le":2.5,"port":6001},"metricName":"soketi_horizontal_adapter_resolve_time_bucket","value":1}"#]]
        .assert_eq(&values[8].to_string());
    expect![[r#"{"labels":{"app_id":"app-a","le":"+Inf","port":6001},"metricName":"soketi_horizontal_adapter_resolve_time_bucket","value":1}"#]]
        .assert_eq(&values[11].to_string());
    expect![[r#"{"labels":{"app_id":"app-a","port":6001},"metricName":"soketi_horizontal_adapter_resolve_time_count","value":1}"#]]
        .assert_eq(&values[13].to_string());
}

#[test]
fn apps_named_by_peers_are_bounded() {
    let metrics = enabled("soketi_");
    for i in 0..MAX_APPS_FROM_PEERS + 10 {
        metrics.request_received(&format!("app-{i}"));
    }
    let apps = &metrics.inner.as_ref().expect("enabled").apps;
    assert_eq!(apps.by_id.len(), MAX_APPS_FROM_PEERS);
    // An app already counted still counts, and so does one the server looked up.
    metrics.request_received("app-0");
    metrics.request_sent("app-new");
    assert_eq!(apps.by_id.len(), MAX_APPS_FROM_PEERS + 1);
    let text = metrics.encode();
    for line in [
        "soketi_horizontal_adapter_received_requests{app_id=\"app-0\",port=\"6001\"} 2\n",
        "soketi_horizontal_adapter_sent_requests{app_id=\"app-new\",port=\"6001\"} 1\n",
    ] {
        assert!(text.contains(line), "{line}");
    }
}

#[test]
fn only_integer_bounds_of_the_histogram_lose_their_fraction() {
    let text = "h_bucket{a=\"x\",le=\"1.0\"} 1\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_bucket{le=\"10.0\"} 1\nother_bucket{le=\"1.0\"} 1\nh_bucket_x{le=\"1.0\"} 1\nh_sum 1.0\n";
    expect![[r#"
        h_bucket{a="x",le="1"} 1
        h_bucket{le="0.5"} 1
        h_bucket{le="+Inf"} 1
        h_bucket{le="10"} 1
        other_bucket{le="1.0"} 1
        h_bucket_x{le="1.0"} 1
        h_sum 1.0
    "#]]
    .assert_eq(&integer_bounds_as_js(text, "h_bucket"));
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
