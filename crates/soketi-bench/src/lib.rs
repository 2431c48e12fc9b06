//! A load generator for any Pusher Channels protocol server: soketi-rs, soketi, sockudo, Pusher
//! itself on loopback.
//!
//! [`run`] carries out one [`Plan`]: it opens WebSocket connections (from several source
//! addresses, a bounded number of handshakes at a time), subscribes them over public, private or
//! presence channels (signing with the app secret), then drives one [`Mode`]: timed publishes
//! through the HTTP API (from publishers sharing one schedule, or each on its own), an idle hold,
//! raw HTTP publish throughput, presence churn, a join storm that counts the
//! `subscription_count` events, or a soak (every kind of traffic at once for many minutes, with a
//! row of figures per minute). It returns a [`Report`] of connect times, deliveries per second,
//! latency percentiles from publish to delivery, lost, duplicated and reordered messages, and the
//! servers' CPU time and memory read from `/proc` for the pids the plan names, beside the
//! generator's own CPU use. With [`Plan::console`] it also holds a live debug console stream
//! open on the app over the measured phase and counts its lines, so that a run shows what an
//! open console costs. `cargo xtask bench` runs it in scenarios against each server.
//!
//! The generator must not be what limits a figure, so its hot path does no JSON parsing: each
//! published event carries a mark (`B|step|seq|micros|publisher|`) that receivers find by a byte
//! scan, reads go through one buffer per thread, and latencies land in a few sharded histograms.
//!
//! It sends traffic only where the plan points it; the binary refuses targets off loopback. It
//! never runs without an end: every phase has a deadline.

mod attack;
mod churn;
mod console;
mod count;
mod error;
mod http;
mod procfs;
mod progress;
mod publish;
mod setup;
mod soak;
mod stats;
mod ws;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

pub use crate::attack::{Attack, AttackReport};
pub use crate::console::ConsoleReport;
pub use crate::error::{BenchError, HttpError, WsError};
pub use crate::http::App;
pub use crate::procfs::raise_open_files;
pub use crate::soak::{
    Descriptors, Minute, SoakPlan, SoakReport, SoakSummary, drift_percent, reference_minute,
};
pub use crate::stats::Latency;
use crate::{progress::Progress, setup::Conn};

/// What one run does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// WebSocket servers; connection `i` goes to `servers[i % len]`.
    pub servers: Vec<SocketAddr>,
    /// Where publishes go (the HTTP API of one node).
    pub api: SocketAddr,
    /// The app to connect and publish as.
    pub app: App,
    /// WebSocket connections to open and subscribe.
    pub connections: usize,
    /// Channels the connections are spread over, round robin.
    pub channels: usize,
    /// The kind of those channels.
    pub kind: ChannelKind,
    /// Handshakes (connect, upgrade, subscribe) in flight at once.
    pub handshakes: usize,
    /// Source addresses of the connections.
    pub sources: Sources,
    /// How long opening and subscribing every connection may take; connections not subscribed by
    /// then count as failed, and the run goes on with the others.
    pub connect_deadline: Duration,
    /// Server processes whose CPU time and memory the report gives.
    pub server_pids: Vec<u32>,
    /// Whether to draw a progress bar on stderr.
    pub progress: bool,
    /// What to do once connected.
    pub mode: Mode,
    /// Attackers to run beside the load, from the start to the end of the run.
    pub attack: Option<Attack>,
    /// Hold one live debug console stream open on the app (on the first server) from once the
    /// connections are set up to the end of the measured phase (in publish mode, the last
    /// step's drain, before the connections close; otherwise the end of the run), reading it as
    /// it comes.
    pub console: bool,
}

/// Kinds of channel, as their name prefixes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// `bench-N`: no authorization.
    Public,
    /// `private-bench-N`: signed with the app secret.
    Private,
    /// `presence-bench-N`: signed, with a user per connection.
    Presence,
    /// All three by the channel's number: of every ten channels, seven public, two private and
    /// one presence (numbers ending in 7 and 8, and in 9).
    Mixed,
}

impl ChannelKind {
    /// The name of channel `index`.
    pub fn channel(self, index: usize) -> String {
        match self.of(index) {
            Self::Private => format!("private-bench-{index}"),
            Self::Presence => format!("presence-bench-{index}"),
            _ => format!("bench-{index}"),
        }
    }

