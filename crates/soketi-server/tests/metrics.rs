//! The operations server (probes, `/usage`, Prometheus `/metrics`) and the main port's
//! `/accept-traffic`, driven by a raw WebSocket client and signed HTTP API calls.

mod support;

use std::net::SocketAddr;

use support::{RawWs, api, eventually, get, server};

/// soketi's metrics, with their Prometheus types.
const SOKETI_METRICS: [(&str, &str); 10] = [
    ("connected", "gauge"),
    ("new_connections_total", "counter"),
    ("new_disconnections_total", "counter"),
    ("socket_received_bytes", "counter"),
    ("socket_transmitted_bytes", "counter"),
    ("ws_messages_received_total", "counter"),
    ("ws_messages_sent_total", "counter"),
    ("http_received_bytes", "counter"),
    ("http_transmitted_bytes", "counter"),
    ("http_calls_received_total", "counter"),
];

/// The metrics of the default app, scraped once.
struct Scrape {
    text: String,
    port: u16,
}

impl Scrape {
    async fn new(server: &soketi_server::RunningServer) -> Self {
        let response = get(server.metrics_addr(), "/metrics").await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        Self {
            text: response.body,
            port: server.local_addr().port(),
        }
    }

    /// The value of `soketi_<name>` for app `app-id` and the main port; 0 when there is no
    /// such series yet.
    fn value(&self, name: &str) -> u64 {
        let start = format!("soketi_{name}{{app_id=\"app-id\",port=\"{}\"}} ", self.port);
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(&start))
            .map_or(0, |value| value.parse().expect("an integer sample"))
    }
}

async fn scrape_value(server: &soketi_server::RunningServer, name: &str) -> u64 {
    Scrape::new(server).await.value(name)
}

/// Reads the next frame and returns the length of its payload, checking that it is `event`.
async fn next_event(ws: &mut RawWs, event: &str) -> u64 {
    let frame = ws.next_frame().await.expect("a frame");
    assert_eq!(frame.json()["event"], event, "{:?}", frame.json());
    frame.payload.len() as u64
}

#[tokio::test]
async fn counts_a_clients_traffic_and_the_http_api_per_app() {
    let server = server(|c| c.metrics.enabled = true).await;
    let addr = server.local_addr();

    let before = Scrape::new(&server).await;
    for (name, kind) in SOKETI_METRICS {
        let line = format!("# TYPE soketi_{name} {kind}\n");
        assert!(before.text.contains(&line), "{line} in\n{}", before.text);
    }
    assert!(!before.text.contains("_total_total"), "{}", before.text);
    assert!(
        !before.text.contains("soketi_socket_received_bytes_total"),
        "{}",
        before.text
    );

    let mut ws = RawWs::connect(addr, "/app/app-key?protocol=7").await;
    let mut sent = next_event(&mut ws, "pusher:connection_established").await;
    let subscribe = r#"{"event":"pusher:subscribe","data":{"channel":"metered"}}"#;
    ws.send_text(subscribe).await;
    sent += next_event(&mut ws, "pusher_internal:subscription_succeeded").await;
    let body = r#"{"name":"tick","channel":"metered","data":"{\"n\":1}"}"#;
    let (status, answer) = api(addr, "POST", "/apps/app-id/events", body).await;
    assert_eq!((status, answer.to_string().as_str()), (200, "{}"));
    sent += next_event(&mut ws, "tick").await;

    // Frames are counted when queued and calls before they are answered: the client has seen
    // everything, so the counts are final.
    let after = Scrape::new(&server).await;
    let expected = [
        ("connected", 1),
        ("new_connections_total", 1),
        ("new_disconnections_total", 0),
        ("ws_messages_received_total", 1),
        ("socket_received_bytes", subscribe.len() as u64),
        ("ws_messages_sent_total", 3),
        ("socket_transmitted_bytes", sent),
        ("http_calls_received_total", 1),
        ("http_received_bytes", body.len() as u64),
        ("http_transmitted_bytes", "{}".len() as u64),
    ];
    for (name, value) in expected {
        assert_eq!(after.value(name), value, "soketi_{name} in\n{}", after.text);
    }

    let json = get(server.metrics_addr(), "/metrics?json=1").await.json();
    let connected = json
        .as_array()
        .and_then(|all| all.iter().find(|m| m["name"] == "soketi_connected"))
        .expect("soketi_connected in the JSON");
    assert_eq!(connected["type"], "gauge");
    assert_eq!(connected["values"][0]["labels"]["app_id"], "app-id");
    assert_eq!(connected["values"][0]["value"], 1);

    drop(ws);
    eventually("the disconnection to be counted", || async {
        scrape_value(&server, "new_disconnections_total").await == 1
    })
    .await;
    assert_eq!(scrape_value(&server, "connected").await, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn operations_routes_answer_probes_and_usage() {
    let server = server(|_| {}).await;
    let ops = server.metrics_addr();
    for path in ["/", "/ready"] {
        let response = get(ops, path).await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, "OK"),
            "{path}"
        );
    }

    let usage = get(ops, "/usage").await;
    assert_eq!(usage.status, 200, "{usage:?}");
    let memory = &usage.json()["memory"];
    let field = |name: &str| memory[name].as_f64().unwrap_or(-1.0);
    assert!(field("total") > 0.0, "{memory}");
    assert!(
        field("free") >= 0.0 && field("free") <= field("total"),
        "{memory}"
    );
    assert_eq!(field("used") + field("free"), field("total"), "{memory}");
    assert!((0.0..=100.0).contains(&field("percent")), "{memory}");

    // Metrics are off by default: /metrics is not served.
    let metrics = get(ops, "/metrics").await;
    assert_eq!(metrics.status, 404, "{metrics:?}");
    assert_eq!(metrics.json()["code"], 404);
    assert_eq!(get(ops, "/nothing-here").await.status, 404);
    // The operations port serves no WebSocket and no HTTP API.
    assert_eq!(get(ops, "/apps/app-id/channels").await.status, 404);

    let accept = get(server.local_addr(), "/accept-traffic").await;
    assert_eq!(accept.status, 200, "{accept:?}");
    assert_eq!(accept.header("content-type"), Some("application/json"));
    let memory = &accept.json()["memory"];
    let field = |name: &str| memory[name].as_f64().unwrap_or(-1.0);
    assert!(field("usedSize") > 0.0, "{memory}");
    assert!(field("totalSize") >= field("usedSize"), "{memory}");
    let percent = field("usedSize") / field("totalSize") * 100.0;
    assert!((field("percentUsage") - percent).abs() < 1e-9, "{memory}");
    server.shutdown().await;
}

