//! `cargo xtask soak`: a long run of every kind of traffic at once against our release server,
//! one node or several over the cluster adapter on loopback, with a row of figures a minute, to
//! show whether memory and descriptors stay flat. A command for people, not a CI step: a run
//! takes as many minutes as it is asked for.
//!
//! The servers start as `cargo xtask bench` starts them (pinned to core 0, loopback only, the
//! open-files limit of this process), on ports of their own so that a benchmark can run beside;
//! the load generator `soketi-bench soak` runs on core 1 and prints each minute's row as it
//! closes.

#[cfg(test)]
mod tests;

use std::{fmt::Write as _, fs, path::Path, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::{report::Machine, servers, wait_bounded};
use crate::cmd::{number_in, option_value, split_option};

/// What `soak` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) minutes: u32,
    pub(crate) nodes: usize,
    pub(crate) connections: usize,
}

/// Connections by default: as many as 20000 open files per process allow the generator, which
/// holds every one of them, with room for its HTTP connections and the reconnections' overlap.
const CONNECTIONS: usize = 19_000;

/// Channels at most; fewer in smaller runs, so that each keeps about 19 subscribers.
const CHANNELS: usize = 1000;

/// Added to the benchmark's ports (26001 and up), so that a benchmark can run beside a soak.
const PORT_OFFSET: u16 = 300;

impl Options {
    pub(crate) fn parse(options: &[String]) -> Result<Self> {
        let mut parsed = Self {
            minutes: 30,
            nodes: 1,
            connections: CONNECTIONS,
        };
        let mut options = options.iter();
        while let Some(option) = options.next() {
            let (name, inline) = split_option(option);
            let text = option_value(name, &inline, &mut options)?;
            match name {
                "--minutes" => {
                    parsed.minutes = number_in(name, &text, 1..=1440)?;
                }
                "--nodes" => {
                    parsed.nodes = number_in(name, &text, 1..=8)?;
                }
                "--connections" => {
                    parsed.connections = number_in(name, &text, 20..=19_500)?;
                }
                other => bail!("unknown option `{other}` for `soak`"),
            }
        }
        Ok(parsed)
    }

    /// Channels for the connections: about 19 subscribers each, one of them the witness.
    pub(crate) fn channels(&self) -> usize {
        (self.connections / 19).clamp(1, CHANNELS)
    }

    /// The command as written, for the report.
    fn command(&self) -> String {
        let mut command = format!("cargo xtask soak --minutes {}", self.minutes);
        if self.nodes > 1 {
            let _ = write!(command, " --nodes {}", self.nodes);
        }
        if self.connections != CONNECTIONS {
            let _ = write!(command, " --connections {}", self.connections);
        }
        command
    }
}

