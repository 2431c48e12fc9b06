//! The console scenario's table: the fan-out and many-channels figures of soketi-rs (one node)
//! without a console and with one console stream open on the app, the ratio between them (what
//! the tap costs), and what the console received.

use std::fmt::Write as _;

use super::report::{count, figure, number, ratio, table_row, table_rule};
use super::{Column, Run};

/// A load that the console scenario runs twice.
struct Load {
    /// How the rows name it.
    name: &'static str,
    /// The run without a console.
    none: Run,
    /// The run with one console open.
    open: Run,
    /// The figures of the main table that the two runs give again, by name.
    figures: &'static [&'static str],
}

const LOADS: &[Load] = &[
    Load {
        name: "fan-out",
        none: Run::ConsoleFanOutNone,
        open: Run::ConsoleFanOutOpen,
        figures: &[
            "fan-out: peak deliveries/s (1k connections, 1 channel)",
            "fan-out: server CPU per delivery at the peak (µs)",
            "fan-out at 400 publishes/s: deliveries/s",
            "fan-out at 400 publishes/s: p99 (ms)",
            "fan-out at 400 publishes/s: server CPU per delivery (µs)",
        ],
    },
    Load {
        name: "many channels",
        none: Run::ConsoleManyChannelsNone,
        open: Run::ConsoleManyChannelsOpen,
        figures: &[
            "many channels: p50 (ms; 10k connections, 100 channels, 200 publishes/s)",
            "many channels: p99 (ms)",
            "many channels: server CPU per delivery (µs)",
            "many channels: server peak RSS (MiB)",
        ],
    },
];

/// Writes the console's table for `ours`, our one-node server; `note` numbers the reason a cell
/// is empty, as the main table's notes do.
pub(crate) fn render(out: &mut String, ours: &Column, note: &mut dyn FnMut(String) -> usize) {
    let mut rows = Vec::new();
    for load in LOADS {
        for name in load.figures {
            // Every name is one of the main table's, which a test checks.
            let Some(figure) = figure(name) else {
                continue;
            };
            let none = figure.value_in(ours, load.none);
            let open = figure.value_in(ours, load.open);
            let ratio = match (&none, &open) {
                (Ok(none), Ok(open)) => ratio(figure.better, *none, *open)
                    .map_or_else(|| "—".to_owned(), |ratio| format!("{ratio:.2}×")),
                _ => "—".to_owned(),
            };
            rows.push(vec![
                (*name).to_owned(),
                shown(none, number, ours, load.none, note),
                shown(open, number, ours, load.open, note),
                ratio,
            ]);
        }
        let console = ours.report(load.open).map(|report| &report["console"]);
        let field = |key: &str| {
            console.clone().and_then(|console| {
                console[key]
                    .as_f64()
                    .ok_or_else(|| "no console in the report".to_owned())
            })
        };
        let mut received = format!(
            "{} ({})",
            shown(field("lines"), count, ours, load.open, note),
            shown(field("events"), count, ours, load.open, note),
        );
        if let Ok(console) = console
            && console["connected"].as_bool() == Some(false)
        {
            let index = note(format!(
                "{} {}: the console stream closed before the last step ended",
                ours.kind.label(),
                load.open.name()
            ));
            let _ = write!(received, " [{index}]");
        }
        rows.push(vec![
            format!("{}: console lines received (of them `event`)", load.name),
            "—".to_owned(),
            received,
            "—".to_owned(),
        ]);
        rows.push(vec![
            format!("{}: console lines the server dropped", load.name),
            "—".to_owned(),
            shown(field("dropped"), count, ours, load.open, note),
            "—".to_owned(),
        ]);
    }
    let _ = writeln!(
        out,
        "\nThe console's cost, soketi-rs (one node): the fan-out and many-channels loads again, \
         each on a fresh server without a console and with one console stream open on the app \
         from before the first publish to the end of the last step (fan-out ran without it \
         first, many channels with it first):\n"
    );
    let header = ["figure", "no console", "one console open", "ratio"];
    table_row(out, &header.map(str::to_owned));
    table_rule(out, header.len());
    for row in &rows {
        table_row(out, row);
    }
    let _ = writeln!(
        out,
        "\nThe ratio is how many times better the run without a console does: 1.00× is no cost \
         that the runs tell apart, above 1× is what the open console costs, and below 1× the run \
         with it did better, which is the noise between runs."
    );
}

