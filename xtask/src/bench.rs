//! `cargo xtask bench`: the scenarios of the benchmark against our server and, when asked, soketi
//! and sockudo, one server at a time on core 0 with the load generator on core 1, and one table
//! of every figure with the ratios between servers.
//!
//! Each scenario gets a freshly started server, so that no scenario inherits another's memory or
//! backlog. Peers that fail to install or start leave a note in their column instead of ending
//! the run.

pub(crate) mod console;
pub(crate) mod report;
pub(crate) mod servers;
#[cfg(test)]
mod tests;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use self::servers::{Kind, Launcher};
use crate::cmd::{cargo, option_value, run, split_option};

/// The scenarios, by the names `--scenario` takes.
pub(crate) const SCENARIOS: &[&str] = &[
    "fan-out",
    "many-channels",
    "idle-memory",
    "connect-storm",
    "http-publish",
    "presence-churn",
    "cluster",
    "hostile",
    "subscription-count",
    "sequential-publisher",
    "console",
];

/// The steps of the sequential-publisher scenario, in the order the generator runs them for
/// `--publishers 1,8 --rates 100,400`: publishers, and publishes per second of each.
pub(crate) const SEQUENTIAL_STEPS: [(u64, u64); 4] = [(1, 100), (1, 400), (8, 100), (8, 400)];

/// What `bench` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) against: Vec<Kind>,
    pub(crate) nodes: usize,
    pub(crate) scenarios: Vec<&'static str>,
    pub(crate) quick: bool,
}

impl Options {
    pub(crate) fn parse(options: &[String]) -> Result<Self> {
        let mut parsed = Self {
            against: Vec::new(),
            nodes: 1,
            scenarios: Vec::new(),
            quick: false,
        };
        let mut options = options.iter();
        while let Some(option) = options.next() {
            let (name, inline) = split_option(option);
            let mut value = || option_value(name, &inline, &mut options);
            match name {
                "--against" => {
                    for peer in value()?.split(',').filter(|peer| !peer.is_empty()) {
                        let kind = match peer {
                            "soketi" => Kind::Soketi,
                            "sockudo" => Kind::Sockudo,
                            other => bail!("unknown peer `{other}`; known: soketi, sockudo"),
                        };
                        if !parsed.against.contains(&kind) {
                            parsed.against.push(kind);
                        }
                    }
                }
                "--nodes" => {
                    let text = value()?;
                    parsed.nodes = text
                        .parse()
                        .ok()
                        .filter(|nodes| (1..=8).contains(nodes))
                        .with_context(|| format!("`--nodes {text}`: expected 1 to 8"))?;
                }
                "--scenario" => {
                    for scenario in value()?.split(',').filter(|name| !name.is_empty()) {
                        let known = SCENARIOS
                            .iter()
                            .find(|known| **known == scenario)
                            .with_context(|| {
                                format!(
                                    "unknown scenario `{scenario}`; known: {}",
                                    SCENARIOS.join(", ")
                                )
                            })?;
                        if !parsed.scenarios.contains(known) {
                            parsed.scenarios.push(known);
                        }
                    }
                }
                "--quick" if inline.is_none() => parsed.quick = true,
                other => bail!("unknown option `{other}` for `bench`"),
            }
        }
        if parsed.scenarios.is_empty() {
            parsed.scenarios = SCENARIOS.to_vec();
        }
        Ok(parsed)
    }
}

