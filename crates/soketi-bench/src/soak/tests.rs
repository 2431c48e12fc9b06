use super::{Descriptors, Minute, SoakSummary, drift_percent, grace, reference_minute};
use crate::Latency;
use std::time::Duration;

fn check_drift(from: u64, to: u64, expected: f64) {
    let actual = drift_percent(from, to);
    assert!(
        (actual - expected).abs() < 1e-9,
        "{from} → {to}: {actual} %, expected {expected} %"
    );
}

#[test]
fn drift_is_the_change_in_percent_of_the_reference() {
    check_drift(100_000, 104_000, 4.0);
    check_drift(100_000, 95_000, -5.0);
    check_drift(51_200, 51_200, 0.0);
    check_drift(0, 1_000, 0.0);
}

#[test]
fn the_reference_is_the_fifth_minute_once_a_run_is_long_enough() {
    let cases = [(0, 0), (1, 1), (2, 1), (5, 1), (6, 5), (30, 5)];
    for (minutes, expected) in cases {
        assert_eq!(reference_minute(minutes), expected, "{minutes} minutes");
    }
}

#[test]
fn a_row_waits_two_seconds_at_most() {
    assert_eq!(grace(Duration::from_secs(60)), Duration::from_secs(2));
    assert_eq!(grace(Duration::from_secs(1)), Duration::from_millis(250));
}

fn minute(number: u32, rss_kib: u64, p99: f64, deliveries: u64, reconnects: u64) -> Minute {
    Minute {
        minute: number,
        rss_kib,
        latency: Latency {
            p99,
            ..Latency::default()
        },
        deliveries,
        reconnects,
        ..Minute::default()
    }
}

#[test]
fn summary_compares_the_fifth_minute_with_the_last() {
    let minutes: Vec<Minute> = (1..=8)
        .map(|number| minute(number, 50_000 + u64::from(number) * 500, 2.0, 10, 3))
        .collect();
    let before = Descriptors {
        fds_per_node: vec![20, 21],
        rss_kib_per_node: vec![4_000, 4_100],
    };
    let after = Descriptors {
        fds_per_node: vec![20, 22],
        rss_kib_per_node: vec![9_000, 9_100],
    };
    let summary = SoakSummary::of(&minutes, &before, &after, 1, 2);
    assert_eq!(
        summary,
        SoakSummary {
            reference_minute: 5,
            last_minute: 8,
            rss_reference_kib: 52_500,
            rss_last_kib: 54_000,
            rss_drift_percent: drift_percent(52_500, 54_000),
            p99_reference_ms: 2.0,
            p99_last_ms: 2.0,
            deliveries: 80,
            lost: 1,
            duplicated: 2,
            reconnects: 24,
            fds_before: 41,
            fds_after: 42,
        }
    );
    // A short run compares its first minute with its last; no minute gives zeros.
    let short = SoakSummary::of(&minutes[..2], &before, &after, 0, 0);
    assert_eq!((short.reference_minute, short.last_minute), (1, 2));
    let none = SoakSummary::of(&[], &before, &after, 0, 0);
    assert_eq!((none.reference_minute, none.rss_drift_percent), (0, 0.0));
}