    /// The kind of channel `index`: itself, or for [`ChannelKind::Mixed`] the one its number
    /// picks.
    pub fn of(self, index: usize) -> Self {
        match (self, index % 10) {
            (Self::Mixed, 7 | 8) => Self::Private,
            (Self::Mixed, 9) => Self::Presence,
            (Self::Mixed, _) => Self::Public,
            (kind, _) => kind,
        }
    }
}

/// Which local addresses connections come from: `per_address` connections from `first`, the
/// next ones from the address after it, and so on. Each source address has its own ephemeral
/// ports, so tens of thousands of connections to one server port do not run out.
#[derive(Clone, Copy, Debug)]
pub struct Sources {
    /// The first source address; `None` lets the kernel choose.
    pub first: Option<Ipv4Addr>,
    /// Connections per address.
    pub per_address: usize,
}

impl Sources {
    /// The source address of connection `index`.
    pub fn of(&self, index: usize) -> Option<Ipv4Addr> {
        let first = u32::from(self.first?);
        let offset = u32::try_from(index / self.per_address.max(1)).ok()?;
        Some(Ipv4Addr::from(first.checked_add(offset)?))
    }
}

/// What the connections do once subscribed.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Publish through the HTTP API at each rate in turn, measuring deliveries and latency.
    Publish(PublishPlan),
    /// Hold the connections idle, then read the servers' memory.
    Idle {
        /// How long to hold them before reading.
        hold: Duration,
    },
    /// Publish as fast as `connections` keep-alive HTTP connections allow, to a channel without
    /// subscribers.
    Http {
        /// Concurrent HTTP connections.
        connections: usize,
        /// How long.
        duration: Duration,
    },
    /// Presence churn: the first `churners` connections leave and join again in a loop.
    Churn {
        /// Connections that churn; the others stay members.
        churners: usize,
        /// How long.
        duration: Duration,
    },
    /// A join storm: the connections open without subscribing, then all join their channels at
    /// once, counting the `pusher_internal:subscription_count` events they hear.
    SubscriptionCount {
        /// How long after the last join the clients may wait for their channel's final count.
        settle: Duration,
    },
    /// Every kind of traffic at once for many minutes, with a row of figures per minute.
    Soak(SoakPlan),
}

/// Publishing in steps, each at its own rate and with its own publishers.
#[derive(Clone, Debug)]
pub struct PublishPlan {
    /// The steps, in order.
    pub steps: Vec<StepPlan>,
    /// How long each step publishes.
    pub step: Duration,
    /// The pause after each step, in which its last deliveries still count as in time; it ends
    /// early once every delivery owed has arrived.
    pub drain: Duration,
    /// Stop at the first step that falls behind (for [`Pacing::PerPublisher`], only when the
    /// deliveries do: publishes short of the rate are what that pacing measures).
    pub stop_when_behind: bool,
    /// Bytes of each event's `data`.
    pub payload: usize,
    /// Run the publishers on a thread of their own, so that each answer is read when it comes
    /// rather than after the deliveries the generator read in the same turn (the thread shares
    /// the generator's core all the same). What publishers that wait for every answer need.
    pub publisher_thread: bool,
}

/// One step of a [`PublishPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepPlan {
    /// Publishes per second asked of the step in all, spread over the channels round robin.
    pub rate: u32,
    /// Publishers, each with a keep-alive HTTP connection of its own, that send one request
    /// at a time (the next only once the last was answered).
    pub publishers: usize,
    /// How the publishers keep to the rate.
    pub pacing: Pacing,
}

/// How publishers keep to a step's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// One schedule for all: each publisher takes the next publish due, so that a publisher
    /// waiting on a slow answer leaves its slots to the others (and a late step catches up).
    Shared,
    /// A schedule per publisher at its share of the rate, staggered over the interval: a
    /// publisher sends its next request at its next slot, or at once when the answer came in
    /// that slot's time, and skips the slots that went by while it waited, so that it never
    /// sends faster than its rate.
    PerPublisher,
}

