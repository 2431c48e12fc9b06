//! The figures drawn from the generator's reports, the table with ratios, and the page
//! `docs/benchmarks.md`.

use std::{fmt::Write as _, fs, process::Command};

use serde_json::Value;

use super::{Column, Options, Run, SEQUENTIAL_STEPS, console, servers::Kind};

/// Whether more of a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Better {
    Higher,
    Lower,
    /// A count to read, not to compare.
    Neither,
}

/// One row of the table.
pub(crate) struct Figure {
    /// The scenario it belongs to, as `--scenario` names it.
    scenario: &'static str,
    /// The row's name, which also finds it (see [`figure`]).
    pub(crate) name: &'static str,
    /// The run it is read from.
    pub(crate) run: Run,
    /// Which way the ratios read.
    pub(crate) better: Better,
    /// Only for columns of several nodes.
    cluster_only: bool,
    value: fn(&Value) -> Option<f64>,
}

impl Figure {
    /// This figure read from `column`'s report of `run` (its own run, or one that repeats its
    /// load), or why there is none.
    pub(crate) fn value_in(&self, column: &Column, run: Run) -> Result<f64, String> {
        let report = column.report(run)?;
        (self.value)(report).ok_or_else(|| "not reached".to_owned())
    }
}

/// The figure of the table named `name`.
pub(crate) fn figure(name: &str) -> Option<&'static Figure> {
    FIGURES.iter().find(|figure| figure.name == name)
}

/// The step of the highest deliveries per second.
fn peak_step(report: &Value) -> Option<&Value> {
    report["steps"].as_array()?.iter().max_by(|a, b| {
        let rate = |step: &Value| step["deliveries_per_sec"].as_f64().unwrap_or(0.0);
        rate(a).total_cmp(&rate(b))
    })
}

/// The step that published at `rate` per second.
fn step_at(report: &Value, rate: u64) -> Option<&Value> {
    report["steps"]
        .as_array()?
        .iter()
        .find(|step| step["rate"].as_u64() == Some(rate))
}

fn first_step(report: &Value) -> Option<&Value> {
    report["steps"].as_array()?.first()
}

/// The sequential-publisher step of `publishers` publishers at `rate` publishes per second each.
fn sequential_step(report: &Value, publishers: u64, rate: u64) -> Option<&Value> {
    report["steps"].as_array()?.iter().find(|step| {
        step["publishers"].as_u64() == Some(publishers)
            && step["rate"].as_u64() == Some(publishers * rate)
    })
}

/// The join storm of a subscription-count run.
fn joins(report: &Value) -> &Value {
    &report["subscription_count"]
}

/// The fan-out step that the targets are stated at: 400 publishes per second to 1k
/// connections, 400k deliveries per second.
const TARGET_RATE: u64 = 400;

