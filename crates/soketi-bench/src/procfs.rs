//! CPU time and resident memory of processes, read from `/proc`: the servers under load (by pid)
//! and the generator itself.

#[cfg(test)]
mod tests;

use std::{
    fs, io,
    time::{Duration, Instant},
};

use crate::error::BenchError;

/// CPU time and memory of a set of processes at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Sample {
    /// User and system time of every thread, summed over the processes.
    pub(crate) cpu: Duration,
    /// Resident memory in KiB, summed over the processes.
    pub(crate) rss_kib: u64,
}

/// Samples `pids` (nothing for an empty list).
pub(crate) fn sample(pids: &[u32]) -> Result<Sample, BenchError> {
    let mut total = Sample::default();
    for &pid in pids {
        let read = |file: &str| {
            fs::read_to_string(format!("/proc/{pid}/{file}"))
                .map_err(|source| BenchError::Proc { pid, source })
        };
        total.cpu += cpu_of_stat(&read("stat")?).ok_or_else(|| malformed(pid, "stat"))?;
        total.rss_kib += rss_of_status(&read("status")?).ok_or_else(|| malformed(pid, "status"))?;
    }
    Ok(total)
}

/// How many files process `pid` holds open: the entries of `/proc/<pid>/fd`.
pub(crate) fn open_files(pid: u32) -> Result<u64, BenchError> {
    let entries = fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|source| BenchError::Proc { pid, source })?;
    Ok(entries.count() as u64)
}

/// What a phase of the run costs: it starts with [`Meter::start`] and is read with
/// [`Meter::read`].
pub(crate) struct Meter {
    started: Instant,
    server: Sample,
    own: Duration,
}

/// Wall time and CPU time of the servers and of the generator since a [`Meter`] started.
pub(crate) struct Spent {
    pub(crate) wall: Duration,
    pub(crate) server_cpu: Duration,
    pub(crate) own_cpu: Duration,
}

impl Meter {
    /// Starts measuring `pids` and the generator now.
    pub(crate) fn start(pids: &[u32]) -> Result<Self, BenchError> {
        Ok(Self {
            server: sample(pids)?,
            own: own_cpu(),
            started: Instant::now(),
        })
    }

    /// When the meter started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// What was spent since the start.
    pub(crate) fn read(&self, pids: &[u32]) -> Result<Spent, BenchError> {
        let wall = self.started.elapsed();
        Ok(Spent {
            wall,
            server_cpu: sample(pids)?.cpu.saturating_sub(self.server.cpu),
            own_cpu: own_cpu().saturating_sub(self.own),
        })
    }
}

/// This process's own CPU time.
pub(crate) fn own_cpu() -> Duration {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| cpu_of_stat(&stat))
        .unwrap_or_default()
}

fn malformed(pid: u32, file: &str) -> BenchError {
    BenchError::Proc {
        pid,
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/{file}"),
        ),
    }
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub(crate) fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    Some(Duration::from_nanos(
        (utime + stime).saturating_mul(1_000_000_000) / ticks,
    ))
}

/// `VmRSS` of a `/proc/<pid>/status` file, in KiB.
pub(crate) fn rss_of_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Raises this process's open-files soft limit to its hard limit, as `ulimit -n` would; each
/// connection is one file. Returns the limit in force.
pub fn raise_open_files() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        // Failure leaves the old limit, which the caller reports.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