/// Everything a run measured, in the JSON summary's shape.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// `publish`, `idle`, `http`, `churn` or `soak`.
    pub mode: &'static str,
    /// Opening and subscribing the connections.
    pub setup: Setup,
    /// Each publish step, in order (publish mode).
    pub steps: Vec<Step>,
    /// The highest deliveries per second of any step.
    pub peak_deliveries_per_sec: f64,
    /// Deliveries that never arrived: published (accepted) times subscribers, minus the distinct
    /// events received.
    pub lost: u64,
    /// Events a connection received more than once.
    pub duplicated: u64,
    /// Events a connection received after a later one of the same publisher (which sent it only
    /// once the server had answered the earlier one).
    pub reordered: u64,
    /// Connections the servers closed during the run.
    pub closed_by_server: u64,
    /// Memory once connected and idle (idle mode).
    pub idle: Option<Idle>,
    /// HTTP publish throughput (http mode).
    pub http: Option<HttpThroughput>,
    /// Presence churn (churn mode).
    pub churn: Option<Churn>,
    /// The join storm and its `subscription_count` events (subscription-count mode).
    pub subscription_count: Option<SubscriptionCount>,
    /// Figures per minute, and the descriptors before and after (soak mode).
    pub soak: Option<SoakReport>,
    /// What the attackers met, when the plan had some.
    pub attack: Option<AttackReport>,
    /// The lines of the console stream held open over the run, when the plan opened one.
    pub console: Option<ConsoleReport>,
    /// The servers' use of the machine over the whole run.
    pub server: ServerUse,
    /// The generator's own use of the machine.
    pub generator: GeneratorUse,
}

/// How opening and subscribing went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Setup {
    /// Connections wanted.
    pub wanted: usize,
    /// Connections open and subscribed (open only, in a mode that subscribes them later).
    pub subscribed: usize,
    /// Connections that failed or missed the deadline.
    pub failed: usize,
    /// The first failure, as text.
    pub first_failure: Option<String>,
    /// Seconds from the first connect to the last subscription (or the last connection open).
    pub seconds: f64,
    /// Per connection, from its connect to its subscription's success, in milliseconds.
    pub per_connection: Latency,
    /// The generator's CPU use meanwhile, in percent of one core.
    pub generator_cpu_percent: f64,
    /// The servers' CPU time meanwhile, in seconds.
    pub server_cpu_seconds: f64,
}

/// One publish step.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Step {
    /// Publishes per second asked, in all.
    pub rate: u32,
    /// Publishers, each on its own HTTP connection.
    pub publishers: usize,
    /// Publishes per second achieved.
    pub publish_rate: f64,
    /// Publishes the server accepted.
    pub published: u64,
    /// Publishes refused or failed.
    pub publish_failed: u64,
    /// Deliveries the accepted publishes owe (each times its channel's subscribers).
    pub expected: u64,
    /// Deliveries that arrived before the step's drain ended.
    pub in_time: u64,
    /// Deliveries owed per second by the publishes.
    pub offered_per_sec: f64,
    /// Deliveries received per second while the step published.
    pub deliveries_per_sec: f64,
    /// From publish to delivery, in milliseconds, of every delivery of this step's events.
    pub latency: Latency,
    /// From writing each publish request to reading its whole answer, in milliseconds.
    pub http_latency: Latency,
    /// The same for connections on another node than the one published to (several nodes).
    pub remote_latency: Option<Latency>,
    /// Server CPU time per delivery while the step published, in microseconds.
    pub server_cpu_us_per_delivery: f64,
    /// Server CPU use while the step published, in percent of one core.
    pub server_cpu_percent: f64,
    /// Generator CPU use while the step published, in percent of one core.
    pub generator_cpu_percent: f64,
    /// Delivery fell behind: under 90 % of the offered rate or of the owed deliveries in time,
    /// or the publishes themselves under 90 % of the rate asked.
    pub behind: bool,
    /// This step's events that a connection never received, summed over the connections.
    pub lost: u64,
    /// This step's events a connection received more than once, summed over the connections.
    pub duplicated: u64,
    /// This step's events a connection received after a later event of the same publisher,
    /// summed over the connections.
    pub reordered: u64,
    /// Connections that lost, received twice or out of order any of this step's events.
    pub subscribers_affected: u64,
}

/// Memory of idle connections.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Idle {
    /// Server RSS before the first connection, in KiB.
    pub rss_before_kib: u64,
    /// Server RSS with every connection open and idle, in KiB.
    pub rss_after_kib: u64,
    /// The growth per subscribed connection, in KiB.
    pub kib_per_connection: f64,
    /// Server RSS once every connection closed at once: when it fell back to a quarter of what
    /// the connections took, or 12 s after the leave and its 2 s of probing, in KiB.
    pub rss_after_leave_kib: u64,
    /// The HTTP API's answers while every connection closes at once, and for a second after.
    pub api_during_leave: Latency,
    /// API requests during the leave that failed or were not answered 200.
    pub api_failed_during_leave: u64,
}