const FIGURES: &[Figure] = &[
    Figure {
        scenario: "fan-out",
        name: "fan-out: peak deliveries/s (1k connections, 1 channel)",
        run: Run::FanOut,
        better: Better::Higher,
        cluster_only: false,
        value: |r| r["peak_deliveries_per_sec"].as_f64(),
    },
    Figure {
        scenario: "fan-out",
        name: "fan-out: p99 at the peak (ms)",
        run: Run::FanOut,
        better: Better::Lower,
        cluster_only: false,
        value: |r| peak_step(r)?["latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "fan-out",
        name: "fan-out: server CPU per delivery at the peak (µs)",
        run: Run::FanOut,
        better: Better::Lower,
        cluster_only: false,
        value: |r| peak_step(r)?["server_cpu_us_per_delivery"].as_f64(),
    },
    Figure {
        scenario: "fan-out",
        name: "fan-out: server CPU at the peak (% of its core)",
        run: Run::FanOut,
        better: Better::Neither,
        cluster_only: false,
        value: |r| peak_step(r)?["server_cpu_percent"].as_f64(),
    },
    Figure {
        scenario: "fan-out",
        name: "fan-out: generator CPU at the peak (% of its core)",
        run: Run::FanOut,
        better: Better::Neither,
        cluster_only: false,
        value: |r| peak_step(r)?["generator_cpu_percent"].as_f64(),
    },
    Figure {
        scenario: "fan-out",
        name: "fan-out at 400 publishes/s: deliveries/s",
        run: Run::FanOut,
        better: Better::Higher,
        cluster_only: false,
        value: |r| step_at(r, TARGET_RATE)?["deliveries_per_sec"].as_f64(),
    },
    Figure {
        scenario: "fan-out",
        name: "fan-out at 400 publishes/s: p99 (ms)",
        run: Run::FanOut,
        better: Better::Lower,
        cluster_only: false,
        value: |r| step_at(r, TARGET_RATE)?["latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "fan-out",
        name: "fan-out at 400 publishes/s: server CPU per delivery (µs)",
        run: Run::FanOut,
        better: Better::Lower,
        cluster_only: false,
        value: |r| step_at(r, TARGET_RATE)?["server_cpu_us_per_delivery"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: p50 (ms; 10k connections, 100 channels, 200 publishes/s)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| first_step(r)?["latency"]["p50"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: p90 (ms)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| first_step(r)?["latency"]["p90"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: p99 (ms)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| first_step(r)?["latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: p99.9 (ms)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| first_step(r)?["latency"]["p99_9"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: max (ms)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| first_step(r)?["latency"]["max"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: cross-node p50 (ms)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: true,
        value: |r| first_step(r)?["remote_latency"]["p50"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: cross-node p99 (ms)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: true,
        value: |r| first_step(r)?["remote_latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: server CPU per delivery (µs)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| first_step(r)?["server_cpu_us_per_delivery"].as_f64(),
    },
    Figure {
        scenario: "many-channels",
        name: "many channels: server peak RSS (MiB)",
        run: Run::ManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| Some(r["server"]["rss_peak_kib"].as_f64()? / 1024.0),
    },
    Figure {
        scenario: "hostile",
        name: "hostile: many channels p99 under attack (ms; 2k slowloris sockets, 50 unsigned 50 MB uploads)",
        run: Run::Hostile,
        better: Better::Lower,
        cluster_only: false,
        value: |r| first_step(r)?["latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "hostile",
        name: "hostile: deliveries in time under attack (%)",
        run: Run::Hostile,
        better: Better::Higher,
        cluster_only: false,
        value: |r| {
            let step = first_step(r)?;
            let expected = step["expected"].as_f64()?;
            (expected > 0.0).then(|| 100.0 * step["in_time"].as_f64().unwrap_or(0.0) / expected)
        },
    },
    Figure {
        scenario: "hostile",
        name: "hostile: server peak RSS under attack (MiB)",
        run: Run::Hostile,
        better: Better::Lower,
        cluster_only: false,
        value: |r| Some(r["server"]["rss_peak_kib"].as_f64()? / 1024.0),
    },
    Figure {
        scenario: "hostile",
        name: "hostile: attack sockets the server cut off",
        run: Run::Hostile,
        better: Better::Neither,
        cluster_only: false,
        value: |r| r["attack"]["slowloris_cut_off"].as_f64(),
    },
    Figure {
        scenario: "hostile",
        name: "hostile: longest a slowloris socket was held (s)",
        run: Run::Hostile,
        better: Better::Lower,
        cluster_only: false,
        value: |r| r["attack"]["slowloris_longest_held_secs"].as_f64(),
    },
    Figure {
        scenario: "hostile",
        name: "hostile: upload MiB the server took in",
        run: Run::Hostile,
        better: Better::Lower,
        cluster_only: false,
        value: |r| r["attack"]["upload_mib_sent"].as_f64(),
    },
    Figure {
        scenario: "cluster",
        name: "cluster: cross-node p50 (ms; 1k publishes/s, 1k connections over 100 channels)",
        run: Run::Cluster,
        better: Better::Lower,
        cluster_only: true,
        value: |r| first_step(r)?["remote_latency"]["p50"].as_f64(),
    },
    Figure {
        scenario: "cluster",
        name: "cluster: cross-node p99 (ms)",
        run: Run::Cluster,
        better: Better::Lower,
        cluster_only: true,
        value: |r| first_step(r)?["remote_latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "idle-memory",
        name: "idle memory: RSS per subscribed connection (KiB; 19k connections)",
        run: Run::Storm,
        better: Better::Lower,
        cluster_only: false,
        value: |r| r["idle"]["kib_per_connection"].as_f64(),
    },
    Figure {
        scenario: "idle-memory",
        name: "idle memory: share still held after every client left (%)",
        run: Run::Storm,
        better: Better::Lower,
        cluster_only: false,
        value: |r| {
            let idle = &r["idle"];
            let before = idle["rss_before_kib"].as_f64()?;
            let growth = idle["rss_after_kib"].as_f64()? - before;
            let held = idle["rss_after_leave_kib"].as_f64()? - before;
            (growth > 0.0).then(|| (held / growth * 100.0).max(0.0))
        },
    },
    Figure {
        scenario: "connect-storm",
        name: "connect storm: seconds to open and subscribe 19k connections",
        run: Run::Storm,
        better: Better::Lower,
        cluster_only: false,
        value: |r| r["setup"]["seconds"].as_f64(),
    },
    Figure {
        scenario: "connect-storm",
        name: "connect storm: slowest HTTP API answer while the 19k leave at once (ms)",
        run: Run::Storm,
        better: Better::Lower,
        cluster_only: false,
        value: |r| r["idle"]["api_during_leave"]["max"].as_f64(),
    },
    Figure {
        scenario: "connect-storm",
        name: "connect storm: connections subscribed",
        run: Run::Storm,
        better: Better::Neither,
        cluster_only: false,
        value: |r| r["setup"]["subscribed"].as_f64(),
    },
    Figure {
        scenario: "http-publish",
        name: "HTTP publish: requests/s (16 connections, no subscribers)",
        run: Run::HttpPublish,
        better: Better::Higher,
        cluster_only: false,
        value: |r| r["http"]["per_sec"].as_f64(),
    },
    Figure {
        scenario: "http-publish",
        name: "HTTP publish: server CPU per request (µs)",
        run: Run::HttpPublish,
        better: Better::Lower,
        cluster_only: false,
        value: |r| r["http"]["server_cpu_us_per_request"].as_f64(),
    },
    Figure {
        scenario: "presence-churn",
        name: "presence churn: joins and leaves/s (1k members, 100 churning)",
        run: Run::PresenceChurn,
        better: Better::Higher,
        cluster_only: false,
        value: |r| r["churn"]["per_sec"].as_f64(),
    },
    Figure {
        scenario: "presence-churn",
        name: "presence churn: join p99 (ms)",
        run: Run::PresenceChurn,
        better: Better::Lower,
        cluster_only: false,
        value: |r| r["churn"]["join_latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count on: seconds until 10k joins of one channel are acknowledged",
        run: Run::CountOn,
        better: Better::Lower,
        cluster_only: false,
        value: |r| joins(r)["seconds"].as_f64(),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count off: seconds until the 10k joins are acknowledged",
        run: Run::CountOff,
        better: Better::Lower,
        cluster_only: false,
        value: |r| joins(r)["seconds"].as_f64(),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count on: joins/s",
        run: Run::CountOn,
        better: Better::Higher,
        cluster_only: false,
        value: |r| joins(r)["per_sec"].as_f64(),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count off: joins/s",
        run: Run::CountOff,
        better: Better::Higher,
        cluster_only: false,
        value: |r| joins(r)["per_sec"].as_f64(),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count on: server CPU of the joins (s)",
        run: Run::CountOn,
        better: Better::Lower,
        cluster_only: false,
        value: |r| joins(r)["server_cpu_seconds"].as_f64(),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count off: server CPU of the joins (s)",
        run: Run::CountOff,
        better: Better::Lower,
        cluster_only: false,
        value: |r| joins(r)["server_cpu_seconds"].as_f64(),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count on: server peak RSS during the joins (MiB)",
        run: Run::CountOn,
        better: Better::Lower,
        cluster_only: false,
        value: |r| Some(joins(r)["server_rss_peak_kib"].as_f64()? / 1024.0),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count off: server peak RSS during the joins (MiB)",
        run: Run::CountOff,
        better: Better::Lower,
        cluster_only: false,
        value: |r| Some(joins(r)["server_rss_peak_kib"].as_f64()? / 1024.0),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count on: count events per client (median)",
        run: Run::CountOn,
        better: Better::Neither,
        cluster_only: false,
        value: |r| joins(r)["events"]["median"].as_f64(),
    },
    Figure {
        scenario: "subscription-count",
        name: "subscription count on: clients whose last count is the channel's (%)",
        run: Run::CountOn,
        better: Better::Higher,
        cluster_only: false,
        value: |r| {
            let joins = joins(r);
            let acknowledged = joins["acknowledged"].as_f64()?;
            (acknowledged > 0.0)
                .then(|| 100.0 * joins["at_final_count"].as_f64().unwrap_or(0.0) / acknowledged)
        },
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: publishes/s of 8 publishers asking 400/s each (1 channel, 1k subscribers)",
        run: Run::SequentialOneChannel,
        better: Better::Higher,
        cluster_only: false,
        value: |r| sequential_step(r, 8, 400)?["publish_rate"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: HTTP answer p99 at 8 × 400/s (ms; 1 channel)",
        run: Run::SequentialOneChannel,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 8, 400)?["http_latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: delivery p99 at 8 × 400/s (ms; 1 channel)",
        run: Run::SequentialOneChannel,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 8, 400)?["latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: server CPU per delivery at 8 × 400/s (µs; 1 channel)",
        run: Run::SequentialOneChannel,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 8, 400)?["server_cpu_us_per_delivery"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: HTTP answer p99 at 1 × 100/s (ms; 1 channel)",
        run: Run::SequentialOneChannel,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 1, 100)?["http_latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: delivery p99 at 1 × 100/s (ms; 1 channel)",
        run: Run::SequentialOneChannel,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 1, 100)?["latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: publishes/s of 8 publishers asking 400/s each (100 channels, 10k subscribers)",
        run: Run::SequentialManyChannels,
        better: Better::Higher,
        cluster_only: false,
        value: |r| sequential_step(r, 8, 400)?["publish_rate"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: HTTP answer p99 at 8 × 400/s (ms; 100 channels)",
        run: Run::SequentialManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 8, 400)?["http_latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: delivery p99 at 8 × 400/s (ms; 100 channels)",
        run: Run::SequentialManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 8, 400)?["latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: server CPU per delivery at 8 × 400/s (µs; 100 channels)",
        run: Run::SequentialManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 8, 400)?["server_cpu_us_per_delivery"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: HTTP answer p99 at 1 × 100/s (ms; 100 channels)",
        run: Run::SequentialManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 1, 100)?["http_latency"]["p99"].as_f64(),
    },
    Figure {
        scenario: "sequential-publisher",
        name: "sequential publisher: delivery p99 at 1 × 100/s (ms; 100 channels)",
        run: Run::SequentialManyChannels,
        better: Better::Lower,
        cluster_only: false,
        value: |r| sequential_step(r, 1, 100)?["latency"]["p99"].as_f64(),
    },
];

/// A figure's value in one column, or why there is none.
fn cell(column: &Column, figure: &Figure) -> Result<f64, String> {
    figure.value_in(column, figure.run)
}

/// How many times better `ours` is than `peer`: above 1 when ours is better.
pub(crate) fn ratio(better_when: Better, ours: f64, peer: f64) -> Option<f64> {
    let (numerator, denominator) = match better_when {
        Better::Higher => (ours, peer),
        Better::Lower => (peer, ours),
        Better::Neither => return None,
    };
    (numerator > 0.0 && denominator > 0.0).then(|| numerator / denominator)
}

/// A number with a sensible precision: `412,345`, `23.4`, `0.412`.
pub(crate) fn number(value: f64) -> String {
    if value.abs() >= 1000.0 {
        let whole = format!("{:.0}", value.abs());
        let mut grouped = String::new();
        for (index, digit) in whole.chars().enumerate() {
            if index > 0 && (whole.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if value < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// A count: `0`, `12`, `10,000`.
pub(crate) fn count(value: f64) -> String {
    if value.abs() >= 1000.0 {
        number(value)
    } else {
        format!("{value:.0}")
    }
}

/// The markdown tables of a run: every figure per server with ratios, the generator's CPU per
/// run, losses, the targets of the issue, notes, and the machine.
pub(crate) fn render(
    columns: &[Column],
    scenarios: &[&str],
    quick: bool,
    machine: &Machine,
) -> String {
    let ours = columns
        .iter()
        .find(|column| column.kind == Kind::Ours { nodes: 1 });
    let peers: Vec<&Column> = columns
        .iter()
        .filter(|column| matches!(column.kind, Kind::Soketi | Kind::Sockudo))
        .collect();
    let any_cluster = columns.iter().any(|column| column.kind.nodes() > 1);
    let mut notes: Vec<String> = Vec::new();
    let mut note = |text: String| -> usize {
        match notes.iter().position(|known| *known == text) {
            Some(index) => index + 1,
            None => {
                notes.push(text);
                notes.len()
            }
        }
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run {} on {}.{}\n",
        machine.date,
        machine.summary(),
        if quick {
            " Quick (smoke) sizes: not comparable with a full run."
        } else {
            ""
        }
    );
    let mut header = vec!["figure".to_owned()];
    header.extend(columns.iter().map(|column| column.kind.label()));
    for peer in &peers {
        header.push(format!("soketi-rs vs {}", peer.kind.label()));
    }
    // The rows are gathered first: scenarios that have tables of their own only (the
    // console's) give none, and then the table is left out rather than drawn empty.
    let mut rows = Vec::new();
    for figure in FIGURES {
        // The hostile scenario is read against the many-channels run it repeats.
        let shown = scenarios.contains(&figure.scenario)
            || (figure.scenario == "many-channels" && scenarios.contains(&"hostile"));
        if !shown || (figure.cluster_only && !any_cluster) {
            continue;
        }
        let mut row = vec![figure.name.to_owned()];
        for column in columns {
            if figure.cluster_only && column.kind.nodes() == 1 {
                row.push("—".into());
                continue;
            }
            row.push(match cell(column, figure) {
                Ok(value) => number(value),
                Err(why) => format!("n/a [{}]", note(format!("{}: {why}", column.kind.label()))),
            });
        }
        for peer in &peers {
            let both = ours.map(|ours| (cell(ours, figure), cell(peer, figure)));
            row.push(match both {
                Some((Ok(ours), Ok(theirs))) => ratio(figure.better, ours, theirs)
                    .map_or_else(|| "—".to_owned(), |ratio| format!("{ratio:.2}×")),
                _ => "—".into(),
            });
        }
        rows.push(row);
    }
    if !rows.is_empty() {
        table_row(&mut out, &header);
        table_rule(&mut out, header.len());
        for row in &rows {
            table_row(&mut out, row);
        }
        let _ = writeln!(
            out,
            "\nRatios are how many times better soketi-rs (one node) does than the peer: above \
             1× it is faster, quicker or smaller; below 1× it is behind.\n"
        );
    }

    // The generator's own load, and what each run lost.
    let runs = Run::for_scenarios(scenarios);
    let mut header = vec!["generator CPU at its busiest phase, lost + duplicated".to_owned()];
    header.extend(columns.iter().map(|column| column.kind.label()));
    table_row(&mut out, &header);
    table_rule(&mut out, header.len());
    for run in &runs {
        if *run == Run::Cluster && !any_cluster {
            continue;
        }
        let mut row = vec![run.name().to_owned()];
        for column in columns {
            if run.left_out(column.kind) {
                row.push("—".into());
                continue;
            }
            row.push(match column.report(*run) {
                Ok(report) => {
                    let cpu = report["generator"]["max_cpu_percent"]
                        .as_f64()
                        .unwrap_or(0.0);
                    let lost = report["lost"].as_u64().unwrap_or(0);
                    let duplicated = report["duplicated"].as_u64().unwrap_or(0);
                    let reordered = report["reordered"].as_u64().unwrap_or(0);
                    let closed = report["closed_by_server"].as_u64().unwrap_or(0);
                    let mut text = format!("{cpu:.0} %, {lost} + {duplicated}");
                    if reordered > 0 {
                        let _ = write!(text, ", {reordered} reordered");
                    }
                    if closed > 0 {
                        let _ = write!(text, ", {closed} closed by the server");
                    }
                    if let Some(failure) = report["setup"]["first_failure"].as_str() {
                        let failed = report["setup"]["failed"].as_u64().unwrap_or(0);
                        let index = note(format!(
                            "{} {}: {failed} connections failed; first: {failure}",
                            column.kind.label(),
                            run.name()
                        ));
                        let _ = write!(text, " [{index}]");
                    }
                    text
                }
                Err(why) => format!("n/a [{}]", note(format!("{}: {why}", column.kind.label()))),
            });
        }
        table_row(&mut out, &row);
    }

    if let Some(ours) = ours {
        let cluster = columns.iter().find(|column| column.kind.nodes() > 1);
        let targets = targets(ours, cluster, &peers);
        if !targets.is_empty() {
            let _ = writeln!(
                out,
                "\nTargets of soketi-rs (one node, and the fleet for the cluster):\n"
            );
            table_row(
                &mut out,
                &["target".into(), "measured".into(), "met".into()],
            );
            table_rule(&mut out, 3);
            for (target, measured, met) in targets {
                table_row(&mut out, &[target, measured, met.into()]);
            }
        }
    }
    if let Some(ours) = ours {
        fan_out_steps(&mut out, ours);
    }
    if scenarios.contains(&"subscription-count") {
        subscription_counts(&mut out, columns);
    }
    if scenarios.contains(&"sequential-publisher") {
        sequential_steps(&mut out, columns, quick);
    }
    if let Some(ours) = ours
        && scenarios.contains(&"console")
    {
        console::render(&mut out, ours, &mut note);
    }

    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n");
        for (index, text) in notes.iter().enumerate() {
            let _ = writeln!(out, "{}. {}", index + 1, text.replace('\n', " "));
        }
    }
    out
}

/// The steps of our fan-out run, to show where delivery fell behind and what was busy.
fn fan_out_steps(out: &mut String, ours: &Column) {
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
fn subscription_counts(out: &mut String, columns: &[Column]) {
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
fn sequential_steps(out: &mut String, columns: &[Column], quick: bool) {
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
fn targets(
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

pub(crate) fn table_row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

pub(crate) fn table_rule(out: &mut String, columns: usize) {
    let _ = writeln!(out, "|{}", " --- |".repeat(columns));
}

/// What the machine is, for the page.
pub(crate) struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    kernel: String,
    rustc: String,
    node: String,
    date: String,
    /// The load averages when the run ended: other work on the machine skews the figures.
    load: String,
}

impl Machine {
    pub(crate) fn read() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(
                || "unknown CPU".to_owned(),
                |(_, name)| name.trim().to_owned(),
            );
        let cores = cpuinfo
            .lines()
            .filter(|line| line.starts_with("processor"))
            .count();
        let memory_gib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| {
                let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let output = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        Self {
            cpu,
            cores,
            memory_gib,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned()),
            rustc: output("rustc", &["--version"]),
            node: output("node", &["--version"]),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            load: fs::read_to_string("/proc/loadavg")
                .map(|text| {
                    text.split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|_| "unknown".to_owned()),
        }
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "{} ({} cores, {:.0} GiB), Linux {}, {}, Node {}; load average at the end {}",
            self.cpu, self.cores, self.memory_gib, self.kernel, self.rustc, self.node, self.load
        )
    }
}

/// The whole page: how to run, the method, and the tables.
pub(crate) fn page(tables: &str, options: &Options) -> String {
    let mut command = "cargo xtask bench".to_owned();
    if !options.against.is_empty() {
        let names: Vec<&str> = options
            .against
            .iter()
            .map(|kind| match kind {
                Kind::Soketi => "soketi",
                _ => "sockudo",
            })
            .collect();
        let _ = write!(command, " --against {}", names.join(","));
    }
    if options.nodes > 1 {
        let _ = write!(command, " --nodes {}", options.nodes);
    }
    if options.scenarios.len() < super::SCENARIOS.len() {
        let _ = write!(command, " --scenario {}", options.scenarios.join(","));
    }
    if options.quick {
        command.push_str(" --quick");
    }
    format!(
        "# Benchmarks\n\n\
         This page is written by `cargo xtask bench`; edit the method in `xtask/src/bench/report.rs`.\n\n\
         ## Results\n\n\
         Command: `{command}`. {tables}\n\
         {METHOD}\n\
         {BOUNDS}"
    )
}

const METHOD: &str = "## Method

`cargo xtask bench` builds the release server and the load generator `soketi-bench`
(`crates/soketi-bench`), then, for each server, starts it afresh for every scenario, pinned to
core 0 (`taskset -c 0`), on 127.0.0.1 ports 26001 and up, and runs the generator pinned to core
1. The peers are installed once under `target/bench-peers/` from the recipes in
`../shared/peers/` (or `$SOKETI_BENCH_PEERS`): soketi 1.6.1 from npm, started with its
loopback-unicast discovery settings, and sockudo 2.9.2 with `cargo install`, with the recipe's
configuration moved to the same ports and its presence limit raised to 2000 members, as for
the others (`SOKETI_PRESENCE_MAX_MEMBERS=2000`). A server that listens beyond loopback is
stopped before any load. Every server runs one app with client events on; rate limits are off
or far above the load. Logs and each run's JSON summary are kept in `target/bench-results/`.

The generator opens every WebSocket connection from source addresses 127.0.N.2 and up (5000
connections per address, a new N for every run, so that no run waits on the last one's
TIME_WAIT ports), at most 256 handshakes (connect, upgrade, subscribe) in flight. It publishes
through the signed HTTP API over keep-alive connections; each event's data carries its step,
its number within its channel, the wall-clock microsecond it was sent and its publisher, so
that latency runs from just before the publish request to the moment the frame is read, and
every connection tells lost and duplicated events by number, and reordered ones (an event that
comes after a later one of the same publisher, which sent it only once the earlier one was
answered). CPU time and RSS of the server come from `/proc/<pid>/stat` and `/status`, sampled
at the edges of each measured phase; the generator reports its own CPU time the same way.

Scenarios (a full run; `--quick` uses a tenth of the sizes):

- fan-out: 1k connections on one public channel; publishes at 100, 200, 400, 600, 800, 1200,
  1600 and 2400 per second, 4 s each with 1 s to drain, stopping after the first step that
  falls behind (deliveries under 90 % of those offered, or publishes under 90 % of the rate).
  The peak is the step with the most deliveries per second, counted by arrival while the step
  publishes; CPU per delivery is the server's CPU time over that window divided by those
  deliveries.
- many channels: 10k connections over 100 public channels, 200 publishes per second for 10 s;
  percentiles over every delivery. With `--nodes N`, connections are spread over the nodes and
  every publish goes to the first: the cross-node figures are those of connections on the
  other nodes.
- idle memory and connect storm (one run): 19k connections subscribing to one channel as fast as
  the server lets them; the storm is the time from the first connect to the last
  `subscription_succeeded`; after 5 s idle, the RSS growth over the freshly started server,
  divided by the connections. Then every connection closes at once while one client publishes
  through the HTTP API every 10 ms (the slowest answer from the leave until 2 s after it), and
  the RSS is read until it falls back to a quarter of the growth, for up to 12 s more: the
  share still held is what the server kept of the connections' memory.
- HTTP publish: 16 keep-alive connections publishing one pre-signed event to a channel without
  subscribers, as fast as the server answers, for 10 s.
- cluster (with `--nodes N` only): 1k connections over 100 public channels, spread over the
  nodes, 1000 publishes per second to the first node for 10 s; the cross-node figures are
  those of the connections on the other nodes.
- presence churn: 1k members on one presence channel; 100 of them leave and join again in a
  loop for 10 s (each join waits for its `subscription_succeeded`, with the member list), while
  every member receives the `member_added` and `member_removed` events.
- hostile: the many-channels load again, with attackers that hold no credentials running
  from its start to its end: 2000 slowloris sockets, each sending a WebSocket upgrade request
  to the main port one header line a second and connecting again when cut off, and 50 unsigned
  `POST /apps/app-id/events` announcing 50 MB and sending 160 KiB/s each, again when refused.
  The figures are the load's p99 and deliveries in time beside those of the run without
  attackers, the server's peak RSS (sampled every 100 ms) in both, and what the attackers met:
  sockets cut off, the longest any slowloris socket was held, upload bytes the server took in.
- subscription count (soketi-rs only: soketi has no such setting; sockudo's recipe in
  `../shared/peers/sockudo/` names none, and its 2.9.2 source sends only the
  `subscription_count` webhook, never the event to subscribers): 10k connections open without
  subscribing, then all send their subscription to one public channel at once; one run with
  the app's `subscription_count` off and one with it on
  (`SOKETI_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT=true`), each on a fresh server. The joins take
  from the first subscription sent to the last `subscription_succeeded`; the server's CPU time
  and peak RSS (sampled every 100 ms and at the end) are those of that span. Each connection
  counts the `pusher_internal:subscription_count` events it hears until every connection's
  last count is the channel's (the joins acknowledged), or for 5 s after the last join: the
  server sends a channel's count at most every 2 s.
- sequential publisher: 1 and then 8 publishers, each on a keep-alive HTTP connection of its
  own and sending its next signed publish only once the last was answered, at 100 and then 400
  publishes per second each; to one channel of 1k subscribers, and in another run round robin
  over 100 channels of 10k subscribers in all; 10 s a step with up to 2 s to drain. Each
  publisher keeps a schedule of its own, staggered over the interval: it waits for its next
  slot, sends at once if the answer came in a later slot's time, and skips the slots that went
  by while it waited, so it never sends faster than its rate; the publishes per second are what
  the answers allowed. The publishers run on a thread of their own (on the generator's core),
  so that an answer is read when it comes, not after the deliveries read in the same turn. The
  HTTP latency runs from writing a request to reading its whole answer, and the CPU per
  delivery is the server's CPU time over the step (answering the publishes included) divided
  by the deliveries. A run stops after a step whose deliveries fall behind, as fan-out does,
  since its backlog would spill into the next.
- console (soketi-rs on one node only: the peers have no console): the fan-out and
  many-channels loads again, each twice on a fresh server, without a console and with one
  (`--console`): once every connection is subscribed, the generator opens one live console
  stream on the app (`GET /apps/app-id/console`, signed as the HTTP API is) and reads it as it
  comes until the last step is over (before the connections close, whose leaving no step
  measures), counting its lines by type and summing the lines the server reports it dropped
  (each console's queue holds 1,024 lines). While it is open, each publish builds one `event`
  line per channel. Fan-out runs without the console first and many channels with it first,
  so that neither setting always runs after the other. The ratio is read as in the main table:
  how many times better the run without a console does.

Bounds: the machine has two cores, so the server has one and the generator the other; the
generator's CPU is shown beside each run. When it nears 100 % of its core, the figure is the
generator's limit, not the server's. Each process may hold 20000 open files, so a scenario
stays under about 19.9k connections. All traffic stays on loopback; each scenario is bounded in
time (connect phases at 60 s, every generator run killed past 240 s).
";

/// What profiles of soketi-rs showed about the figures that miss their targets.
const BOUNDS: &str = "## What bounds the figures

Profiles of soketi-rs (`perf record -g` on the server during a run, 2026-11-26, this machine):

- Fan-out, 1k connections at 400 publishes/s: 88 % of the server's CPU is kernel time under
  `writev`. On loopback the sender's write also runs the receiving side's TCP stack
  (`tcp_v4_rcv`, `tcp_data_queue`) and wakes the generator (`sock_def_readable`, whose
  interrupt-restoring unlock alone is 11 %: waking the other virtual CPU). User space is 12 %,
  about 0.3 µs per delivery: queueing the frame, the flusher's pass, tokio's readiness check.
  A write costs 2.5 to 6 µs here whatever it carries (the more when the generator's core was
  asleep), so the CPU per delivery is that cost divided by the frames per write. The server
  writes at once when it is idle and puts several frames in one write only when publishes
  arrive while it is busy. Meeting 0.9 µs per delivery at 400 publishes/s would take 3 to 6
  frames per write, that is holding each connection's frames back 8 to 15 ms, which the 10 ms
  p99 target rules out: on this machine the two fan-out targets cannot both be met, and we
  chose latency. sockudo pays the same floor (2.3 to 2.8 µs per delivery in our runs). We
  tried resting the flusher after a long pass for a share of its length: a half cut the CPU
  per delivery at 400 publishes/s to 1.6 µs and lifted the peak past 1.6M/s, but moved the
  p50 at 100 publishes/s from 4.4 to 12.7 ms (a quarter: 1.9 µs, and a p99 at 100/s of
  18.7 ms instead of 12.4), so the flusher does not rest.
- Fan-out latency and peak: from 200 publishes/s on, both cores are nearly full (server 97-99 %,
  generator 87-96 %), so the p99 is queueing on both sides. The peak is where the generator's
  core runs out, not only the server's: frames that go out at once arrive in more, smaller
  reads. An earlier design that woke a writer task per connection reached 1.4M deliveries/s by
  holding frames longer (p50 50 ms at its peak) and spent 9 µs per delivery at 100 publishes/s,
  against 6.3 µs now.
- Many channels, 10k connections over 100 channels at 200 publishes/s: each publish is one pass
  of 100 writes, and with the generator's core mostly asleep a write costs 10 to 14 µs, so the
  last subscriber of a publish gets it 1 to 1.4 ms after the first; the p99 is where two
  publishes meet, or where the generator was busy. A p99 of 1 ms needs writes that cost a
  tenth of that, which loopback on this machine does not give.
- Idle memory: what remains per connection is the connection's task (about 1.4 KB, the
  session's futures boxed), its state and registry entries, and tokio's registration of the
  socket; no read buffer is kept between messages. jemalloc's background thread gives the
  memory of connections that left back to the system within about 10 s.
";

/// The number at `path` in a report's JSON, formatted, or `?` when there is none.
fn figure_at(report: &Value, path: &[&str], format: fn(f64) -> String) -> String {
    path.iter()
        .fold(report, |value, key| &value[*key])
        .as_f64()
        .map_or_else(|| "?".to_owned(), format)
}