/// One run of the generator: a scenario, or two that share a run (idle memory is read once the
/// connect storm is over).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Run {
    FanOut,
    ManyChannels,
    Storm,
    HttpPublish,
    PresenceChurn,
    /// Cross-node latency; run only on a fleet of several nodes.
    Cluster,
    /// The many-channels load with attackers beside it: slowloris sockets and unsigned slow
    /// uploads.
    Hostile,
    /// A join storm on one channel with the app's `subscription_count` off; our server only.
    CountOff,
    /// The same with `subscription_count` on.
    CountOn,
    /// Publishers that each wait for their last answer, to one channel of 1k subscribers.
    SequentialOneChannel,
    /// The same over 100 channels of 10k subscribers in all.
    SequentialManyChannels,
    /// The fan-out load without a console, beside the next run; our one-node server only. The
    /// console's pairs run in alternating order (fan-out without first, many channels with
    /// first), so that neither setting always runs on the machine the other one warmed.
    ConsoleFanOutNone,
    /// The fan-out load with one console stream open on the app.
    ConsoleFanOutOpen,
    /// The many-channels load with one console stream open on the app.
    ConsoleManyChannelsOpen,
    /// The many-channels load without a console, beside the last run.
    ConsoleManyChannelsNone,
}

impl Run {
    fn name(self) -> &'static str {
        match self {
            Self::FanOut => "fan-out",
            Self::ManyChannels => "many-channels",
            Self::Storm => "connect-storm",
            Self::HttpPublish => "http-publish",
            Self::PresenceChurn => "presence-churn",
            Self::Cluster => "cluster",
            Self::Hostile => "hostile",
            Self::CountOff => "subscription-count-off",
            Self::CountOn => "subscription-count-on",
            Self::SequentialOneChannel => "sequential-publisher-1-channel",
            Self::SequentialManyChannels => "sequential-publisher-100-channels",
            Self::ConsoleFanOutNone => "console-fan-out-none",
            Self::ConsoleFanOutOpen => "console-fan-out-open",
            Self::ConsoleManyChannelsOpen => "console-many-channels-open",
            Self::ConsoleManyChannelsNone => "console-many-channels-none",
        }
    }

    /// For the console scenario's runs, whether the console is open; `None` for the others.
    pub(crate) fn console(self) -> Option<bool> {
        match self {
            Self::ConsoleFanOutNone | Self::ConsoleManyChannelsNone => Some(false),
            Self::ConsoleFanOutOpen | Self::ConsoleManyChannelsOpen => Some(true),
            _ => None,
        }
    }

    /// Whether this run does not apply to `kind` at all, so that it is not run and its cell
    /// shows a dash rather than a note: the cluster run on one node, and the console's runs on
    /// anything but our one-node server (the peers have no console, and its cost is measured
    /// on one node).
    pub(crate) fn left_out(self, kind: Kind) -> bool {
        match self {
            Self::Cluster => kind.nodes() == 1,
            _ if self.console().is_some() => kind != Kind::Ours { nodes: 1 },
            _ => false,
        }
    }

    /// Why this run cannot measure `kind`, if it cannot.
    pub(crate) fn unsupported(self, kind: Kind) -> Option<String> {
        let counts = matches!(self, Self::CountOff | Self::CountOn);
        match kind {
            _ if self == Self::Cluster && kind.nodes() == 1 => Some("one node".into()),
            Kind::Soketi | Kind::Sockudo if self.console().is_some() => {
                Some(format!("{} has no console", kind.label()))
            }
            _ if self.left_out(kind) => Some("the console's cost is measured on one node".into()),
            Kind::Soketi if counts => Some("soketi has no subscription_count".into()),
            Kind::Sockudo if counts => {
                Some("sockudo sends no subscription_count to subscribers (only a webhook)".into())
            }
            _ => None,
        }
    }

    /// The settings of the server for this run beyond the usual ones.
    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::CountOn => &[("SOKETI_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT", "true")],
            _ => &[],
        }
    }

    /// The runs the scenarios need, in order.
    pub(crate) fn for_scenarios(scenarios: &[&str]) -> Vec<Self> {
        let mut runs: Vec<Self> = scenarios
            .iter()
            .flat_map(|scenario| match *scenario {
                "fan-out" => vec![Self::FanOut],
                "many-channels" => vec![Self::ManyChannels],
                "http-publish" => vec![Self::HttpPublish],
                "presence-churn" => vec![Self::PresenceChurn],
                "cluster" => vec![Self::Cluster],
                // The same load without the attackers is what the attack is measured against.
                "hostile" => vec![Self::ManyChannels, Self::Hostile],
                "subscription-count" => vec![Self::CountOff, Self::CountOn],
                "sequential-publisher" => {
                    vec![Self::SequentialOneChannel, Self::SequentialManyChannels]
                }
                "console" => vec![
                    Self::ConsoleFanOutNone,
                    Self::ConsoleFanOutOpen,
                    Self::ConsoleManyChannelsOpen,
                    Self::ConsoleManyChannelsNone,
                ],
                _ => vec![Self::Storm],
            })
            .collect();
        runs.sort();
        runs.dedup();
        runs
    }

    /// The generator's arguments for this run (after the common ones).
    pub(crate) fn generator_args(self, quick: bool) -> Vec<String> {
        let pick = |full: &str, small: &str| if quick { small } else { full }.to_owned();
        let words = |text: String| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        words(match self {
            Self::FanOut | Self::ConsoleFanOutNone => Self::fan_out(quick),
            Self::ManyChannels | Self::ConsoleManyChannelsNone => Self::many_channels(quick),
            // `--console` is the generator's own option, so it comes before the mode.
            Self::ConsoleFanOutOpen => format!("--console {}", Self::fan_out(quick)),
            Self::ConsoleManyChannelsOpen => format!("--console {}", Self::many_channels(quick)),
            Self::Hostile => format!(
                "--attack-slowloris {} --attack-uploads {} --attack-upload-mb 50 {}",
                pick("2000", "200"),
                pick("50", "5"),
                Self::many_channels(quick),
            ),
            Self::Storm => format!(
                "--connections {} --channels 1 --handshakes 256 idle --hold-secs {}",
                pick("19000", "1000"),
                pick("5", "1"),
            ),
            Self::HttpPublish => format!(
                "http --http-connections 16 --duration-secs {}",
                pick("10", "2")
            ),
            Self::PresenceChurn => format!(
                "--connections {} --kind presence churn --churners {} --duration-secs {}",
                pick("1000", "100"),
                pick("100", "10"),
                pick("10", "2"),
            ),
            Self::Cluster => format!(
                "--connections {} --channels {} publish --rates {} --step-secs {} \
                 --drain-ms {} --publishers 4",
                pick("1000", "300"),
                pick("100", "30"),
                pick("1000", "200"),
                pick("10", "2"),
                pick("1000", "500"),
            ),
            Self::CountOff | Self::CountOn => format!(
                "--connections {} --channels 1 --handshakes 256 subscription-count \
                 --settle-secs 5",
                pick("10000", "1000"),
            ),
            Self::SequentialOneChannel => Self::sequential(quick, pick("1000", "100"), "1"),
            Self::SequentialManyChannels => {
                Self::sequential(quick, pick("10000", "1000"), &pick("100", "10"))
            }
        })
    }
}