/// A join storm on channels with `subscription_count`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SubscriptionCount {
    /// Connections that sent their subscription.
    pub joins: u64,
    /// Joins acknowledged with `pusher_internal:subscription_succeeded`.
    pub acknowledged: u64,
    /// Joins refused, unanswered, or whose connection closed.
    pub failed: u64,
    /// From the first subscription sent to the last acknowledged, in seconds.
    pub seconds: f64,
    /// Acknowledged joins per second over that time.
    pub per_sec: f64,
    /// Per connection, from its subscription to its acknowledgement, in milliseconds.
    pub join_latency: Latency,
    /// The servers' CPU time over the joins, in seconds.
    pub server_cpu_seconds: f64,
    /// The servers' RSS before the first join, in KiB.
    pub server_rss_before_kib: u64,
    /// The servers' highest RSS during the joins (sampled every 100 ms and at the end), in KiB.
    pub server_rss_peak_kib: u64,
    /// The generator's CPU use over the joins, in percent of one core.
    pub generator_cpu_percent: f64,
    /// `pusher_internal:subscription_count` events per connection, over the joins and the
    /// settling after them.
    pub events: Spread,
    /// Of those, the events that arrived before the last join was acknowledged.
    pub events_during_joins: u64,
    /// The count every connection should end on: the acknowledged joins of its channel (for one
    /// channel, the same for all).
    pub final_count: u64,
    /// Connections whose last count equals their channel's final count.
    pub at_final_count: u64,
    /// Whether every acknowledged connection ended on its channel's final count.
    pub all_at_final_count: bool,
    /// From the first subscription sent until every connection had its final count, in seconds;
    /// `None` if some never had it within the settling time.
    pub final_count_seconds: Option<f64>,
    /// The servers' CPU time from the last acknowledgement to the end of the settling, in
    /// seconds.
    pub settle_server_cpu_seconds: f64,
}

/// How a number spreads over the connections.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    /// The lowest.
    pub min: u64,
    /// The median.
    pub median: u64,
    /// The highest.
    pub max: u64,
    /// Summed over the connections.
    pub total: u64,
}

impl Spread {
    /// The spread of `values` (all zero for none).
    pub fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        let Some(&max) = values.last() else {
            return Self::default();
        };
        Self {
            min: values[0],
            median: values[values.len() / 2],
            max,
            total: values.iter().sum(),
        }
    }
}

/// HTTP publish throughput.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpThroughput {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests answered otherwise or failed.
    pub failed: u64,
    /// Accepted requests per second.
    pub per_sec: f64,
    /// Time per request, in milliseconds.
    pub latency: Latency,
    /// Server CPU time per request, in microseconds.
    pub server_cpu_us_per_request: f64,
    /// Generator CPU use, in percent of one core.
    pub generator_cpu_percent: f64,
}

/// Presence churn.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Churn {
    /// Members of the channel (connections subscribed to it).
    pub members: usize,
    /// Leaves and joins done (one cycle is one of each).
    pub operations: u64,
    /// Leaves and joins per second.
    pub per_sec: f64,
    /// From a join's subscribe to its `subscription_succeeded`, in milliseconds.
    pub join_latency: Latency,
    /// `member_added` and `member_removed` events received, per second.
    pub member_events_per_sec: f64,
    /// Joins refused.
    pub failed: u64,
    /// Generator CPU use, in percent of one core.
    pub generator_cpu_percent: f64,
    /// Server CPU use, in percent of one core.
    pub server_cpu_percent: f64,
}

/// The servers' use of the machine.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerUse {
    /// The pids sampled.
    pub pids: Vec<u32>,
    /// RSS at the start, in KiB.
    pub rss_start_kib: u64,
    /// RSS at the end, in KiB.
    pub rss_end_kib: u64,
    /// The highest RSS seen, sampled every 100 ms over the run, in KiB.
    pub rss_peak_kib: u64,
    /// CPU time over the run, in seconds.
    pub cpu_seconds: f64,
}

/// The generator's use of the machine.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GeneratorUse {
    /// CPU time over the run, in seconds.
    pub cpu_seconds: f64,
    /// The highest CPU use of any measured phase, in percent of one core; near 100 the
    /// generator, not the server, may bound a figure.
    pub max_cpu_percent: f64,
    /// Open files this process may hold.
    pub open_files_limit: u64,
}

