//! Publish mode: steps of rising rate through the HTTP API, and the receivers that time every
//! delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::BenchError;
use crate::http::{ApiClient, publish_request};
use crate::progress::Progress;
use crate::setup::Conn;
use crate::stats::{self, Latency, Mark, SeqSet};
use crate::ws::{TEXT, find};
use crate::{Plan, PublishPlan, Report, Step, percent, procfs};

/// Histogram shards; connection `i` records into shard `i % SHARDS`, so that threads of a
/// multi-threaded runtime seldom meet on one lock.
const SHARDS: usize = 16;

/// The event name of published events.
const EVENT: &str = "bench";

/// What every receiver shares with the controller.
pub(crate) struct Shared {
    shards: Vec<Mutex<Shard>>,
    /// Events of steps up to this one arrive late (their drain is over); -1 for none.
    cutoff: AtomicI64,
    /// Marked deliveries so far, for rates and the progress bar.
    pub(crate) delivered: AtomicU64,
    /// `member_added` and `member_removed` events so far (churn mode).
    pub(crate) member_events: AtomicU64,
}

#[derive(Default)]
struct Shard {
    steps: Vec<StepCounts>,
}

struct StepCounts {
    all: Histogram<u64>,
    remote: Histogram<u64>,
    in_time: u64,
}

impl Shared {
    pub(crate) fn new(steps: usize) -> Arc<Self> {
        let shard = || Shard {
            steps: (0..steps)
                .map(|_| StepCounts {
                    all: stats::histogram(),
                    remote: stats::histogram(),
                    in_time: 0,
                })
                .collect(),
        };
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(shard())).collect(),
            cutoff: AtomicI64::new(-1),
            delivered: AtomicU64::new(0),
            member_events: AtomicU64::new(0),
        })
    }

    fn in_time(&self, step: usize) -> u64 {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .steps
                    .get(step)
                    .map_or(0, |counts| counts.in_time)
            })
            .sum()
    }

    fn latency(&self, step: usize, remote: bool) -> Latency {
        let mut merged = stats::histogram();
        for shard in &self.shards {
            if let Some(counts) = shard.lock().steps.get(step) {
                let histogram = if remote { &counts.remote } else { &counts.all };
                // Both come from `stats::histogram`, so their bounds agree and adding cannot fail.
                let _ = merged.add(histogram);
            }
        }
        Latency::of(&merged)
    }
}

/// What one receiver saw, returned when it stops.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) channel: usize,
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    /// The server closed the connection (or it broke) before the end.
    pub(crate) closed: bool,
}

/// Spawns one task per connection that reads until `stop` turns true: it times marked events
/// into `shared` (when given), counts presence member events, and answers pings.
pub(crate) fn spawn_receivers(
    conns: Vec<Conn>,
    shared: Option<Arc<Shared>>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<Received>> {
    conns
        .into_iter()
        .map(|conn| {
            let shared = shared.clone();
            let stop = stop.clone();
            tokio::spawn(receive(conn, shared, stop))
        })
        .collect()
}

const PUSHER_PONG: &[u8] = br#"{"event":"pusher:pong","data":{}}"#;

async fn receive(
    mut conn: Conn,
    shared: Option<Arc<Shared>>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut seen = SeqSet::default();
    let remote = conn.node != 0;
    let mut closed = false;
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let mut now = 0;
        let mut marked = 0;
        let mut members = 0;
        let mut ping = false;
        let mut on_message = |opcode: u8, payload: &[u8]| {
            if opcode != TEXT {
                return;
            }
            let Some(shared) = &shared else {
                ping |= find(payload, b"pusher:ping").is_some();
                return;
            };
            match Mark::find(payload) {
                Some(mark) => {
                    if now == 0 {
                        now = stats::now_micros();
                    }
                    seen.insert(mark.seq);
                    marked += 1;
                    let cutoff = shared.cutoff.load(Ordering::Relaxed);
                    let mut shard = shared.shards[conn.index % SHARDS].lock();
                    if let Some(counts) = shard.steps.get_mut(mark.step as usize) {
                        let latency = now.saturating_sub(mark.micros);
                        stats::record(&mut counts.all, latency);
                        if remote {
                            stats::record(&mut counts.remote, latency);
                        }
                        if i64::from(mark.step) > cutoff {
                            counts.in_time += 1;
                        }
                    }
                }
                None if find(payload, b"member_").is_some() => members += 1,
                None => ping |= find(payload, b"pusher:ping").is_some(),
            }
        };
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            result = conn.client.read_messages(&mut on_message) => {
                if result.is_err() {
                    closed = true;
                    break;
                }
            }
        }
        if let Some(shared) = &shared {
            if marked > 0 {
                shared.delivered.fetch_add(marked, Ordering::Relaxed);
            }
            if members > 0 {
                shared.member_events.fetch_add(members, Ordering::Relaxed);
            }
        }
        if ping && conn.client.send_text(PUSHER_PONG).await.is_err() {
            closed = true;
            break;
        }
    }
    Received {
        channel: conn.channel,
        unique: seen.unique,
        duplicates: seen.duplicates,
        closed,
    }
}