impl Run {
    /// The generator's arguments of a sequential-publisher run: every step of
    /// [`SEQUENTIAL_STEPS`] in turn, 10 s each.
    fn sequential(quick: bool, connections: String, channels: &str) -> String {
        format!(
            "--connections {connections} --channels {channels} sequential --publishers 1,8 \
             --rates 100,400 --step-secs {} --drain-ms {}",
            if quick { "2" } else { "10" },
            if quick { "1000" } else { "2000" },
        )
    }

    /// The generator's arguments of the fan-out load, which the console scenario repeats with
    /// and without a console.
    fn fan_out(quick: bool) -> String {
        let pick = |full: &'static str, small: &'static str| if quick { small } else { full };
        format!(
            "--connections {} --channels 1 publish --rates {} --step-secs {} --drain-ms {} \
             --stop-when-behind --publishers 8",
            pick("1000", "100"),
            pick("100,200,400,600,800,1200,1600,2400", "50,200"),
            pick("4", "1.5"),
            pick("1000", "500"),
        )
    }

    /// The generator's arguments of the many-channels load, which the hostile run repeats with
    /// attackers beside it, and the console scenario with and without a console.
    fn many_channels(quick: bool) -> String {
        let pick = |full: &'static str, small: &'static str| if quick { small } else { full };
        format!(
            "--connections {} --channels {} publish --rates {} --step-secs {} --drain-ms {} \
             --publishers 4",
            pick("10000", "500"),
            pick("100", "10"),
            pick("200", "100"),
            pick("10", "2"),
            pick("2000", "500"),
        )
    }
}

