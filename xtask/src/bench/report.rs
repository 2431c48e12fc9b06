//! The figures drawn from the generator's reports, the table with ratios, and the page
//! `docs/benchmarks.md`.

use std::{fmt::Write as _, fs, process::Command};

use serde_json::Value;

use super::{Column, Options, Run, SEQUENTIAL_STEPS, console, servers::Kind};

mod figures;
mod page;
mod tables;

use figures::FIGURES;
pub(crate) use figures::{Figure, figure};
pub(crate) use page::{Machine, page};
use tables::{fan_out_steps, sequential_steps, subscription_counts, targets};

/// Whether more of a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Better {
    Higher,
    Lower,
    /// A count to read, not to compare.
    Neither,
}

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

pub(crate) fn table_row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

pub(crate) fn table_rule(out: &mut String, columns: usize) {
    let _ = writeln!(out, "|{}", " --- |".repeat(columns));
}

/// The number at `path` in a report's JSON, formatted, or `?` when there is none.
fn figure_at(report: &Value, path: &[&str], format: fn(f64) -> String) -> String {
    path.iter()
        .fold(report, |value, key| &value[*key])
        .as_f64()
        .map_or_else(|| "?".to_owned(), format)
}