#[tokio::test]
async fn accept_traffic_refuses_over_its_memory_threshold() {
    let server = server(|c| c.http_api.accept_traffic.memory_threshold = 0.0001).await;
    let response = get(server.local_addr(), "/accept-traffic").await;
    assert_eq!(response.status, 500, "{response:?}");
    let json = response.json();
    assert_eq!(json["code"], 500);
    assert!(json["error"].is_string(), "{json}");
    server.shutdown().await;
}

#[tokio::test]
async fn ready_answers_503_while_the_server_closes() {
    let server = server(|c| c.shutdown_grace_period = 5000).await;
    let ops = server.metrics_addr();
    // A client that does not answer the close keeps the server in its grace period.
    let (mut client, _) = RawWs::connect_app(server.local_addr()).await;
    let shutdown = tokio::spawn(server.shutdown());
    eventually("/ready to answer 503", || async {
        get(ops, "/ready").await.status == 503
    })
    .await;
    let ready = get(ops, "/ready").await;
    assert_eq!(ready.json()["code"], 503, "{ready:?}");
    assert_eq!(client.read_to_close().await, Some(4200));
    drop(client);
    shutdown.await.expect("shutdown completes");
    assert!(
        tokio::net::TcpStream::connect(ops).await.is_err(),
        "the operations port is closed after shutdown"
    );
}

#[tokio::test]
async fn a_taken_operations_port_fails_the_start_and_names_the_option() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let error = start_error(|c| c.metrics.port = port).await;
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("SOKETI_METRICS_SERVER_PORT"), "{error}");
}

#[tokio::test]
async fn an_invalid_prefix_fails_the_start_and_names_the_option() {
    let error = start_error(|c| {
        c.metrics.enabled = true;
        c.metrics.prometheus.prefix = "my-app_".into();
    })
    .await;
    assert!(
        error.contains("SOKETI_METRICS_PROMETHEUS_PREFIX"),
        "{error}"
    );
}

/// The message of the error that `start` fails with under `tweak`.
async fn start_error(tweak: impl FnOnce(&mut soketi_server::Config)) -> String {
    let mut config = soketi_server::Config {
        host: "127.0.0.1".into(),
        port: 0,
        ..soketi_server::Config::default()
    };
    config.metrics.host = "127.0.0.1".into();
    config.metrics.port = 0;
    tweak(&mut config);
    match soketi_server::start(config).await {
        Ok(server) => {
            let addr: SocketAddr = server.metrics_addr();
            server.shutdown().await;
            panic!("the server started, with its operations server on {addr}");
        }
        Err(e) => e.to_string(),
    }
}