/// The results of one server: its report per run, or why there is none.
pub(crate) struct Column {
    pub(crate) kind: Kind,
    /// Why the server could not be measured at all.
    pub(crate) unavailable: Option<String>,
    pub(crate) runs: Vec<(Run, Result<Value, String>)>,
}

impl Column {
    pub(crate) fn report(&self, wanted: Run) -> Result<&Value, String> {
        if let Some(why) = &self.unavailable {
            return Err(why.clone());
        }
        match self.runs.iter().find(|(run, _)| *run == wanted) {
            Some((_, Ok(report))) => Ok(report),
            Some((_, Err(why))) => Err(why.clone()),
            None => Err("not run".into()),
        }
    }
}

/// How long one generator run may take before it is killed.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

#[expect(
    clippy::print_stdout,
    reason = "the table is the task's result, for people and scripts to read"
)]
pub(crate) fn bench(root: &Path, options: &Options) -> Result<()> {
    let started = Instant::now();
    let (server, generator) = release_binaries(root)?;
    let out = root.join("target/bench-results");
    let peers = root.join("target/bench-peers");
    for dir in [&out, &peers] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let recipes = servers::recipes(root);

    let mut launchers: Vec<(Kind, Result<Launcher, String>)> =
        vec![(Kind::Ours { nodes: 1 }, Ok(servers::ours(&server, 1)))];
    for &peer in &options.against {
        eprintln!("\n==> bench: installing {}", peer.label());
        let launcher = match peer {
            Kind::Soketi => servers::install_soketi(&recipes, &peers),
            _ => servers::install_sockudo(root, &recipes, &peers),
        };
        if let Err(err) = &launcher {
            eprintln!("warning: {} is unavailable: {err:#}", peer.label());
        }
        launchers.push((
            peer,
            launcher.map_err(|err| format!("install failed: {err:#}")),
        ));
    }
    if options.nodes > 1 {
        let kind = Kind::Ours {
            nodes: options.nodes,
        };
        launchers.push((kind, Ok(servers::ours(&server, options.nodes))));
    }

    let runs = Run::for_scenarios(&options.scenarios);
    let mut columns = Vec::new();
    let mut sequence = 0u8;
    for (kind, launcher) in launchers {
        let mut column = Column {
            kind,
            unavailable: None,
            runs: Vec::new(),
        };
        match launcher {
            Err(why) => column.unavailable = Some(why),
            Ok(launcher) => {
                for &scenario in &runs {
                    if let Some(why) = scenario.unsupported(kind) {
                        if !scenario.left_out(kind) {
                            column.runs.push((scenario, Err(why)));
                        }
                        continue;
                    }
                    sequence = sequence.wrapping_add(1).max(1);
                    eprintln!("\n==> bench: {} {}", kind.label(), scenario.name());
                    let launcher = scenario
                        .env()
                        .iter()
                        .fold(launcher.clone(), |launcher, (key, value)| {
                            launcher.with_env(key, value)
                        });
                    let result = measure(
                        &launcher,
                        scenario,
                        &generator,
                        &out,
                        sequence,
                        options.quick,
                    );
                    if let Err(err) = &result {
                        eprintln!("warning: {} {}: {err}", kind.label(), scenario.name());
                    }
                    column.runs.push((scenario, result));
                }
            }
        }
        columns.push(column);
    }

    let machine = report::Machine::read();
    let table = report::render(&columns, &options.scenarios, options.quick, &machine);
    println!("{table}");
    let page = if options.quick {
        out.join("benchmarks.md")
    } else {
        root.join("docs/benchmarks.md")
    };
    fs::write(&page, report::page(&table, options))
        .with_context(|| format!("writing {}", page.display()))?;
    eprintln!(
        "\nbench: done in {:.0} s; table written to {}",
        started.elapsed().as_secs_f64(),
        page.display()
    );
    Ok(())
}