/// Runs the steps of `publish` over `conns` and fills the report's steps, peak, losses and
/// duplicates.
pub(crate) async fn run(
    plan: &Plan,
    publish: &PublishPlan,
    conns: Vec<Conn>,
    progress: &Progress,
    report: &mut Report,
) -> Result<(), BenchError> {
    let channels = plan.channels;
    let mut subscribers = vec![0u64; channels];
    for conn in &conns {
        subscribers[conn.channel] += 1;
    }
    let shared = Shared::new(publish.rates.len());
    let (stop, stopped) = watch::channel(false);
    let receivers = spawn_receivers(conns, Some(Arc::clone(&shared)), &stopped);

    let seqs: Arc<Vec<AtomicU32>> = Arc::new((0..channels).map(|_| AtomicU32::new(0)).collect());
    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..channels).map(|_| AtomicU64::new(0)).collect());
    let round_robin = Arc::new(AtomicU64::new(0));
    let mut clients: Vec<ApiClient> = (0..publish.publishers)
        .map(|_| ApiClient::new(plan.api))
        .collect();

    for (step_index, &rate) in publish.rates.iter().enumerate() {
        progress.phase(&format!("{rate}/s"), 0);
        let before: Vec<u64> = accepted.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        let meter = procfs::Meter::start(&plan.server_pids)?;
        let delivered_start = shared.delivered.load(Ordering::Relaxed);
        let total = (u64::from(rate) as f64 * publish.step.as_secs_f64()).round() as u64;
        let next = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let step_start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for mut client in clients.drain(..) {
            let job = Job {
                app: plan.app.clone(),
                api: plan.api,
                kind: plan.kind,
                channels,
                step: step_index as u32,
                rate,
                total,
                payload: publish.payload,
                start: step_start,
                // A publisher that lags past this gives up the rest of the step.
                give_up: step_start + publish.step + Duration::from_secs(1),
                next: Arc::clone(&next),
                failed: Arc::clone(&failed),
                seqs: Arc::clone(&seqs),
                accepted: Arc::clone(&accepted),
                round_robin: Arc::clone(&round_robin),
            };
            tasks.push(tokio::spawn(async move {
                job.run(&mut client).await;
                client
            }));
        }
        // Watch the step while the publishers work.
        let mut last = (Instant::now(), delivered_start);
        while tasks.iter().any(|task| !task.is_finished()) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = (Instant::now(), shared.delivered.load(Ordering::Relaxed));
            let rate_now = (now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64().max(1e-3);
            last = now;
            progress.tick_time(
                meter.started(),
                publish.step,
                format!("{:.0} deliveries/s", rate_now),
            );
        }
        for task in tasks {
            if let Ok(client) = task.await {
                clients.push(client);
            }
        }
        let delivered = shared.delivered.load(Ordering::Relaxed) - delivered_start;
        let spent = meter.read(&plan.server_pids)?;
        // The drain ends early once every delivery owed so far has arrived: none is left to
        // count as in time, and a run need not wait out a drain long enough for a slow machine.
        let owed: u64 = accepted
            .iter()
            .zip(&subscribers)
            .map(|(count, subscribers)| count.load(Ordering::Relaxed) * subscribers)
            .sum();
        let drain_end = tokio::time::Instant::now() + publish.drain;
        while shared.delivered.load(Ordering::Relaxed) < owed
            && tokio::time::Instant::now() < drain_end
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shared.cutoff.store(step_index as i64, Ordering::Relaxed);

        let mut published = 0;
        let mut expected = 0;
        for (channel, count) in accepted.iter().enumerate() {
            let step_count = count.load(Ordering::Relaxed) - before[channel];
            published += step_count;
            expected += step_count * subscribers[channel];
        }
        let secs = spent.wall.as_secs_f64().max(1e-3);
        let in_time = shared.in_time(step_index);
        let step = Step {
            rate,
            publish_rate: published as f64 / secs,
            published,
            publish_failed: failed.load(Ordering::Relaxed),
            expected,
            in_time,
            offered_per_sec: expected as f64 / secs,
            deliveries_per_sec: delivered as f64 / secs,
            latency: Latency::default(),
            remote_latency: None,
            server_cpu_us_per_delivery: if delivered == 0 {
                0.0
            } else {
                spent.server_cpu.as_secs_f64() * 1e6 / delivered as f64
            },
            server_cpu_percent: percent(spent.server_cpu, spent.wall),
            generator_cpu_percent: percent(spent.own_cpu, spent.wall),
            behind: false,
        };
        let behind = step.deliveries_per_sec < 0.9 * step.offered_per_sec
            || (in_time as f64) < 0.9 * expected as f64
            || step.publish_rate < 0.9 * f64::from(rate);
        report.steps.push(Step { behind, ..step });
        if behind && publish.stop_when_behind {
            break;
        }
    }

    let _ = stop.send(true);
    let mut owed = vec![0u64; channels];
    for (channel, count) in accepted.iter().enumerate() {
        owed[channel] = count.load(Ordering::Relaxed);
    }
    for receiver in receivers {
        let Ok(received) = receiver.await else {
            continue;
        };
        report.lost += owed[received.channel].saturating_sub(received.unique);
        report.duplicated += received.duplicates;
        report.closed_by_server += u64::from(received.closed);
    }
    let several_nodes = plan.servers.len() > 1;
    for (index, step) in report.steps.iter_mut().enumerate() {
        step.latency = shared.latency(index, false);
        if several_nodes {
            step.remote_latency = Some(shared.latency(index, true));
        }
    }
    report.peak_deliveries_per_sec = report
        .steps
        .iter()
        .map(|step| step.deliveries_per_sec)
        .fold(0.0, f64::max);
    Ok(())
}

