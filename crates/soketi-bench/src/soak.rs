//! Soak mode: every kind of traffic at once for many minutes, to show whether the servers'
//! memory and descriptors stay flat.
//!
//! Connection `c` of the first `channels` is channel `c`'s witness: it never reconnects and
//! checks every event of its channel by number, so that churn never makes a false loss. The
//! other connections close and connect again in turn (a share of all connections every second),
//! resubscribing with their new socket id, which on presence channels is a leave and a join; those
//! on private and presence channels also send client events. Publishers spread events over every
//! channel through the HTTP API of each node in turn, and a reader asks the API about channels
//! and presence users. Deliveries, latency, losses and duplicates count by the minute their event
//! was published in; a minute's row is closed a short grace after it ends, and then goes out at
//! once, so that a long run shows its figures as it goes.

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{BenchError, WsError};
use crate::http::{ApiClient, get_request, publish_request};
use crate::setup::{Conn, STEP_DEADLINE, subscribe};
use crate::stats::{self, Latency, Mark, SeqSet};
use crate::ws::{Client, Dial, TEXT, find};
use crate::{App, ChannelKind, Plan, Report, Sources, percent, procfs};

/// What a soak does with the plan's connections.
#[derive(Clone, Debug)]
pub struct SoakPlan {
    /// Minutes to run; each gets a row.
    pub minutes: u32,
    /// How long a minute is: 60 s, shorter in tests.
    pub minute: Duration,
    /// HTTP publishes per second, spread over every channel round robin.
    pub publish_rate: u32,
    /// Concurrent HTTP connections that publish, over the nodes in turn.
    pub publishers: usize,
    /// Bytes of each published event's `data`.
    pub payload: usize,
    /// Percent of all connections that close and connect again every second; witnesses never
    /// do, so the others do it a little more often.
    pub reconnect_percent: f64,
    /// Client events per second, sent by the churning connections of private and presence
    /// channels.
    pub client_events_per_sec: f64,
    /// HTTP API reads per second: the channel list, one channel's counts and one presence
    /// channel's users, in turn, over the nodes in turn.
    pub api_reads_per_sec: f64,
    /// How long after every client left the descriptors and memory are read again.
    pub settle: Duration,
    /// Where each minute's row goes as soon as it is closed.
    pub rows: Option<std::sync::mpsc::Sender<Minute>>,
}

/// One minute of a soak.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Minute {
    /// Its number, from 1.
    pub minute: u32,
    /// The servers' RSS at its end, summed, in KiB.
    pub rss_kib: u64,
    /// The same per server, in the order of the plan's pids.
    pub rss_kib_per_node: Vec<u64>,
    /// Open descriptors of each server at its end (`/proc/<pid>/fd`).
    pub fds_per_node: Vec<u64>,
    /// From publish to delivery, in milliseconds, of every delivery of the events published in
    /// this minute (witnesses and churning connections alike).
    pub latency: Latency,
    /// Publishes the API accepted in this minute.
    pub published: u64,
    /// Publishes refused, failed or unanswered within 10 s.
    pub publish_failed: u64,
    /// Deliveries of this minute's events, to any connection.
    pub deliveries: u64,
    /// Deliveries this minute's accepted events owe the witnesses.
    pub witness_expected: u64,
    /// Of those, not arrived when the row was closed.
    pub lost: u64,
    /// Events of this minute that a witness received more than once.
    pub duplicated: u64,
    /// Connections open and subscribed at the row's close.
    pub connections: u64,
    /// Reconnections (close, connect, subscribe) done in this minute.
    pub reconnects: u64,
    /// Reconnection attempts that failed in this minute (each is tried again a second later).
    pub reconnect_failed: u64,
    /// Client events sent in this minute.
    pub client_events_sent: u64,
    /// Client events received in this minute.
    pub client_events_received: u64,
    /// `member_added` and `member_removed` events received in this minute.
    pub member_events: u64,
    /// `pusher:error` messages received in this minute.
    pub errors: u64,
    /// HTTP API reads answered 200 in this minute.
    pub api_reads: u64,
    /// HTTP API reads answered otherwise, failed or unanswered within 10 s.
    pub api_read_failed: u64,
    /// The 99th percentile of the API reads' answer times, in milliseconds.
    pub api_read_p99: f64,
    /// The servers' CPU use in this minute, in percent of one core.
    pub server_cpu_percent: f64,
    /// The generator's CPU use in this minute, in percent of one core.
    pub generator_cpu_percent: f64,
}