/// `value` formatted, or `n/a` with the number of the note that says why `ours` has none in
/// `run`.
fn shown(
    value: Result<f64, String>,
    format: fn(f64) -> String,
    ours: &Column,
    run: Run,
    note: &mut dyn FnMut(String) -> usize,
) -> String {
    match value {
        Ok(value) => format(value),
        Err(why) => {
            let index = note(format!("{} {}: {why}", ours.kind.label(), run.name()));
            format!("n/a [{index}]")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{LOADS, render};
    use crate::bench::report::figure;
    use crate::bench::{Column, Run, servers::Kind};

    #[test]
    fn every_figure_is_one_of_the_main_table() {
        for load in LOADS {
            for name in load.figures {
                assert!(figure(name).is_some(), "{name}");
            }
        }
    }

    /// A publish report of one step at 400 per second, whose figures are `scale` times those
    /// of the run without a console, with the console's counts when `console` is given.
    fn report(scale: f64, console: Option<(u64, u64, u64, bool)>) -> serde_json::Value {
        json!({
            "steps": [{
                "rate": 400,
                "deliveries_per_sec": 400_000.0 / scale,
                "server_cpu_us_per_delivery": 2.0 * scale,
                "latency": { "p50": 1.0 * scale, "p99": 8.0 * scale },
            }],
            "peak_deliveries_per_sec": 400_000.0 / scale,
            "server": { "rss_peak_kib": 102_400.0 * scale },
            "console": console.map(|(lines, events, dropped, connected)| json!({
                "lines": lines,
                "events": events,
                "dropped": dropped,
                "connected": connected,
            })),
        })
    }

    #[test]
    fn sets_each_figure_without_and_with_the_console_side_by_side() {
        let ours = Column {
            kind: Kind::Ours { nodes: 1 },
            unavailable: None,
            runs: vec![
                (Run::ConsoleFanOutNone, Ok(report(1.0, None))),
                (
                    Run::ConsoleFanOutOpen,
                    Ok(report(1.25, Some((1700, 1600, 12, true)))),
                ),
                (
                    Run::ConsoleManyChannelsOpen,
                    Ok(report(1.0, Some((2100, 2000, 0, false)))),
                ),
                (Run::ConsoleManyChannelsNone, Err("start failed".into())),
            ],
        };
        let mut notes = Vec::new();
        let mut out = String::new();
        // As the main table's notes do, a reason given again has the number it had.
        render(&mut out, &ours, &mut |text| {
            if let Some(index) = notes.iter().position(|known| *known == text) {
                return index + 1;
            }
            notes.push(text);
            notes.len()
        });
        let row = |name: &str| {
            out.lines()
                .find(|line| line.starts_with(&format!("| {name} |")))
                .unwrap_or_else(|| panic!("no row {name} in\n{out}"))
                .to_owned()
        };
        assert_eq!(
            row("fan-out: peak deliveries/s (1k connections, 1 channel)"),
            "| fan-out: peak deliveries/s (1k connections, 1 channel) | 400,000 | 320,000 | 1.25× |"
        );
        assert_eq!(
            row("fan-out at 400 publishes/s: p99 (ms)"),
            "| fan-out at 400 publishes/s: p99 (ms) | 8.00 | 10.0 | 1.25× |"
        );
        assert_eq!(
            row("fan-out: console lines received (of them `event`)"),
            "| fan-out: console lines received (of them `event`) | — | 1,700 (1,600) | — |"
        );
        assert_eq!(
            row("fan-out: console lines the server dropped"),
            "| fan-out: console lines the server dropped | — | 12 | — |"
        );
        assert_eq!(
            row("many channels: p99 (ms)"),
            "| many channels: p99 (ms) | n/a [1] | 8.00 | — |"
        );
        assert_eq!(
            row("many channels: console lines received (of them `event`)"),
            "| many channels: console lines received (of them `event`) | — | 2,100 (2,000) [2] | — |"
        );
        assert_eq!(
            notes,
            [
                "soketi-rs console-many-channels-none: start failed",
                "soketi-rs console-many-channels-open: the console stream closed before the last \
                 step ended",
            ]
        );
    }
}