#[expect(
    clippy::print_stdout,
    reason = "the table is the task's result, for people and scripts to read"
)]
pub(crate) fn soak(root: &Path, options: &Options) -> Result<()> {
    let (server, generator) = crate::bench::release_binaries(root)?;
    let name = format!("{}-node-{}-min", options.nodes, options.minutes);
    let out = root.join("target/soak-results").join(&name);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let launcher = servers::ours(&server, options.nodes)
        .with_port_offset(PORT_OFFSET)
        // The Prometheus metrics, read once the clients left: which structure holds what.
        .with_env("SOKETI_METRICS_ENABLED", "true");
    eprintln!(
        "\n==> soak: {} node(s), {} connections over {} channels, {} minutes",
        options.nodes,
        options.connections,
        options.channels(),
        options.minutes
    );
    let running = launcher.start(&out)?;
    let report_path = out.join("report.json");
    let _ = fs::remove_file(&report_path);
    // Source addresses apart from the benchmark's (127.0.N.2), a new third octet for each
    // soak, so that no run waits on another's sockets in TIME_WAIT.
    let mut cmd = crate::bench::generator_command(
        &generator,
        &launcher,
        &running,
        &format!("127.1.{}.2", std::process::id() % 250),
        &report_path,
    );
    cmd.args(["--handshakes", "256"])
        .args(["--connect-deadline-secs", "120"])
        .args(["--connections", &options.connections.to_string()])
        .args(["--channels", &options.channels().to_string()])
        .arg("--no-progress")
        .args(["soak", "--minutes", &options.minutes.to_string()])
        .arg("--rows")
        .arg(out.join("rows.jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // Connecting takes up to two minutes, the end a little more than the settle time.
    let deadline = Duration::from_secs(u64::from(options.minutes) * 60 + 600);
    let outcome = wait_bounded(cmd.spawn(), deadline);
    for (node, ops) in launcher.ops_addresses().into_iter().enumerate() {
        match servers::http_get(ops, "/metrics") {
            Ok(metrics) => {
                let path = out.join(format!("node{node}-metrics-after.txt"));
                fs::write(&path, metrics).with_context(|| format!("writing {}", path.display()))?;
            }
            Err(err) => eprintln!("warning: node {node}'s /metrics: {err:#}"),
        }
    }
    running.stop(options.nodes);
    let report: Option<Value> = fs::read_to_string(&report_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if let Some(error) = report.as_ref().and_then(|report| report["error"].as_str()) {
        bail!("the generator failed: {error}");
    }
    outcome.map_err(anyhow::Error::msg)?;
    let report = report.with_context(|| format!("no report at {}", report_path.display()))?;

    let machine = Machine::read().summary();
    let full = render(&report, options, &machine, |_, _| true);
    let condensed = render(&report, options, &machine, condensed_row);
    println!("{full}");
    let summary = json!({
        "command": options.command(),
        "machine": machine,
        "nodes": options.nodes,
        "connections": options.connections,
        "channels": options.channels(),
        "report": report,
    });
    let json_path = out.join("soak.json");
    fs::write(&json_path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    fs::write(out.join("soak.md"), &condensed)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "\nsoak: done; {} and soak.md (every 5th minute) in {}",
        json_path.display(),
        out.display()
    );
    Ok(())
}

/// Whether the condensed table keeps minute `minute` of `last`: the first, every fifth, the last.
pub(crate) fn condensed_row(minute: u64, last: u64) -> bool {
    minute == 1 || minute.is_multiple_of(5) || minute == last
}

/// A count per node, as `a / b / c`.
fn per_node_counts(value: &Value) -> String {
    value
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|value| int(value).to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .unwrap_or_default()
}

/// The per-minute table (the rows `keep` keeps) and the summary, as markdown.
pub(crate) fn render(
    report: &Value,
    options: &Options,
    machine: &str,
    keep: impl Fn(u64, u64) -> bool,
) -> String {
    let soak = &report["soak"];
    let summary = &soak["summary"];
    let minutes = soak["minutes"].as_array().cloned().unwrap_or_default();
    let last = minutes.last().map_or(0, |row| int(&row["minute"]));
    let mut out = String::new();
    let _ = writeln!(out, "Command: `{}`. {machine}.\n", options.command());
    let _ = writeln!(
        out,
        "| minute | RSS MiB | RSS MiB per node | fds per node | p50 ms | p99 ms | deliveries | \
         lost | dup | connections | reconnects | client events sent / received | API reads \
         (failed) | server CPU % |"
    );
    let _ = writeln!(out, "|{}", " --- |".repeat(14));
    for row in minutes.iter().filter(|row| keep(int(&row["minute"]), last)) {
        let per_node = |field: &str, scale: f64| {
            row[field]
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .map(|value| format!("{:.1}", value.as_f64().unwrap_or(0.0) * scale))
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .unwrap_or_default()
        };
        let fds = per_node_counts(&row["fds_per_node"]);
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} / {} | {} ({}) | \
             {:.0} |",
            int(&row["minute"]),
            float(&row["rss_kib"]) / 1024.0,
            per_node("rss_kib_per_node", 1.0 / 1024.0),
            fds,
            float(&row["latency"]["p50"]),
            float(&row["latency"]["p99"]),
            int(&row["deliveries"]),
            int(&row["lost"]),
            int(&row["duplicated"]),
            int(&row["connections"]),
            int(&row["reconnects"]),
            int(&row["client_events_sent"]),
            int(&row["client_events_received"]),
            int(&row["api_reads"]),
            int(&row["api_read_failed"]),
            float(&row["server_cpu_percent"]),
        );
    }
    let drift = float(&summary["rss_drift_percent"]);
    let (lost, duplicated) = (int(&summary["lost"]), int(&summary["duplicated"]));
    let (fds_before, fds_after) = (int(&summary["fds_before"]), int(&summary["fds_after"]));
    let met = |yes: bool| if yes { "met" } else { "NOT met" };
    let _ = writeln!(
        out,
        "\n- RSS from minute {} to minute {}: {:.1} → {:.1} MiB, a drift of {drift:+.2} % \
         (target < 5 %: {}).",
        int(&summary["reference_minute"]),
        int(&summary["last_minute"]),
        float(&summary["rss_reference_kib"]) / 1024.0,
        float(&summary["rss_last_kib"]) / 1024.0,
        met(drift < 5.0),
    );
    let _ = writeln!(
        out,
        "- p99 at minute {}: {:.2} ms; at the last minute: {:.2} ms.",
        int(&summary["reference_minute"]),
        float(&summary["p99_reference_ms"]),
        float(&summary["p99_last_ms"]),
    );
    let _ = writeln!(
        out,
        "- Witness deliveries lost: {lost}, duplicated: {duplicated}, of {} deliveries in all \
         (target: none lost: {}); witnesses closed by a server: {}.",
        int(&summary["deliveries"]),
        met(lost == 0 && duplicated == 0),
        int(&soak["witnesses_closed"]),
    );
    let _ = writeln!(
        out,
        "- Descriptors before any client: {} ({fds_before}); {:.0} s after every client left: \
         {} ({fds_after}) (target back to baseline: {}).",
        per_node_counts(&soak["before"]["fds_per_node"]),
        float(&soak["settle_secs"]),
        per_node_counts(&soak["after"]["fds_per_node"]),
        met(fds_after <= fds_before),
    );
    let _ = writeln!(
        out,
        "- RSS before any client: {:.1} MiB; after every client left: {:.1} MiB.",
        sum(&soak["before"]["rss_kib_per_node"]) / 1024.0,
        sum(&soak["after"]["rss_kib_per_node"]) / 1024.0,
    );
    let _ = writeln!(
        out,
        "- Connections subscribed at the start: {} of {} ({} witnesses, {} churning) in {:.1} s; \
         reconnections: {}; closed by a server: {}; `pusher:error` received: {}.",
        int(&report["setup"]["subscribed"]),
        int(&report["setup"]["wanted"]),
        int(&soak["witnesses"]),
        int(&soak["churners"]),
        float(&report["setup"]["seconds"]),
        int(&summary["reconnects"]),
        int(&report["closed_by_server"]),
        minutes.iter().map(|row| int(&row["errors"])).sum::<u64>(),
    );
    if let Some(error) = soak["first_error"].as_str() {
        let _ = writeln!(out, "- First error: `{error}`.");
    }
    out
}

fn int(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

fn float(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

fn sum(values: &Value) -> f64 {
    values
        .as_array()
        .map_or(0.0, |values| values.iter().map(float).sum())
}