/// Open descriptors and resident memory of each server at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Descriptors {
    /// Open descriptors per server, in the order of the plan's pids.
    pub fds_per_node: Vec<u64>,
    /// RSS per server, in KiB.
    pub rss_kib_per_node: Vec<u64>,
}

impl Descriptors {
    /// Reads `pids` now.
    pub(crate) fn read(pids: &[u32]) -> Result<Self, BenchError> {
        let mut read = Self::default();
        for &pid in pids {
            read.fds_per_node.push(procfs::open_files(pid)?);
            read.rss_kib_per_node.push(procfs::sample(&[pid])?.rss_kib);
        }
        Ok(read)
    }

    /// Open descriptors of every server together.
    pub fn fds(&self) -> u64 {
        self.fds_per_node.iter().sum()
    }

    /// RSS of every server together, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.rss_kib_per_node.iter().sum()
    }
}

/// What a soak measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakReport {
    /// One row per minute.
    pub minutes: Vec<Minute>,
    /// Connections that never reconnect and check every event of their channel.
    pub witnesses: usize,
    /// Connections that reconnect in turn.
    pub churners: usize,
    /// The servers before any client connected.
    pub before: Descriptors,
    /// The servers once every client left and the settle time passed.
    pub after: Descriptors,
    /// Seconds between the last client leaving and `after`.
    pub settle_secs: f64,
    /// Witnesses the servers closed (each one's later events count as lost).
    pub witnesses_closed: u64,
    /// The first `pusher:error` received, as text.
    pub first_error: Option<String>,
    /// The figures the issue's targets are stated in.
    pub summary: SoakSummary,
}

/// The drift between a reference minute (the 5th, once warm) and the last, and the totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SoakSummary {
    /// The minute compared with the last: the 5th, or the 1st in runs of five minutes or less.
    pub reference_minute: u32,
    /// The last minute.
    pub last_minute: u32,
    /// The servers' RSS at the reference minute, in KiB.
    pub rss_reference_kib: u64,
    /// The servers' RSS at the last minute, in KiB.
    pub rss_last_kib: u64,
    /// The change from the one to the other, in percent of the first.
    pub rss_drift_percent: f64,
    /// p99 of the reference minute, in milliseconds.
    pub p99_reference_ms: f64,
    /// p99 of the last minute, in milliseconds.
    pub p99_last_ms: f64,
    /// Deliveries in every minute.
    pub deliveries: u64,
    /// Witness deliveries that never arrived, once the run ended.
    pub lost: u64,
    /// Witness deliveries that arrived twice.
    pub duplicated: u64,
    /// Reconnections done.
    pub reconnects: u64,
    /// Open descriptors of the servers before any client connected.
    pub fds_before: u64,
    /// Open descriptors of the servers once every client left.
    pub fds_after: u64,
}

impl SoakSummary {
    /// The summary of `minutes`, with the totals counted once the run ended.
    pub fn of(
        minutes: &[Minute],
        before: &Descriptors,
        after: &Descriptors,
        lost: u64,
        duplicated: u64,
    ) -> Self {
        let reference = reference_minute(minutes.len());
        let first = reference
            .checked_sub(1)
            .and_then(|at| minutes.get(at))
            .cloned()
            .unwrap_or_default();
        let last = minutes.last().cloned().unwrap_or_default();
        Self {
            reference_minute: first.minute,
            last_minute: last.minute,
            rss_reference_kib: first.rss_kib,
            rss_last_kib: last.rss_kib,
            rss_drift_percent: drift_percent(first.rss_kib, last.rss_kib),
            p99_reference_ms: first.latency.p99,
            p99_last_ms: last.latency.p99,
            deliveries: minutes.iter().map(|minute| minute.deliveries).sum(),
            lost,
            duplicated,
            reconnects: minutes.iter().map(|minute| minute.reconnects).sum(),
            fds_before: before.fds(),
            fds_after: after.fds(),
        }
    }
}

