//! Named, timed steps of a task, with a one-line summary at the end.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// What a failed step means for the steps after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// Skip every later step.
    Stop,
    /// Run the later steps anyway, to report every failure at once.
    KeepGoing,
}

/// The steps of one task, in the order they ran.
pub(crate) struct Steps {
    task: &'static str,
    on_failure: OnFailure,
    started: Instant,
    done: Vec<Done>,
}

struct Done {
    name: &'static str,
    elapsed: Duration,
    ok: bool,
}

impl Steps {
    pub(crate) fn new(task: &'static str, on_failure: OnFailure) -> Self {
        Self {
            task,
            on_failure,
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    /// Runs one step under a heading, unless an earlier step failed and this task stops at the
    /// first failure.
    pub(crate) fn run(&mut self, name: &'static str, step: impl FnOnce() -> Result<()>) {
        if self.on_failure == OnFailure::Stop && self.failed().next().is_some() {
            return;
        }
        eprintln!("\n==> {} {name}", self.task);
        let started = Instant::now();
        let result = step();
        let elapsed = started.elapsed();
        if let Err(err) = &result {
            eprintln!("error: {name}: {err:#}");
        }
        self.done.push(Done {
            name,
            elapsed,
            ok: result.is_ok(),
        });
    }

    /// Prints the summary line and fails if any step failed.
    pub(crate) fn finish(self) -> Result<()> {
        let failed: Vec<&str> = self.failed().collect();
        let per_step: Vec<String> = self
            .done
            .iter()
            .map(|done| {
                let mark = if done.ok { "" } else { " FAILED" };
                format!("{} {}{mark}", done.name, format_duration(done.elapsed))
            })
            .collect();
        let verdict = if failed.is_empty() {
            "ok".to_owned()
        } else {
            "FAILED".to_owned()
        };
        eprintln!(
            "\nxtask {}: {verdict} in {} ({})",
            self.task,
            format_duration(self.started.elapsed()),
            per_step.join(", ")
        );
        if !failed.is_empty() {
            bail!("{} failed at: {}", self.task, failed.join(", "));
        }
        Ok(())
    }

    fn failed(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.done
            .iter()
            .filter(|done| !done.ok)
            .map(|done| done.name)
    }
}

/// `0.4s`, `12.3s`, `2m05s`.
fn format_duration(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = elapsed.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::format_duration;

    #[test]
    fn durations() {
        let check = |millis: u64, expected: &str| {
            assert_eq!(format_duration(Duration::from_millis(millis)), expected);
        };
        check(0, "0.0s");
        check(420, "0.4s");
        check(12_345, "12.3s");
        check(59_900, "59.9s");
        check(60_000, "1m00s");
        check(125_700, "2m05s");
    }
}
