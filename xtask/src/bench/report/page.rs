//! The page around the tables: the machine it ran on, the command, the method and what bounds
//! the figures.

use super::*;

/// What the machine is, for the page.
pub(crate) struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    kernel: String,
    rustc: String,
    node: String,
    pub(super) date: String,
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
    if options.scenarios.len() < crate::bench::SCENARIOS.len() {
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
