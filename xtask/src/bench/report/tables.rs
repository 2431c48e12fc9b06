//! The tables beside the main one: the fan-out steps, the subscription counts, the sequential
//! publishers' steps and the targets.

use super::figures::{joins, sequential_step};
use super::*;

/// The steps of our fan-out run, to show where delivery fell behind and what was busy.
pub(super) fn fan_out_steps(out: &mut String, ours: &Column) {
    let Ok(report) = ours.report(Run::FanOut) else {
        return;
    };
    let Some(steps) = report["steps"].as_array() else {
        return;
    };
    let _ = writeln!(out, "\nFan-out steps of soketi-rs (one node):\n");
    let header = [
        "publishes/s",
        "deliveries/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU µs/delivery",
        "server CPU %",
        "generator CPU %",
        "behind",
    ];
    table_row(out, &header.map(str::to_owned));
    table_rule(out, header.len());
    for step in steps {
        let value = |path: &[&str]| figure_at(step, path, number);
        table_row(
            out,
            &[
                value(&["rate"]),
                value(&["deliveries_per_sec"]),
                value(&["latency", "p50"]),
                value(&["latency", "p99"]),
                value(&["latency", "max"]),
                value(&["server_cpu_us_per_delivery"]),
                value(&["server_cpu_percent"]),
                value(&["generator_cpu_percent"]),
                if step["behind"].as_bool() == Some(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
            ],
        );
    }
}

/// The join storms with `subscription_count` off and on, for each column of our server.
pub(super) fn subscription_counts(out: &mut String, columns: &[Column]) {
    let header = [
        "server",
        "subscription_count",
        "joins acknowledged",
        "s to acknowledge all",
        "joins/s",
        "join p50 ms",
        "join p99 ms",
        "server CPU s (joins)",
        "server peak RSS MiB (before)",
        "count events per client: min / median / max",
        "count events in all (during the joins)",
        "clients on the final count",
        "s until all had it",
        "server CPU s (the 5 s after)",
    ];
    let mut rows = Vec::new();
    for column in columns {
        for (run, setting) in [(Run::CountOff, "off"), (Run::CountOn, "on")] {
            let Ok(report) = column.report(run) else {
                continue;
            };
            let joins = joins(report);
            let field = |path: &[&str], format: fn(f64) -> String| figure_at(joins, path, format);
            let value = |path: &[&str]| field(path, number);
            let counted = |path: &[&str]| field(path, count);
            let mib = |key: &str| {
                joins[key]
                    .as_f64()
                    .map_or_else(|| "?".to_owned(), |kib| number(kib / 1024.0))
            };
            let heard = joins["events"]["total"].as_u64().unwrap_or(0) > 0;
            rows.push(vec![
                column.kind.label(),
                setting.to_owned(),
                format!("{} of {}", counted(&["acknowledged"]), counted(&["joins"])),
                value(&["seconds"]),
                value(&["per_sec"]),
                value(&["join_latency", "p50"]),
                value(&["join_latency", "p99"]),
                value(&["server_cpu_seconds"]),
                format!(
                    "{} ({})",
                    mib("server_rss_peak_kib"),
                    mib("server_rss_before_kib")
                ),
                format!(
                    "{} / {} / {}",
                    counted(&["events", "min"]),
                    counted(&["events", "median"]),
                    counted(&["events", "max"])
                ),
                format!(
                    "{} ({})",
                    counted(&["events", "total"]),
                    counted(&["events_during_joins"])
                ),
                format!(
                    "{} (count {})",
                    counted(&["at_final_count"]),
                    counted(&["final_count"])
                ),
                match joins["final_count_seconds"].as_f64() {
                    Some(seconds) => number(seconds),
                    None if heard => "never".to_owned(),
                    None => "— (no count events)".to_owned(),
                },
                value(&["settle_server_cpu_seconds"]),
            ]);
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nSubscription count: every connection open first, then all join one channel at once:\n"
    );
    table_row(out, &header.map(str::to_owned));
    table_rule(out, header.len());
    for row in rows {
        table_row(out, &row);
    }
}

/// Every step of the sequential-publisher runs, for every server.
pub(super) fn sequential_steps(out: &mut String, columns: &[Column], quick: bool) {
    let header = [
        "server",
        "subscribers",
        "publishers × publishes/s",
        "publishes/s",
        "HTTP p50 ms",
        "HTTP p99 ms",
        "delivery p50 ms",
        "delivery p99 ms",
        "delivery max ms",
        "server CPU µs/delivery",
        "server CPU %",
        "generator CPU %",
        "lost / duplicated / reordered (subscribers)",
    ];
    let runs = [
        (Run::SequentialOneChannel, "1 channel"),
        (
            Run::SequentialManyChannels,
            if quick { "10 channels" } else { "100 channels" },
        ),
    ];
    let mut rows = Vec::new();
    for column in columns {
        for (run, channels) in runs {
            let report = match column.report(run) {
                Ok(report) => report,
                Err(why) if why != "not run" => {
                    let mut row = vec![column.kind.label(), channels.to_owned(), why];
                    row.resize(header.len(), "—".to_owned());
                    rows.push(row);
                    continue;
                }
                Err(_) => continue,
            };
            let subscribers = report["setup"]["subscribed"]
                .as_f64()
                .map_or_else(|| "?".to_owned(), count);
            for (publishers, rate) in SEQUENTIAL_STEPS {
                let mut row = vec![
                    column.kind.label(),
                    format!("{subscribers} on {channels}"),
                    format!("{publishers} × {rate}"),
                ];
                let Some(step) = sequential_step(report, publishers, rate) else {
                    row.push("not reached".to_owned());
                    row.resize(header.len(), "—".to_owned());
                    rows.push(row);
                    continue;
                };
                let field =
                    |path: &[&str], format: fn(f64) -> String| figure_at(step, path, format);
                let value = |path: &[&str]| field(path, number);
                let counted = |path: &[&str]| field(path, count);
                row.extend([
                    value(&["publish_rate"]),
                    value(&["http_latency", "p50"]),
                    value(&["http_latency", "p99"]),
                    value(&["latency", "p50"]),
                    value(&["latency", "p99"]),
                    value(&["latency", "max"]),
                    value(&["server_cpu_us_per_delivery"]),
                    value(&["server_cpu_percent"]),
                    value(&["generator_cpu_percent"]),
                    format!(
                        "{} / {} / {} ({})",
                        counted(&["lost"]),
                        counted(&["duplicated"]),
                        counted(&["reordered"]),
                        counted(&["subscribers_affected"])
                    ),
                ]);
                rows.push(row);
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nSequential publishers: each sends its next request once the last was answered, on a \
         schedule of its own:\n"
    );
    table_row(out, &header.map(str::to_owned));
    table_rule(out, header.len());
    for row in rows {
        table_row(out, &row);
    }
}

/// The targets for our server, each with what was measured and whether it was met.
pub(super) fn targets(
    ours: &Column,
    cluster: Option<&Column>,
    peers: &[&Column],
) -> Vec<(String, String, &'static str)> {
    let value = |name: &str| figure(name).and_then(|figure| cell(ours, figure).ok());
    let of_cluster = |name: &str| {
        let cluster = cluster?;
        figure(name).and_then(|figure| cell(cluster, figure).ok())
    };
    let mut rows = Vec::new();
    let mut check = |target: &str, measured: Option<f64>, unit: &str, met: fn(f64) -> bool| {
        if let Some(measured) = measured {
            rows.push((
                target.to_owned(),
                format!("{} {unit}", number(measured)),
                if met(measured) { "yes" } else { "no" },
            ));
        }
    };
    check(
        "fan-out: CPU per delivery ≤ 0.9 µs at 400k deliveries/s",
        value("fan-out at 400 publishes/s: server CPU per delivery (µs)"),
        "µs",
        |v| v <= 0.9,
    );
    check(
        "fan-out: p99 < 10 ms at 400k deliveries/s",
        value("fan-out at 400 publishes/s: p99 (ms)"),
        "ms",
        |v| v < 10.0,
    );
    check(
        "many channels: p99 ≤ 1 ms",
        value("many channels: p99 (ms)"),
        "ms",
        |v| v <= 1.0,
    );
    check(
        "idle memory: ≤ 3 KiB RSS per connection",
        value("idle memory: RSS per subscribed connection (KiB; 19k connections)"),
        "KiB",
        |v| v <= 3.0,
    );
    check(
        "idle memory: back to the system once the clients leave (≤ 25 % held)",
        value("idle memory: share still held after every client left (%)"),
        "%",
        |v| v <= 25.0,
    );
    check(
        "connect storm: 19k connections in < 5 s",
        value("connect storm: seconds to open and subscribe 19k connections"),
        "s",
        |v| v < 5.0,
    );
    check(
        "connect storm: the HTTP API answers within 1 s while the 19k leave",
        value("connect storm: slowest HTTP API answer while the 19k leave at once (ms)"),
        "ms",
        |v| v < 1000.0,
    );
    check(
        "cluster: cross-node p99 < 2 ms at 1k publishes/s",
        of_cluster("cluster: cross-node p99 (ms)"),
        "ms",
        |v| v < 2.0,
    );
    check(
        "subscription count: every client's last count is its channel's (setting on)",
        value("subscription count on: clients whose last count is the channel's (%)"),
        "%",
        |v| v >= 100.0,
    );
    let http = "HTTP publish: requests/s (16 connections, no subscribers)";
    if let (Some(ours_rate), Some(sockudo)) = (
        value(http),
        peers
            .iter()
            .find(|peer| peer.kind == Kind::Sockudo)
            .and_then(|peer| figure(http).and_then(|figure| cell(peer, figure).ok())),
    ) {
        check(
            "HTTP publish: ≥ 2× sockudo",
            Some(ours_rate / sockudo),
            "× sockudo",
            |v| v >= 2.0,
        );
    }
    rows
}
