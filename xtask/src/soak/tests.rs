use serde_json::json;

use super::{Options, condensed_row, render};

fn check(args: &[&str], expected: Result<Options, &str>) {
    crate::cmd::check_parse(Options::parse, args, expected);
}

#[test]
fn options() {
    check(
        &[],
        Ok(Options {
            minutes: 30,
            nodes: 1,
            connections: 19_000,
        }),
    );
    check(
        &["--minutes", "2", "--nodes=3", "--connections", "600"],
        Ok(Options {
            minutes: 2,
            nodes: 3,
            connections: 600,
        }),
    );
    check(
        &["--minutes", "0"],
        Err("`--minutes 0`: expected 1 to 1440"),
    );
    check(&["--minutes"], Err("`--minutes` needs a value"));
    check(&["--nodes", "9"], Err("`--nodes 9`: expected 1 to 8"));
    check(
        &["--connections", "25000"],
        Err("`--connections 25000`: expected 20 to 19500"),
    );
    check(
        &["--quick", "1"],
        Err("unknown option `--quick` for `soak`"),
    );
}

#[test]
fn channels_keep_about_nineteen_subscribers() {
    let channels = |connections| {
        Options {
            minutes: 1,
            nodes: 1,
            connections,
        }
        .channels()
    };
    assert_eq!(channels(19_000), 1000);
    assert_eq!(channels(19_500), 1000);
    assert_eq!(channels(1900), 100);
    assert_eq!(channels(20), 1);
}

#[test]
fn the_condensed_table_keeps_the_first_every_fifth_and_the_last_minute() {
    let kept: Vec<u64> = (1..=32)
        .filter(|&minute| condensed_row(minute, 32))
        .collect();
    assert_eq!(kept, vec![1, 5, 10, 15, 20, 25, 30, 32]);
}

#[test]
fn renders_rows_and_the_targets() {
    let row = |minute: u64, rss: u64| {
        json!({
            "minute": minute, "rss_kib": rss, "rss_kib_per_node": [rss],
            "fds_per_node": [19_020], "latency": { "p50": 0.5, "p99": 2.25 },
            "deliveries": 228_000, "lost": 0, "duplicated": 0, "connections": 19_000,
            "reconnects": 11_400, "client_events_sent": 3000, "client_events_received": 54_000,
            "api_reads": 180, "api_read_failed": 0, "server_cpu_percent": 41.0, "errors": 0,
        })
    };
    let report = json!({
        "setup": { "subscribed": 19_000, "wanted": 19_000, "seconds": 2.5 },
        "closed_by_server": 0,
        "soak": {
            "minutes": [row(1, 60_000), row(2, 61_440)],
            "witnesses": 1000, "churners": 18_000, "witnesses_closed": 0, "settle_secs": 5.0,
            "before": { "fds_per_node": [20], "rss_kib_per_node": [8192] },
            "after": { "fds_per_node": [20], "rss_kib_per_node": [20_480] },
            "summary": {
                "reference_minute": 1, "last_minute": 2, "rss_reference_kib": 60_000,
                "rss_last_kib": 61_440, "rss_drift_percent": 2.4, "p99_reference_ms": 2.25,
                "p99_last_ms": 2.25, "deliveries": 456_000, "lost": 0, "duplicated": 0,
                "reconnects": 22_800, "fds_before": 20, "fds_after": 20,
            },
        },
    });
    let options = Options {
        minutes: 2,
        nodes: 1,
        connections: 19_000,
    };
    let text = render(&report, &options, "a machine", |_, _| true);
    assert!(
        text.starts_with("Command: `cargo xtask soak --minutes 2`. a machine."),
        "{text}"
    );
    assert!(
        text.contains(
            "| 2 | 60.0 | 60.0 | 19020 | 0.50 | 2.25 | 228000 | 0 | 0 | 19000 | 11400 | \
             3000 / 54000 | 180 (0) | 41 |"
        ),
        "{text}"
    );
    assert!(
        text.contains("a drift of +2.40 % (target < 5 %: met)"),
        "{text}"
    );
    assert!(
        text.contains("20 (20) (target back to baseline: met)"),
        "{text}"
    );
}