/// One publisher's share of a step.
struct Job {
    app: crate::App,
    api: std::net::SocketAddr,
    kind: crate::ChannelKind,
    channels: usize,
    step: u32,
    rate: u32,
    total: u64,
    payload: usize,
    start: tokio::time::Instant,
    give_up: tokio::time::Instant,
    next: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    seqs: Arc<Vec<AtomicU32>>,
    accepted: Arc<Vec<AtomicU64>>,
    round_robin: Arc<AtomicU64>,
}

impl Job {
    async fn run(&self, client: &mut ApiClient) {
        let interval = Duration::from_secs(1).as_secs_f64() / f64::from(self.rate);
        loop {
            let number = self.next.fetch_add(1, Ordering::Relaxed);
            if number >= self.total {
                break;
            }
            let due = self.start + Duration::from_secs_f64(number as f64 * interval);
            tokio::time::sleep_until(due).await;
            if tokio::time::Instant::now() > self.give_up {
                break;
            }
            let channel =
                (self.round_robin.fetch_add(1, Ordering::Relaxed) % self.channels as u64) as usize;
            let seq = self.seqs[channel].fetch_add(1, Ordering::Relaxed);
            let mark = Mark {
                step: self.step,
                seq,
                micros: stats::now_micros(),
            };
            let request = publish_request(
                &self.app,
                self.api,
                &self.kind.channel(channel),
                EVENT,
                &mark.data(self.payload),
            );
            match client.send(&request).await {
                Ok(200) => {
                    self.accepted[channel].fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
