//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` on the nightly toolchain (the
//! workspace itself stays on its pinned stable one), each for a while, starting from the seeds
//! committed in `fuzz/seeds/<target>/`, and reports how many inputs each one ran. Inputs found on
//! the way are kept in `target/fuzz-corpus/<target>/`, crashes in `fuzz/artifacts/<target>/`.

use std::{fs, path::Path, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::{number_in, option_value, split_option};

/// The targets, by the names of `fuzz/Cargo.toml`'s binaries.
pub(crate) const TARGETS: &[&str] = &[
    "ws_frames",
    "client_message",
    "names",
    "signed_query",
    "peer_envelope",
    "config_env",
    "http_bodies",
    "session",
    "cluster_wire",
    "config_file",
];

/// What `fuzz` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// How long each target runs; `None` with `runs`: until it ran that many inputs.
    pub(crate) seconds: Option<u64>,
    /// How many inputs each target runs at most.
    pub(crate) runs: Option<u64>,
    pub(crate) targets: Vec<&'static str>,
    /// Builds without AddressSanitizer (`--no-sanitizer`): the workspace forbids `unsafe`, so
    /// the sanitizer watches only dependencies, and it makes the allocation-heavy targets
    /// (configuration, whole sessions) several times slower; the long counting runs use this.
    pub(crate) no_sanitizer: bool,
}

impl Options {
    pub(crate) fn parse(options: &[String]) -> Result<Self> {
        let mut parsed = Self {
            seconds: None,
            runs: None,
            targets: Vec::new(),
            no_sanitizer: false,
        };
        let mut options = options.iter();
        while let Some(option) = options.next() {
            let (name, inline) = split_option(option);
            let mut value = || option_value(name, &inline, &mut options);
            match name {
                "--seconds" => {
                    let text = value()?;
                    parsed.seconds = Some(number_in(name, &text, 1..=604_800)?);
                }
                "--runs" => {
                    let text = value()?;
                    parsed.runs = Some(number_in(name, &text, 1..=1_000_000_000_000)?);
                }
                "--no-sanitizer" => parsed.no_sanitizer = true,
                "--target" => {
                    for wanted in value()?.split(',').filter(|t| !t.is_empty()) {
                        let known = TARGETS.iter().find(|t| **t == wanted).with_context(|| {
                            format!(
                                "unknown fuzz target `{wanted}`; known: {}",
                                TARGETS.join(", ")
                            )
                        })?;
                        if !parsed.targets.contains(known) {
                            parsed.targets.push(known);
                        }
                    }
                }
                other => bail!("unknown option `{other}` for `fuzz`"),
            }
        }
        if parsed.targets.is_empty() {
            parsed.targets = TARGETS.to_vec();
        }
        if parsed.seconds.is_none() && parsed.runs.is_none() {
            parsed.seconds = Some(60);
        }
        Ok(parsed)
    }
}

/// Runs each target for `options.seconds` and prints the executions of each.
#[expect(
    clippy::print_stdout,
    reason = "the counts are the task's result, for people and scripts to read"
)]
pub(crate) fn fuzz(root: &Path, options: &Options) -> Result<()> {
    let version = nightly_cargo(root).args(["fuzz", "--version"]).output();
    if !version.is_ok_and(|out| out.status.success()) {
        bail!(
            "`cargo fuzz` on the nightly toolchain is needed: `rustup toolchain install nightly` \
             and `cargo install cargo-fuzz --locked`"
        );
    }
    let mut counts = Vec::new();
    for target in &options.targets {
        let corpus = root.join("target/fuzz-corpus").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = root.join("fuzz/seeds").join(target);
        let mut cmd = nightly_cargo(root);
        cmd.args(["fuzz", "run", target]);
        if options.no_sanitizer {
            cmd.args(["--sanitizer", "none"]);
        }
        cmd.arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        // Leaks are not libFuzzer's to find here: the targets keep state across inputs (a
        // server, a fleet), which its leak check reads as leaks and which slows every input
        // tenfold; the targets assert that what an input made is gone, and the soak measures.
        cmd.args(["--", "-print_final_stats=1", "-detect_leaks=0"]);
        if let Some(seconds) = options.seconds {
            cmd.arg(format!("-max_total_time={seconds}"));
        }
        if let Some(runs) = options.runs {
            cmd.arg(format!("-runs={runs}"));
        }
        eprintln!("\n==> fuzz {target}");
        let started = Instant::now();
        let out = cmd
            .output()
            .with_context(|| format!("running the fuzz target {target}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the fuzz target {target} failed ({}); the input is in fuzz/artifacts/{target}/:\n{}",
                out.status,
                tail.join("\n")
            );
        }
        let runs = executions(&stderr).with_context(|| {
            format!("the fuzz target {target} printed no execution count:\n{stderr}")
        })?;
        let took = started.elapsed().as_secs();
        eprintln!("fuzz {target}: {runs} inputs in {took} s");
        counts.push((*target, runs, took));
    }
    println!("| fuzz target | inputs run | seconds |\n| --- | --- | --- |");
    for (target, runs, took) in counts {
        println!("| {target} | {runs} | {took} |");
    }
    Ok(())
}

/// `cargo` of the nightly toolchain, in the workspace root.
fn nightly_cargo(root: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]).current_dir(root);
    crate::cmd::without_package_vars(&mut cmd);
    cmd
}

/// libFuzzer's count of inputs run, from its final statistics.
pub(crate) fn executions(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|line| {
        line.strip_prefix("stat::number_of_executed_units:")
            .and_then(|n| n.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_counts() {
        let parsed = Options::parse(&[
            "--seconds".into(),
            "5".into(),
            "--target=names,ws_frames".into(),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            Options {
                seconds: Some(5),
                runs: None,
                targets: vec!["names", "ws_frames"],
                no_sanitizer: false,
            }
        );
        let defaults = Options::parse(&[]).unwrap();
        assert_eq!(
            (defaults.targets, defaults.seconds),
            (TARGETS.to_vec(), Some(60))
        );
        let runs = Options::parse(&["--runs=10000000".into()]).unwrap();
        assert_eq!((runs.seconds, runs.runs), (None, Some(10_000_000)));
        assert!(
            Options::parse(&["--no-sanitizer".into()])
                .unwrap()
                .no_sanitizer
        );
        assert!(Options::parse(&["--runs".into(), "-1".into()]).is_err());
        assert!(Options::parse(&["--target".into(), "nope".into()]).is_err());
        assert!(Options::parse(&["--seconds".into(), "0".into()]).is_err());
        let stats =
            "INFO: done\nstat::number_of_executed_units: 123456\nstat::average_exec_per_sec: 9\n";
        assert_eq!(executions(stats), Some(123_456));
        assert_eq!(executions("nothing"), None);
    }
}