/// Runs `plan` on the current tokio runtime and returns what it measured.
pub async fn run(plan: Plan) -> Result<Report, BenchError> {
    check(&plan)?;
    let open_files_limit = raise_open_files();
    let own_start = procfs::own_cpu();
    let server_start = procfs::sample(&plan.server_pids)?;
    // A soak compares the servers' descriptors with those they held before any connection.
    let baseline = match plan.mode {
        Mode::Soak(_) => Some(Descriptors::read(&plan.server_pids)?),
        _ => None,
    };
    let progress = Progress::new(plan.progress);
    let peak = PeakRss::start(plan.server_pids.clone());
    let attackers = plan.attack.map(attack::Attackers::start);

    let mut report = Report {
        mode: match plan.mode {
            Mode::Publish(_) => "publish",
            Mode::Idle { .. } => "idle",
            Mode::Http { .. } => "http",
            Mode::Churn { .. } => "churn",
            Mode::SubscriptionCount { .. } => "subscription-count",
            Mode::Soak(_) => "soak",
        },
        ..Report::default()
    };
    // A join storm opens the connections first and times their subscriptions on their own.
    let subscribe = !matches!(plan.mode, Mode::SubscriptionCount { .. });
    let conns = if plan.connections > 0 {
        let (conns, setup) = setup::open_all(&plan, subscribe, &progress).await?;
        report.setup = setup;
        conns
    } else {
        Vec::new()
    };
    // The console opens once the connections are in place, so that it sees the measured phase
    // only, and before it, so that every line of that phase is built.
    let mut tap = if plan.console {
        Some(console::Tap::open(&plan).await?)
    } else {
        None
    };
    match &plan.mode {
        Mode::Publish(publish) => {
            publish::run(&plan, publish, conns, &mut tap, &progress, &mut report).await?;
        }
        Mode::Idle { hold } => {
            report.idle =
                Some(idle(&plan, conns, *hold, server_start, &progress, &mut report).await?);
        }
        Mode::Http {
            connections,
            duration,
        } => {
            report.http = Some(http::throughput(&plan, *connections, *duration, &progress).await?);
        }
        Mode::Churn { churners, duration } => {
            report.churn =
                Some(churn::run(&plan, conns, *churners, *duration, &progress, &mut report).await?);
        }
        Mode::SubscriptionCount { settle } => {
            report.subscription_count =
                Some(count::run(&plan, conns, *settle, &progress, &mut report).await?);
        }
        Mode::Soak(soak) => {
            let baseline = baseline.unwrap_or_default();
            report.soak = Some(soak::run(&plan, soak, conns, baseline, &mut report).await?);
        }
    }
    // A mode that did not stop the console at the end of its measured phase ends it here.
    if let Some(tap) = tap {
        report.console = Some(tap.stop().await);
    }
    progress.finish();
    if let Some(attackers) = attackers {
        report.attack = Some(attackers.stop().await);
    }

    let server_end = procfs::sample(&plan.server_pids)?;
    let rss_peak_kib = peak.stop().await.max(server_end.rss_kib);
    let own = procfs::own_cpu().saturating_sub(own_start);
    let phase_peaks = [
        report.setup.generator_cpu_percent,
        report
            .http
            .as_ref()
            .map_or(0.0, |http| http.generator_cpu_percent),
        report
            .churn
            .as_ref()
            .map_or(0.0, |churn| churn.generator_cpu_percent),
        report
            .subscription_count
            .as_ref()
            .map_or(0.0, |count| count.generator_cpu_percent),
    ];
    let step_peak = report
        .steps
        .iter()
        .map(|step| step.generator_cpu_percent)
        .fold(0.0, f64::max);
    report.generator = GeneratorUse {
        cpu_seconds: own.as_secs_f64(),
        max_cpu_percent: phase_peaks.into_iter().fold(step_peak, f64::max),
        open_files_limit,
    };
    report.server = ServerUse {
        pids: plan.server_pids.clone(),
        rss_start_kib: server_start.rss_kib,
        rss_end_kib: server_end.rss_kib,
        rss_peak_kib,
        cpu_seconds: server_end
            .cpu
            .saturating_sub(server_start.cpu)
            .as_secs_f64(),
    };
    Ok(report)
}

/// The servers' highest RSS, sampled in the background.
struct PeakRss {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl PeakRss {
    fn start(pids: Vec<u32>) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak = 0;
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => return peak,
                }
                if let Ok(sample) = procfs::sample(&pids) {
                    peak = peak.max(sample.rss_kib);
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(0)
    }
}