/// Starts the server, runs the generator once against it, stops the server, and returns the
/// generator's JSON summary.
fn measure(
    launcher: &Launcher,
    scenario: Run,
    generator: &Path,
    out: &Path,
    sequence: u8,
    quick: bool,
) -> Result<Value, String> {
    let label = launcher.kind.label().replace([' ', '×'], "-");
    let logs = out.join(format!("{label}-{}", scenario.name()));
    fs::create_dir_all(&logs).map_err(|err| format!("creating {}: {err}", logs.display()))?;
    let running = launcher
        .start(&logs)
        .map_err(|err| format!("start failed: {err:#}"))?;
    let json = logs.join("report.json");
    let _ = fs::remove_file(&json);
    let nodes = launcher.kind.nodes();
    // Each run has source addresses of its own, so that the last run's sockets in TIME_WAIT
    // never hold the ports this one needs.
    let mut cmd = generator_command(
        generator,
        launcher,
        &running,
        &format!("127.0.{sequence}.2"),
        &json,
    );
    cmd.args(scenario.generator_args(quick))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let outcome = wait_bounded(cmd.spawn(), RUN_DEADLINE);
    running.stop(nodes);
    // A generator that failed leaves `{"error": …}` in its report file.
    let report: Option<Value> = fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if let Some(error) = report.as_ref().and_then(|report| report["error"].as_str()) {
        return Err(error.to_owned());
    }
    outcome?;
    report.ok_or_else(|| format!("no report at {}", json.display()))
}

/// Waits for the generator, killing it past `deadline`.
pub(crate) fn wait_bounded(
    child: std::io::Result<Child>,
    deadline: Duration,
) -> Result<(), String> {
    let mut child = child.map_err(|err| format!("could not start the generator: {err}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the generator failed ({status})")),
            Ok(None) if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the generator ran past {} s", deadline.as_secs()));
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(err) => return Err(format!("waiting for the generator: {err}")),
        }
    }
}

/// Builds the server and the load generator in release mode, and gives their paths.
pub(crate) fn release_binaries(root: &Path) -> Result<(PathBuf, PathBuf)> {
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "soketi-server",
        "-p",
        "soketi-bench",
    ]))?;
    Ok((
        crate::binary(root, "release", "soketi-server")?,
        crate::binary(root, "release", "soketi-bench")?,
    ))
}

/// The load generator on core 1, pointed at every server of `launcher` (and reading the CPU and
/// memory of `running`'s pids), its connections from source addresses starting at
/// `source_first`, 5000 to an address, writing its JSON summary to `json`; the caller adds the
/// mode and its options.
pub(crate) fn generator_command(
    generator: &Path,
    launcher: &Launcher,
    running: &servers::Running,
    source_first: &str,
    json: &Path,
) -> Command {
    let join = |items: Vec<String>| items.join(",");
    let servers = join(
        launcher
            .addresses()
            .iter()
            .map(ToString::to_string)
            .collect(),
    );
    let pids = join(running.pids().iter().map(ToString::to_string).collect());
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1"])
        .arg(generator)
        .args(["--server", &servers])
        .args(["--server-pid", &pids])
        .args(["--source-first", source_first])
        .args(["--per-source", "5000"])
        .arg("--json")
        .arg(json);
    cmd
}
