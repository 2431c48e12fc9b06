//! The generator against an in-process soketi-rs server, at small sizes: every mode runs to its
//! end and its counts add up.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use soketi_bench::{
    App, Attack, BenchError, ChannelKind, Mode, Pacing, Plan, PublishPlan, SoakPlan, Sources,
    StepPlan, run,
};
use soketi_server::{Config, RunningServer};

async fn server() -> RunningServer {
    server_with(|_| {}).await
}

async fn server_with(tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        ..Config::default()
    };
    config.metrics.host = "127.0.0.1".into();
    config.metrics.port = 0;
    tweak(&mut config);
    soketi_server::start(config).await.expect("server starts")
}

/// Steps at `rates` of `publishers` publishers sharing one schedule.
fn shared_steps(rates: &[u32], publishers: usize) -> Vec<StepPlan> {
    rates
        .iter()
        .map(|&rate| StepPlan {
            rate,
            publishers,
            pacing: Pacing::Shared,
        })
        .collect()
}

fn plan(server: SocketAddr, connections: usize, channels: usize, mode: Mode) -> Plan {
    Plan {
        servers: vec![server],
        api: server,
        app: App::default(),
        connections,
        channels,
        kind: ChannelKind::Public,
        handshakes: 4,
        // Two connections per address, so that several source addresses are used.
        sources: Sources {
            first: Some(Ipv4Addr::new(127, 0, 0, 2)),
            per_address: 2,
        },
        connect_deadline: Duration::from_secs(20),
        server_pids: vec![std::process::id()],
        progress: false,
        mode,
        attack: None,
        console: false,
    }
}

/// Two half-second steps at 20 and 40 publishes a second, of `payload` bytes each.
fn two_steps(payload: usize) -> Mode {
    Mode::Publish(PublishPlan {
        steps: shared_steps(&[20, 40], 2),
        step: Duration::from_millis(500),
        // A deadline, not a pause: the drain ends once every delivery owed has arrived, so a
        // busy machine gets its time and a quiet one does not wait.
        drain: Duration::from_secs(30),
        stop_when_behind: false,
        payload,
        publisher_thread: false,
    })
}

#[tokio::test]
async fn publishes_and_times_every_delivery_on_private_channels() {
    let server = server().await;
    let mut plan = plan(server.local_addr(), 12, 3, two_steps(100));
    plan.kind = ChannelKind::Private;
    let report = run(plan).await.expect("the run completes");

    assert_eq!((report.setup.subscribed, report.setup.failed), (12, 0));
    assert_eq!(report.setup.per_connection.count, 12);
    assert_eq!(report.steps.len(), 2);
    for step in &report.steps {
        assert!(step.published > 0, "{step:?}");
        assert_eq!(step.publish_failed, 0, "{step:?}");
        // Each event reaches the four subscribers of its channel.
        assert_eq!(step.expected, step.published * 4, "{step:?}");
        assert_eq!(step.in_time, step.expected, "{step:?}");
        assert_eq!(step.latency.count, step.expected, "{step:?}");
        assert!(step.latency.max >= step.latency.p50, "{step:?}");
        assert!(step.remote_latency.is_none());
        assert_eq!(step.http_latency.count, step.published, "{step:?}");
        assert_eq!(step.subscribers_affected, 0, "{step:?}");
    }
    assert_eq!(
        (
            report.lost,
            report.duplicated,
            report.reordered,
            report.closed_by_server
        ),
        (0, 0, 0, 0)
    );
    assert!(report.peak_deliveries_per_sec > 0.0);
    assert!(report.generator.open_files_limit > 0);
    server.shutdown().await;
}

