//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` on the nightly toolchain (the
//! workspace itself stays on its pinned stable one), each for a while, starting from the seeds
//! committed in `fuzz/seeds/<target>/`, and reports how many inputs each one ran. Inputs found on
//! the way are kept in `target/fuzz-corpus/<target>/`, crashes in `fuzz/artifacts/<target>/`.

use std::{fs, path::Path, process::Command, time::Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::{option_value, split_option};

/// The targets, by the names of `fuzz/Cargo.toml`'s binaries.
pub(crate) const TARGETS: &[&str] = &[
    "ws_frames",
    "client_message",
    "names",
    "signed_query",
    "peer_envelope",
    "config_env",
];

/// What `fuzz` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) seconds: u64,
    pub(crate) targets: Vec<&'static str>,
}

impl Options {
    pub(crate) fn parse(options: &[String]) -> Result<Self> {
        let mut parsed = Self {
            seconds: 60,
            targets: Vec::new(),
        };
        let mut options = options.iter();
        while let Some(option) = options.next() {
            let (name, inline) = split_option(option);
            let mut value = || option_value(name, &inline, &mut options);
            match name {
                "--seconds" => {
                    let text = value()?;
                    parsed.seconds = text.parse().ok().filter(|s| *s > 0).with_context(|| {
                        format!("`--seconds {text}`: expected a whole number above 0")
                    })?;
                }
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
        cmd.args(["fuzz", "run", target]).arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={}", options.seconds));
        cmd.arg("-print_final_stats=1");
        eprintln!("\n==> fuzz {target} for {} s", options.seconds);
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
        eprintln!("fuzz {target}: {runs} inputs in {:.0?}", started.elapsed());
        counts.push((*target, runs));
    }
    println!("| fuzz target | inputs run | seconds |\n| --- | --- | --- |");
    for (target, runs) in counts {
        println!("| {target} | {runs} | {} |", options.seconds);
    }
    Ok(())
}

/// `cargo` of the nightly toolchain, in the workspace root.
fn nightly_cargo(root: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"]).current_dir(root);
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
                seconds: 5,
                targets: vec!["names", "ws_frames"]
            }
        );
        assert_eq!(Options::parse(&[]).unwrap().targets, TARGETS);
        assert!(Options::parse(&["--target".into(), "nope".into()]).is_err());
        assert!(Options::parse(&["--seconds".into(), "0".into()]).is_err());
        let stats =
            "INFO: done\nstat::number_of_executed_units: 123456\nstat::average_exec_per_sec: 9\n";
        assert_eq!(executions(stats), Some(123_456));
        assert_eq!(executions("nothing"), None);
    }
}
