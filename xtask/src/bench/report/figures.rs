//! The rows of the main table: each figure, the run it comes from and where in the
//! generator's report it is.

use super::*;

/// One row of the table.
pub(crate) struct Figure {
    /// The scenario it belongs to, as `--scenario` names it.
    pub(super) scenario: &'static str,
    /// The row's name, which also finds it (see [`figure`]).
    pub(crate) name: &'static str,
    /// The run it is read from.
    pub(crate) run: Run,
    /// Which way the ratios read.
    pub(crate) better: Better,
    /// Only for columns of several nodes.
    pub(super) cluster_only: bool,
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
pub(super) fn sequential_step(report: &Value, publishers: u64, rate: u64) -> Option<&Value> {
    report["steps"].as_array()?.iter().find(|step| {
        step["publishers"].as_u64() == Some(publishers)
            && step["rate"].as_u64() == Some(publishers * rate)
    })
}

/// The join storm of a subscription-count run.
pub(super) fn joins(report: &Value) -> &Value {
    &report["subscription_count"]
}

/// The fan-out step that the targets are stated at: 400 publishes per second to 1k
/// connections, 400k deliveries per second.
const TARGET_RATE: u64 = 400;

pub(super) const FIGURES: &[Figure] = &[
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