#[tokio::test]
async fn counts_the_lines_of_a_console_open_over_the_run() {
    let server = server().await;
    let mut plan = plan(server.local_addr(), 6, 3, two_steps(64));
    plan.console = true;
    let report = run(plan).await.expect("the run completes");

    let published: u64 = report.steps.iter().map(|step| step.published).sum();
    assert!(published > 0);
    let console = report.console.expect("a console report");
    // One `event` line per publish (each to one channel), after the `hello`; the connections
    // subscribed before the console opened, and closed after it stopped.
    assert_eq!(console.events, published, "{console:?}");
    assert_eq!(console.by_type.get("hello"), Some(&1), "{console:?}");
    for kind in ["subscribed", "unsubscribed", "disconnection"] {
        assert_eq!(console.by_type.get(kind), None, "{console:?}");
    }
    assert!(console.lines > console.events, "{console:?}");
    assert_eq!(console.dropped, 0, "{console:?}");
    assert!(console.connected, "{console:?}");
    assert_eq!((report.lost, report.duplicated), (0, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn fails_a_run_whose_console_is_refused() {
    let server = server_with(|c| c.console.enabled = false).await;
    let mode = Mode::Idle {
        hold: Duration::from_millis(10),
    };
    let mut plan = plan(server.local_addr(), 2, 1, mode);
    plan.console = true;
    let err = run(plan).await.expect_err("the console is off");
    assert!(
        matches!(err, BenchError::ConsoleRefused { status: 404 }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the console stream was refused: HTTP status 404"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn publishers_on_schedules_of_their_own_never_pass_their_rate() {
    let server = server().await;
    let step = |rate, publishers| StepPlan {
        rate,
        publishers,
        pacing: Pacing::PerPublisher,
    };
    let mode = Mode::Publish(PublishPlan {
        steps: vec![step(20, 1), step(60, 3)],
        step: Duration::from_millis(1000),
        drain: Duration::from_secs(30),
        stop_when_behind: true,
        payload: 64,
        publisher_thread: true,
    });
    let report = run(plan(server.local_addr(), 8, 2, mode))
        .await
        .expect("the run completes");

    assert_eq!(report.steps.len(), 2);
    for (step, publishers) in report.steps.iter().zip([1, 3]) {
        assert_eq!(step.publishers, publishers, "{step:?}");
        // A second at `rate`: each publisher's slots start within one interval, so the step
        // has at most `rate` of them.
        assert!(step.published > 0, "{step:?}");
        assert!(step.published <= u64::from(step.rate), "{step:?}");
        assert_eq!(step.publish_failed, 0, "{step:?}");
        assert_eq!(step.http_latency.count, step.published, "{step:?}");
        assert_eq!(step.expected, step.published * 4, "{step:?}");
        assert_eq!(step.latency.count, step.expected, "{step:?}");
        assert_eq!(
            (step.lost, step.duplicated, step.reordered),
            (0, 0, 0),
            "{step:?}"
        );
    }
    assert_eq!(
        (report.lost, report.duplicated, report.reordered),
        (0, 0, 0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn counts_the_subscription_count_events_of_a_join_storm() {
    let connections = 12;
    for enabled in [true, false] {
        let server = server_with(|c| {
            c.app_manager.array.apps[0].enable_subscription_count = Some(enabled);
        })
        .await;
        // Enough for the server's count interval (2 s) when it is on; with it off, no count
        // comes and the run waits it out.
        let settle = Duration::from_secs(if enabled { 10 } else { 1 });
        let mode = Mode::SubscriptionCount { settle };
        let report = run(plan(server.local_addr(), connections, 1, mode))
            .await
            .expect("the run completes");

        // The connections opened without subscribing; the storm joined them.
        assert_eq!(report.setup.subscribed, connections);
        let joins = report
            .subscription_count
            .expect("a subscription-count report");
        assert_eq!((joins.joins, joins.acknowledged, joins.failed), (12, 12, 0));
        assert_eq!(joins.join_latency.count, 12, "{joins:?}");
        assert_eq!(joins.final_count, 12, "{joins:?}");
        if enabled {
            assert!(joins.all_at_final_count, "{joins:?}");
            assert_eq!(joins.at_final_count, 12, "{joins:?}");
            assert!(joins.events.min >= 1, "{joins:?}");
            assert!(joins.final_count_seconds.is_some(), "{joins:?}");
        } else {
            assert_eq!(joins.events.total, 0, "{joins:?}");
            assert!(!joins.all_at_final_count, "{joins:?}");
        }
        assert_eq!(report.closed_by_server, 0);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn churns_a_presence_channel() {
    let server = server().await;
    let mode = Mode::Churn {
        churners: 3,
        duration: Duration::from_millis(500),
    };
    let mut plan = plan(server.local_addr(), 10, 1, mode);
    plan.kind = ChannelKind::Presence;
    let report = run(plan).await.expect("the run completes");

    assert_eq!(report.setup.subscribed, 10);
    let churn = report.churn.expect("a churn report");
    assert_eq!(churn.members, 10);
    assert_eq!(churn.failed, 0);
    // Each cycle is a leave and a join; every completed join was timed.
    assert!(churn.operations >= 2, "{churn:?}");
    assert_eq!(churn.operations, churn.join_latency.count * 2, "{churn:?}");
    assert!(churn.member_events_per_sec > 0.0, "{churn:?}");
    assert_eq!(report.closed_by_server, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn holds_idle_connections_and_reads_memory() {
    let server = server().await;
    let mode = Mode::Idle {
        hold: Duration::from_millis(200),
    };
    let report = run(plan(server.local_addr(), 8, 2, mode))
        .await
        .expect("the run completes");

    assert_eq!(report.setup.subscribed, 8);
    let idle = report.idle.expect("an idle report");
    assert!(idle.rss_after_kib > 0, "{idle:?}");
    assert_eq!(report.server.pids, vec![std::process::id()]);
    assert_eq!(report.closed_by_server, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn measures_http_publish_throughput() {
    let server = server().await;
    let mode = Mode::Http {
        connections: 2,
        duration: Duration::from_millis(300),
    };
    let report = run(plan(server.local_addr(), 0, 1, mode))
        .await
        .expect("the run completes");

    let http = report.http.expect("an HTTP report");
    assert!(http.ok > 0, "{http:?}");
    assert_eq!(http.failed, 0, "{http:?}");
    assert_eq!(http.latency.count, http.ok, "{http:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn reports_a_server_that_refuses_every_connection() {
    let server = server().await;
    let addr = server.local_addr();
    let mode = Mode::Idle {
        hold: Duration::from_millis(10),
    };
    let mut plan = plan(addr, 3, 1, mode);
    plan.app.key = "no-such-key".into();
    plan.server_pids.clear();
    let err = run(plan).await.expect_err("no connection can subscribe");
    assert!(
        matches!(err, BenchError::NoConnection { failed: 3, .. }),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn attackers_run_beside_the_load_and_count_what_the_server_did_to_them() {
    // A short headers timeout, so that the slowloris sockets are cut off within the run.
    let server = server_with(|c| c.http_api.headers_timeout = 300).await;
    let mode = Mode::Publish(PublishPlan {
        steps: shared_steps(&[20], 1),
        step: Duration::from_millis(1500),
        drain: Duration::from_secs(30),
        stop_when_behind: false,
        payload: 64,
        publisher_thread: false,
    });
    let mut plan = plan(server.local_addr(), 6, 2, mode);
    plan.attack = Some(Attack {
        target: server.local_addr(),
        slowloris: 10,
        uploads: 2,
        upload_bytes: 50 << 20,
    });
    let report = run(plan).await.expect("the run completes");
    let attack = report.attack.expect("an attack report");
    assert_eq!((attack.slowloris, attack.uploads), (10, 2));
    assert!(attack.slowloris_cut_off >= 10, "{attack:?}");
    assert!(
        attack.uploads_refused >= 2,
        "unsigned uploads get 401: {attack:?}"
    );
    assert!(
        attack.slowloris_longest_held_secs >= 0.3,
        "held at least the headers timeout: {attack:?}"
    );
    assert_eq!((report.lost, report.duplicated), (0, 0));
    assert!(report.server.rss_peak_kib >= report.server.rss_start_kib);
    server.shutdown().await;
}

#[tokio::test]
async fn soaks_mixed_channels_with_churn_client_events_and_api_reads() {
    let server =
        server_with(|c| c.app_manager.array.apps[0].enable_client_messages = Some(true)).await;
    let (sender, receiver) = std::sync::mpsc::channel();
    let mode = Mode::Soak(SoakPlan {
        minutes: 3,
        minute: Duration::from_millis(1500),
        publish_rate: 40,
        publishers: 2,
        payload: 64,
        // A fifth of the connections reconnect every second, so that each churner does at
        // least once in the run.
        reconnect_percent: 20.0,
        client_events_per_sec: 10.0,
        api_reads_per_sec: 6.0,
        settle: Duration::from_millis(500),
        rows: Some(sender),
    });
    // Ten channels (seven public, two private, one presence), a witness on each, and 30
    // churning connections.
    let mut plan = plan(server.local_addr(), 40, 10, mode);
    plan.kind = ChannelKind::Mixed;
    let report = run(plan).await.expect("the run completes");

    assert_eq!((report.setup.subscribed, report.setup.failed), (40, 0));
    let soak = report.soak.expect("a soak report");
    let live: Vec<_> = receiver.try_iter().map(|row| row.minute).collect();
    assert_eq!(live, vec![1, 2, 3], "each row went out as it closed");
    assert_eq!((soak.witnesses, soak.churners), (10, 30));
    assert_eq!(soak.minutes.len(), 3);
    for row in &soak.minutes {
        assert!(row.published > 0, "{row:?}");
        assert_eq!(row.publish_failed, 0, "{row:?}");
        assert_eq!(row.witness_expected, row.published, "{row:?}");
        assert!(row.deliveries >= row.witness_expected, "{row:?}");
        assert_eq!(row.latency.count, row.deliveries, "{row:?}");
        assert!(row.api_reads > 0 && row.api_read_failed == 0, "{row:?}");
        assert_eq!(row.errors, 0, "{row:?}");
        assert_eq!(row.fds_per_node.len(), 1, "{row:?}");
    }
    let total =
        |field: fn(&soketi_bench::Minute) -> u64| soak.minutes.iter().map(field).sum::<u64>();
    assert!(total(|row| row.reconnects) >= 30, "{:?}", soak.minutes);
    assert!(total(|row| row.client_events_sent) > 0);
    assert!(total(|row| row.client_events_received) > 0);
    assert!(
        total(|row| row.member_events) > 0,
        "presence members left and joined"
    );
    assert_eq!((soak.summary.lost, soak.summary.duplicated), (0, 0));
    assert_eq!((report.lost, report.duplicated), (0, 0));
    assert_eq!(soak.witnesses_closed, 0);
    assert_eq!(soak.summary.reference_minute, 1);
    assert_eq!(soak.summary.last_minute, 3);
    assert!(soak.before.fds() > 0 && soak.after.fds() > 0);
    server.shutdown().await;
}