fn check(plan: &Plan) -> Result<(), BenchError> {
    let fail = |why: &str| Err(BenchError::Plan(why.to_owned()));
    if plan.connections > 0 && plan.servers.is_empty() {
        return fail("connections without a server to connect to");
    }
    if plan.connections > 0 && plan.channels == 0 {
        return fail("connections without a channel to subscribe to");
    }
    if plan.handshakes == 0 {
        return fail("zero handshakes in flight");
    }
    if plan.console && plan.servers.is_empty() {
        return fail("a console without a server to open it on");
    }
    match &plan.mode {
        Mode::Publish(publish)
            if publish.steps.is_empty() || publish.steps.iter().any(|step| step.rate == 0) =>
        {
            fail("a publish plan needs rates above zero")
        }
        Mode::Publish(publish) if publish.steps.iter().any(|step| step.publishers == 0) => {
            fail("zero publishers")
        }
        Mode::Publish(_) if plan.connections == 0 => fail("publishing to no connection"),
        Mode::Http { connections: 0, .. } => fail("zero HTTP connections"),
        Mode::Churn { churners, .. } if *churners >= plan.connections => {
            fail("churners must be fewer than the connections")
        }
        Mode::Churn { .. } if plan.kind != ChannelKind::Presence || plan.channels != 1 => {
            fail("churn needs one presence channel")
        }
        // Presence channels announce members instead of counts.
        Mode::SubscriptionCount { .. }
            if matches!(plan.kind, ChannelKind::Presence | ChannelKind::Mixed) =>
        {
            fail("subscription counts need public or private channels")
        }
        Mode::SubscriptionCount { .. } if plan.connections == 0 => fail("no connection to join"),
        Mode::Soak(soak) if soak.minutes == 0 || soak.minute.is_zero() => {
            fail("a soak needs at least one minute")
        }
        Mode::Soak(soak) if soak.publish_rate == 0 || soak.publishers == 0 => {
            fail("a soak needs publishes")
        }
        // Connection `c` of the first `channels` is channel `c`'s witness, which never
        // reconnects; the others churn.
        Mode::Soak(_) if plan.connections <= plan.channels => {
            fail("a soak needs more connections than channels (one witness per channel)")
        }
        _ => Ok(()),
    }
}

/// Holds the connections idle for `hold`, then reads the servers' memory.
async fn idle(
    plan: &Plan,
    conns: Vec<Conn>,
    hold: Duration,
    before: procfs::Sample,
    progress: &Progress,
    report: &mut Report,
) -> Result<Idle, BenchError> {
    let (stop, stopped) = watch::channel(false);
    let holders = publish::spawn_receivers(conns, None, &stopped);
    progress.timed("idle", hold).await;
    let after = procfs::sample(&plan.server_pids)?;
    // Every connection closes at once while a client keeps asking the HTTP API.
    let (probe_stop, probe_stopped) = watch::channel(false);
    let probe = tokio::spawn(http::probe(plan.clone(), probe_stopped));
    let _ = stop.send(true);
    for holder in holders {
        if let Ok(received) = holder.await {
            report.closed_by_server += u64::from(received.closed);
        }
    }
    progress.timed("leave", LEAVE_SETTLE).await;
    let _ = probe_stop.send(true);
    let (api_during_leave, api_failed_during_leave) = probe
        .await
        .map_err(|e| BenchError::Plan(format!("the API probe failed: {e}")))?;
    // The memory is read until it falls back to a quarter of what the connections took, or
    // for as long as `RELEASE_WAIT`.
    let growth = after.rss_kib.saturating_sub(before.rss_kib);
    let released = before.rss_kib + growth / 4;
    let waiting = Instant::now();
    let mut left = procfs::sample(&plan.server_pids)?;
    while left.rss_kib > released && waiting.elapsed() < RELEASE_WAIT {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = procfs::sample(&plan.server_pids)?;
    }
    let subscribed = report.setup.subscribed.max(1) as f64;
    Ok(Idle {
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        kib_per_connection: after.rss_kib.saturating_sub(before.rss_kib) as f64 / subscribed,
        rss_after_leave_kib: left.rss_kib,
        api_during_leave,
        api_failed_during_leave,
    })
}

/// How long after the last connection closed the API is still probed.
const LEAVE_SETTLE: Duration = Duration::from_secs(2);

/// How long after that the memory may take to go back.
const RELEASE_WAIT: Duration = Duration::from_secs(12);

/// Percent of one core that `cpu` is of `wall`.
pub(crate) fn percent(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
}