/// The minute (from 1) that a run of `minutes` compares its last with: the 5th, once the
/// allocator and the servers' tables are warm, or the 1st in runs too short for that; 0 for no
/// minute at all.
pub fn reference_minute(minutes: usize) -> usize {
    match minutes {
        0 => 0,
        1..=5 => 1,
        _ => 5,
    }
}

/// How much `to` grew over `from`, in percent of `from` (negative when it shrank; 0 from 0).
pub fn drift_percent(from: u64, to: u64) -> f64 {
    if from == 0 {
        return 0.0;
    }
    (to as f64 - from as f64) / from as f64 * 100.0
}

/// How long after its end a minute's row waits for that minute's last deliveries.
fn grace(minute: Duration) -> Duration {
    (minute / 4).min(Duration::from_secs(2))
}

/// The longest one HTTP request waits for its answer.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The event name of published events, and of client events.
const EVENT: &str = "soak";
const CLIENT_EVENT: &str = "client-soak";

const PUSHER_PONG: &[u8] = br#"{"event":"pusher:pong","data":{}}"#;

/// Counts of one minute's events, by the minute they were published in.
struct StepCounts {
    latency: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    witness_unique: AtomicU64,
    duplicated: AtomicU64,
    published: AtomicU64,
    publish_failed: AtomicU64,
    witness_expected: AtomicU64,
}

/// What every task of the soak shares.
struct Shared {
    steps: Vec<StepCounts>,
    live: AtomicU64,
    reconnects: AtomicU64,
    reconnect_failed: AtomicU64,
    client_sent: AtomicU64,
    client_received: AtomicU64,
    member_events: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    witnesses_closed: AtomicU64,
    churners_closed: AtomicU64,
    /// The API reads' answer times since the last row.
    api_latency: Mutex<Histogram<u64>>,
    api_ok: AtomicU64,
    api_failed: AtomicU64,
    /// Whether channel `c` has a witness, which its accepted publishes then owe a delivery.
    witnessed: Vec<AtomicBool>,
    /// The next sequence number of each channel.
    seqs: Vec<AtomicU32>,
}

impl Shared {
    fn new(minutes: usize, channels: usize) -> Self {
        Self {
            steps: (0..minutes)
                .map(|_| StepCounts {
                    latency: Mutex::new(stats::histogram()),
                    delivered: AtomicU64::new(0),
                    witness_unique: AtomicU64::new(0),
                    duplicated: AtomicU64::new(0),
                    published: AtomicU64::new(0),
                    publish_failed: AtomicU64::new(0),
                    witness_expected: AtomicU64::new(0),
                })
                .collect(),
            live: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            reconnect_failed: AtomicU64::new(0),
            client_sent: AtomicU64::new(0),
            client_received: AtomicU64::new(0),
            member_events: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            witnesses_closed: AtomicU64::new(0),
            churners_closed: AtomicU64::new(0),
            api_latency: Mutex::new(stats::histogram()),
            api_ok: AtomicU64::new(0),
            api_failed: AtomicU64::new(0),
            witnessed: (0..channels).map(|_| AtomicBool::new(false)).collect(),
            seqs: (0..channels).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

/// What the tasks need of the plan.
struct Ctx {
    servers: Vec<SocketAddr>,
    apis: Vec<SocketAddr>,
    app: App,
    kind: ChannelKind,
    channels: usize,
    sources: Sources,
    start: Instant,
    end: Instant,
    minute: Duration,
    shared: Shared,
}

impl Ctx {
    /// The minute (from 0) that `now` falls in, the last one for any moment past the end.
    fn step(&self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.start);
        let step = (elapsed.as_secs_f64() / self.minute.as_secs_f64()) as usize;
        step.min(self.shared.steps.len().saturating_sub(1))
    }
}

/// Runs the soak over `conns` and returns its rows; `before` was read before any connection.
pub(crate) async fn run(
    plan: &Plan,
    soak: &SoakPlan,
    conns: Vec<Conn>,
    before: Descriptors,
    report: &mut Report,
) -> Result<SoakReport, BenchError> {
    let pids = &plan.server_pids;
    let minutes = soak.minutes as usize;
    let start = Instant::now();
    let apis = if plan.servers.len() > 1 {
        plan.servers.clone()
    } else {
        vec![plan.api]
    };
    let ctx = Arc::new(Ctx {
        servers: plan.servers.clone(),
        apis,
        app: plan.app.clone(),
        kind: plan.kind,
        channels: plan.channels,
        sources: plan.sources,
        start,
        end: start + soak.minute * soak.minutes,
        minute: soak.minute,
        shared: Shared::new(minutes, plan.channels),
    });
    let shared = &ctx.shared;
    let (stop, stopped) = watch::channel(false);

    // Roles: witnesses stay; churners reconnect in turn, so that `reconnect_percent` of all
    // connections do every second; churners of private and presence channels send client
    // events in turn.
    let is_witness = |conn: &Conn| conn.index < plan.channels;
    let witnesses = conns.iter().filter(|conn| is_witness(conn)).count();
    let churners = conns.len() - witnesses;
    let senders = conns
        .iter()
        .filter(|conn| !is_witness(conn) && sends_client_events(plan.kind, conn.channel))
        .count();
    let reconnect_rate = plan.connections as f64 * soak.reconnect_percent / 100.0;
    let spread = |ordinal: usize, count: usize, rate: f64| {
        (rate > 0.0 && count > 0).then(|| {
            let first = start + Duration::from_secs_f64(ordinal as f64 / rate);
            (first, Duration::from_secs_f64(count as f64 / rate))
        })
    };
    shared.live.store(conns.len() as u64, Ordering::Relaxed);
    let (mut churner, mut sender) = (0, 0);
    let mut members = Vec::with_capacity(conns.len());
    for conn in conns {
        let witness = is_witness(&conn);
        let mut role = Role {
            witness,
            reconnect: None,
            client_events: None,
        };
        if witness {
            shared.witnessed[conn.channel].store(true, Ordering::Relaxed);
        } else {
            role.reconnect = spread(churner, churners, reconnect_rate);
            churner += 1;
            if sends_client_events(plan.kind, conn.channel) {
                role.client_events = spread(sender, senders, soak.client_events_per_sec);
                sender += 1;
            }
        }
        members.push(tokio::spawn(member(
            conn,
            role,
            Arc::clone(&ctx),
            stopped.clone(),
        )));
    }
    let mut helpers: Vec<JoinHandle<()>> = (0..soak.publishers)
        .map(|number| {
            let job = Publisher {
                ctx: Arc::clone(&ctx),
                number,
                of: soak.publishers,
                rate: soak.publish_rate,
                payload: soak.payload,
            };
            tokio::spawn(job.run())
        })
        .collect();
    if soak.api_reads_per_sec > 0.0 {
        helpers.push(tokio::spawn(read_api(
            Arc::clone(&ctx),
            soak.api_reads_per_sec,
        )));
    }

    let mut rows = Vec::with_capacity(minutes);
    let mut last = Totals::read(shared);
    let mut meter = procfs::Meter::start(pids)?;
    for number in 0..minutes {
        let close = start + soak.minute * (number as u32 + 1) + grace(soak.minute);
        tokio::time::sleep_until(close).await;
        let spent = meter.read(pids)?;
        meter = procfs::Meter::start(pids)?;
        let now = Totals::read(shared);
        let servers = Descriptors::read(pids)?;
        let step = &shared.steps[number];
        let expected = step.witness_expected.load(Ordering::Relaxed);
        let api_latency = {
            let mut histogram = shared.api_latency.lock();
            let latency = Latency::of(&histogram);
            histogram.reset();
            latency
        };
        let row = Minute {
            minute: number as u32 + 1,
            rss_kib: servers.rss_kib(),
            rss_kib_per_node: servers.rss_kib_per_node,
            fds_per_node: servers.fds_per_node,
            latency: Latency::of(&step.latency.lock()),
            published: step.published.load(Ordering::Relaxed),
            publish_failed: step.publish_failed.load(Ordering::Relaxed),
            deliveries: step.delivered.load(Ordering::Relaxed),
            witness_expected: expected,
            lost: expected.saturating_sub(step.witness_unique.load(Ordering::Relaxed)),
            duplicated: step.duplicated.load(Ordering::Relaxed),
            connections: shared.live.load(Ordering::Relaxed),
            reconnects: now.reconnects - last.reconnects,
            reconnect_failed: now.reconnect_failed - last.reconnect_failed,
            client_events_sent: now.client_sent - last.client_sent,
            client_events_received: now.client_received - last.client_received,
            member_events: now.member_events - last.member_events,
            errors: now.errors - last.errors,
            api_reads: now.api_ok - last.api_ok,
            api_read_failed: now.api_failed - last.api_failed,
            api_read_p99: api_latency.p99,
            server_cpu_percent: percent(spent.server_cpu, spent.wall),
            generator_cpu_percent: percent(spent.own_cpu, spent.wall),
        };
        last = now;
        if let Some(rows) = &soak.rows {
            // A reader that went away only stops the live rows, not the run.
            let _ = rows.send(row.clone());
        }
        rows.push(row);
    }

    // Every client leaves; the servers settle; their descriptors should be back where they
    // were before the first connection.
    let _ = stop.send(true);
    for task in members.into_iter().chain(helpers) {
        let _ = task.await;
    }
    tokio::time::sleep(soak.settle).await;
    let after = Descriptors::read(pids)?;

    let lost: u64 = shared
        .steps
        .iter()
        .map(|step| {
            step.witness_expected
                .load(Ordering::Relaxed)
                .saturating_sub(step.witness_unique.load(Ordering::Relaxed))
        })
        .sum();
    let duplicated: u64 = shared
        .steps
        .iter()
        .map(|step| step.duplicated.load(Ordering::Relaxed))
        .sum();
    let witnesses_closed = shared.witnesses_closed.load(Ordering::Relaxed);
    report.lost = lost;
    report.duplicated = duplicated;
    report.closed_by_server = witnesses_closed + shared.churners_closed.load(Ordering::Relaxed);
    let summary = SoakSummary::of(&rows, &before, &after, lost, duplicated);
    Ok(SoakReport {
        minutes: rows,
        witnesses,
        churners,
        before,
        after,
        settle_secs: soak.settle.as_secs_f64(),
        witnesses_closed,
        first_error: shared.first_error.lock().clone(),
        summary,
    })
}

/// Whether connections on channel `channel` send client events: those of private and presence
/// channels, as the protocol allows them only there.
fn sends_client_events(kind: ChannelKind, channel: usize) -> bool {
    matches!(
        kind.of(channel),
        ChannelKind::Private | ChannelKind::Presence
    )
}

/// The running counts that rows take differences of.
#[derive(Clone, Copy)]
struct Totals {
    reconnects: u64,
    reconnect_failed: u64,
    client_sent: u64,
    client_received: u64,
    member_events: u64,
    errors: u64,
    api_ok: u64,
    api_failed: u64,
}

impl Totals {
    fn read(shared: &Shared) -> Self {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Self {
            reconnects: load(&shared.reconnects),
            reconnect_failed: load(&shared.reconnect_failed),
            client_sent: load(&shared.client_sent),
            client_received: load(&shared.client_received),
            member_events: load(&shared.member_events),
            errors: load(&shared.errors),
            api_ok: load(&shared.api_ok),
            api_failed: load(&shared.api_failed),
        }
    }
}

/// What one connection does besides reading: when it reconnects and sends client events, each
/// as the first time and the period after it.
struct Role {
    witness: bool,
    reconnect: Option<(Instant, Duration)>,
    client_events: Option<(Instant, Duration)>,
}

/// What woke a connection's task.
enum Wake {
    Stop,
    Reconnect,
    ClientEvent,
    Read(Result<(), WsError>),
}

/// One connection for the whole soak: reads and times every event, and reconnects and sends
/// client events when its role says.
async fn member(conn: Conn, role: Role, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let shared = &ctx.shared;
    let Conn {
        mut client,
        index,
        channel,
        node,
    } = conn;
    let name = ctx.kind.channel(channel);
    let client_event = serde_json::json!({
        "event": CLIENT_EVENT,
        "channel": name,
        "data": { "from": index },
    })
    .to_string();
    let mut seen = SeqSet::default();
    let mut next_reconnect = role.reconnect.map(|(first, _)| first);
    let mut next_event = role.client_events.map(|(first, _)| first);
    let far = ctx.end + Duration::from_secs(3600);
    loop {
        let mut ping = false;
        let mut on_message = |opcode: u8, payload: &[u8]| {
            if opcode != TEXT {
                return;
            }
            match Mark::find(payload) {
                Some(mark) => on_mark(&ctx, mark, role.witness, &mut seen),
                None if find(payload, CLIENT_EVENT.as_bytes()).is_some() => {
                    shared.client_received.fetch_add(1, Ordering::Relaxed);
                }
                None if find(payload, b"pusher_internal:member_").is_some() => {
                    shared.member_events.fetch_add(1, Ordering::Relaxed);
                }
                None if find(payload, b"\"pusher:error\"").is_some() => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    let mut first = shared.first_error.lock();
                    if first.is_none() {
                        let shown = &payload[..payload.len().min(300)];
                        *first = Some(String::from_utf8_lossy(shown).into_owned());
                    }
                }
                None => ping |= find(payload, b"pusher:ping").is_some(),
            }
        };
        let wake = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => Wake::Stop,
            _ = tokio::time::sleep_until(next_reconnect.unwrap_or(far)),
                if next_reconnect.is_some() => Wake::Reconnect,
            _ = tokio::time::sleep_until(next_event.unwrap_or(far)),
                if next_event.is_some() => Wake::ClientEvent,
            result = client.read_messages(&mut on_message) => Wake::Read(result),
        };
        let mut broken = false;
        match wake {
            Wake::Stop => break,
            Wake::Reconnect => {
                if let (Some(at), Some((_, every))) = (&mut next_reconnect, role.reconnect) {
                    *at += every;
                }
                broken = true;
            }
            Wake::ClientEvent => {
                if let (Some(at), Some((_, every))) = (&mut next_event, role.client_events) {
                    *at += every;
                }
                if client.send_text(client_event.as_bytes()).await.is_ok() {
                    shared.client_sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    broken = true;
                }
            }
            Wake::Read(Ok(())) => {
                if ping && client.send_text(PUSHER_PONG).await.is_err() {
                    broken = true;
                }
            }
            Wake::Read(Err(_)) => {
                let closed = if role.witness {
                    &shared.witnesses_closed
                } else {
                    &shared.churners_closed
                };
                closed.fetch_add(1, Ordering::Relaxed);
                broken = true;
            }
        }
        if !broken {
            continue;
        }
        // A witness that lost its connection is done: its later events count as lost.
        shared.live.fetch_sub(1, Ordering::Relaxed);
        if role.witness {
            return;
        }
        // The old connection closes (the client side keeps the TIME_WAIT) before the new one
        // opens, so that the generator never holds more files than its connections.
        drop(client);
        match reconnect(&ctx, index, channel, node, &mut stop).await {
            Some(again) => {
                client = again;
                shared.live.fetch_add(1, Ordering::Relaxed);
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            None => return,
        }
    }
    shared.live.fetch_sub(1, Ordering::Relaxed);
}

/// Counts one marked event a connection received.
fn on_mark(ctx: &Ctx, mark: Mark, witness: bool, seen: &mut SeqSet) {
    let Some(step) = ctx.shared.steps.get(mark.step as usize) else {
        return;
    };
    let latency = stats::now_micros().saturating_sub(mark.micros);
    stats::record(&mut step.latency.lock(), latency);
    step.delivered.fetch_add(1, Ordering::Relaxed);
    if witness {
        let unique = seen.unique;
        seen.insert(mark.seq);
        let counter = if seen.unique > unique {
            &step.witness_unique
        } else {
            &step.duplicated
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Connects and subscribes connection `index` again, trying every second until it works or the
/// soak stops (`None`).
async fn reconnect(
    ctx: &Ctx,
    index: usize,
    channel: usize,
    node: usize,
    stop: &mut watch::Receiver<bool>,
) -> Option<Client> {
    loop {
        let attempt = async {
            let dial = Dial {
                server: ctx.servers[node],
                source: ctx.sources.of(index),
                key: &ctx.app.key,
                deadline: STEP_DEADLINE,
            };
            let mut client = Client::connect(&dial).await?;
            subscribe(
                &mut client,
                ctx.kind,
                channel,
                index,
                &ctx.app.key,
                &ctx.app.secret,
            )
            .await?;
            Ok::<_, WsError>(client)
        };
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => return None,
            result = attempt => match result {
                Ok(client) => return Some(client),
                Err(_) => {
                    ctx.shared.reconnect_failed.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One of the HTTP connections that publish: event `n` of the soak is due `n / rate` seconds
/// after its start, and publisher `number` of `of` sends those with `n % of == number`.
struct Publisher {
    ctx: Arc<Ctx>,
    number: usize,
    of: usize,
    rate: u32,
    payload: usize,
}

impl Publisher {
    async fn run(self) {
        let ctx = &self.ctx;
        let shared = &ctx.shared;
        let api = ctx.apis[self.number % ctx.apis.len()];
        let mut client = ApiClient::new(api);
        let interval = 1.0 / f64::from(self.rate);
        let mut n = self.number;
        loop {
            let due = ctx.start + Duration::from_secs_f64(n as f64 * interval);
            if due >= ctx.end {
                break;
            }
            tokio::time::sleep_until(due).await;
            let channel = n % ctx.channels;
            let seq = shared.seqs[channel].fetch_add(1, Ordering::Relaxed);
            let step = ctx.step(Instant::now());
            let mark = Mark {
                step: step as u32,
                seq,
                micros: stats::now_micros(),
                publisher: self.number as u32,
            };
            let request = publish_request(
                &ctx.app,
                api,
                &ctx.kind.channel(channel),
                EVENT,
                &mark.data(self.payload),
            );
            let counts = &shared.steps[step];
            match tokio::time::timeout(API_TIMEOUT, client.send(&request)).await {
                Ok(Ok(200)) => {
                    counts.published.fetch_add(1, Ordering::Relaxed);
                    if shared.witnessed[channel].load(Ordering::Relaxed) {
                        counts.witness_expected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                answer => {
                    counts.publish_failed.fetch_add(1, Ordering::Relaxed);
                    if answer.is_err() {
                        client = ApiClient::new(api);
                    }
                }
            }
            n += self.of;
        }
    }
}

/// Reads the HTTP API `rate` times a second until the soak's end: the channel list, one
/// channel's counts, and one presence channel's users, in turn, over the nodes in turn.
async fn read_api(ctx: Arc<Ctx>, rate: f64) {
    let shared = &ctx.shared;
    let presence: Vec<usize> = (0..ctx.channels)
        .filter(|&channel| ctx.kind.of(channel) == ChannelKind::Presence)
        .collect();
    let mut clients: Vec<ApiClient> = ctx.apis.iter().map(|&api| ApiClient::new(api)).collect();
    let base = format!("/apps/{}/channels", ctx.app.id);
    let mut n = 0usize;
    loop {
        let due = ctx.start + Duration::from_secs_f64(n as f64 / rate);
        if due >= ctx.end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let node = n % clients.len();
        let api = ctx.apis[node];
        let round = n / 3;
        let request = match (n % 3, presence.get(round % presence.len().max(1))) {
            (1, _) => {
                // A channel that moves through all of them, by a step prime to most counts.
                let channel = round.wrapping_mul(7919) % ctx.channels;
                let mut info = "subscription_count".to_owned();
                if ctx.kind.of(channel) == ChannelKind::Presence {
                    info.push_str(",user_count");
                }
                let path = format!("{base}/{}", ctx.kind.channel(channel));
                get_request(&ctx.app, api, &path, &[("info".into(), info)])
            }
            (2, Some(&channel)) => {
                let path = format!("{base}/{}/users", ctx.kind.channel(channel));
                get_request(&ctx.app, api, &path, &[])
            }
            (2, None) => get_request(
                &ctx.app,
                api,
                &base,
                &[("filter_by_prefix".into(), "presence-".into())],
            ),
            _ => get_request(&ctx.app, api, &base, &[]),
        };
        let sent = std::time::Instant::now();
        let answer = tokio::time::timeout(API_TIMEOUT, clients[node].send(&request)).await;
        stats::record(
            &mut shared.api_latency.lock(),
            sent.elapsed().as_micros() as u64,
        );
        match answer {
            Ok(Ok(200)) => {
                shared.api_ok.fetch_add(1, Ordering::Relaxed);
            }
            answer => {
                shared.api_failed.fetch_add(1, Ordering::Relaxed);
                if answer.is_err() {
                    clients[node] = ApiClient::new(api);
                }
            }
        }
        n += 1;
    }
}
