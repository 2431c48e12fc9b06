//! Publish mode: steps of rising rate through the HTTP API, from publishers that share one
//! schedule or keep one each, and the receivers that time every delivery and check its order.

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::console::Tap;
use crate::error::BenchError;
use crate::http::{ApiClient, publish_request};
use crate::progress::Progress;
use crate::setup::Conn;
use crate::stats::{self, Latency, Mark, SeqSet};
use crate::ws::{TEXT, find};
use crate::{Pacing, Plan, PublishPlan, Report, Step, StepPlan, percent, procfs};

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
    pub(crate) reordered: u64,
    /// The same counts for each step's events, by step.
    pub(crate) steps: Vec<Faults>,
    /// The server closed the connection (or it broke) before the end.
    pub(crate) closed: bool,
}

/// What one receiver saw of one step's events.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
}

/// The most steps a receiver keeps counts for (far more than any plan has).
const MAX_STEPS: usize = 1024;

/// The most publishers a receiver checks the order of.
const MAX_PUBLISHERS: usize = 1024;

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

/// The answer to a `pusher:ping`.
pub(crate) const PUSHER_PONG: &[u8] = br#"{"event":"pusher:pong","data":{}}"#;

async fn receive(
    mut conn: Conn,
    shared: Option<Arc<Shared>>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut seen = SeqSet::default();
    let mut steps: Vec<Faults> = Vec::new();
    // The highest sequence number plus one seen from each publisher: an event below it came
    // after a later one.
    let mut highest: Vec<u32> = Vec::new();
    let mut reordered_all = 0;
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
                    let new = seen.insert(mark.seq);
                    let publisher = mark.publisher as usize;
                    let reordered = new
                        && publisher < MAX_PUBLISHERS
                        && highest.get(publisher).is_some_and(|&high| mark.seq < high);
                    reordered_all += u64::from(reordered);
                    if publisher < MAX_PUBLISHERS {
                        if highest.len() <= publisher {
                            highest.resize(publisher + 1, 0);
                        }
                        highest[publisher] = highest[publisher].max(mark.seq.saturating_add(1));
                    }
                    let step = mark.step as usize;
                    if step < MAX_STEPS {
                        if steps.len() <= step {
                            steps.resize(step + 1, Faults::default());
                        }
                        let faults = &mut steps[step];
                        if new {
                            faults.unique += 1;
                        } else {
                            faults.duplicates += 1;
                        }
                        faults.reordered += u64::from(reordered);
                    }
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
        reordered: reordered_all,
        steps,
        closed,
    }
}

/// Runs the steps of `publish` over `conns` and fills the report's steps, peak, losses,
/// duplicates and reorderings, and the lines of the open console in `tap` (which it stops once
/// the last step is over).
pub(crate) async fn run(
    plan: &Plan,
    publish: &PublishPlan,
    conns: Vec<Conn>,
    tap: &mut Option<Tap>,
    progress: &Progress,
    report: &mut Report,
) -> Result<(), BenchError> {
    let channels = plan.channels;
    let mut subscribers = vec![0u64; channels];
    for conn in &conns {
        subscribers[conn.channel] += 1;
    }
    let shared = Shared::new(publish.steps.len());
    let (stop, stopped) = watch::channel(false);
    let receivers = spawn_receivers(conns, Some(Arc::clone(&shared)), &stopped);

    let seqs: Arc<Vec<AtomicU32>> = Arc::new((0..channels).map(|_| AtomicU32::new(0)).collect());
    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..channels).map(|_| AtomicU64::new(0)).collect());
    let round_robin = Arc::new(AtomicU64::new(0));
    // Keep-alive connections, kept from step to step; a step takes as many as it has publishers.
    let mut pool: Vec<ApiClient> = Vec::new();
    // Accepted publishes per channel and step.
    let mut accepted_by_step: Vec<Vec<u64>> = Vec::new();

    for (step_index, step_plan) in publish.steps.iter().enumerate() {
        let StepPlan {
            rate,
            publishers,
            pacing,
        } = *step_plan;
        progress.phase(&format!("{rate}/s"), 0);
        let total = (u64::from(rate) as f64 * publish.step.as_secs_f64()).round() as u64;
        let next = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let jobs: Vec<Job> = (0..publishers)
            .map(|publisher| Job {
                app: plan.app.clone(),
                api: plan.api,
                kind: plan.kind,
                channels,
                step: step_index as u32,
                publisher: publisher as u32,
                publishers,
                pacing,
                rate,
                total,
                payload: publish.payload,
                length: publish.step,
                next: Arc::clone(&next),
                failed: Arc::clone(&failed),
                seqs: Arc::clone(&seqs),
                accepted: Arc::clone(&accepted),
                round_robin: Arc::clone(&round_robin),
            })
            .collect();
        let clients = if publish.publisher_thread {
            Vec::new()
        } else {
            while pool.len() < publishers {
                pool.push(ApiClient::new(plan.api));
            }
            let mut clients: Vec<ApiClient> = pool.drain(..publishers).collect();
            // Connections open before the step's clock starts, so that no publish waits on one.
            for client in &mut clients {
                client.connect().await?;
            }
            clients
        };
        let before: Vec<u64> = accepted.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        let meter = procfs::Meter::start(&plan.server_pids)?;
        let delivered_start = shared.delivered.load(Ordering::Relaxed);
        let publishing = if publish.publisher_thread {
            Publishing::apart(jobs, plan.api)?
        } else {
            Publishing::here(jobs, clients)
        };
        // Watch the step while the publishers work.
        let mut last = (Instant::now(), delivered_start);
        while !publishing.is_finished() {
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
        let (clients, http_latencies) = publishing.finish().await?;
        pool.extend(clients);
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
        let mut by_channel = Vec::with_capacity(channels);
        for (channel, count) in accepted.iter().enumerate() {
            let step_count = count.load(Ordering::Relaxed) - before[channel];
            by_channel.push(step_count);
            published += step_count;
            expected += step_count * subscribers[channel];
        }
        accepted_by_step.push(by_channel);
        let secs = spent.wall.as_secs_f64().max(1e-3);
        let in_time = shared.in_time(step_index);
        let step = Step {
            rate,
            publishers,
            publish_rate: published as f64 / secs,
            published,
            publish_failed: failed.load(Ordering::Relaxed),
            expected,
            in_time,
            offered_per_sec: expected as f64 / secs,
            deliveries_per_sec: delivered as f64 / secs,
            http_latency: Latency::of(&http_latencies),
            server_cpu_us_per_delivery: if delivered == 0 {
                0.0
            } else {
                spent.server_cpu.as_secs_f64() * 1e6 / delivered as f64
            },
            server_cpu_percent: percent(spent.server_cpu, spent.wall),
            generator_cpu_percent: percent(spent.own_cpu, spent.wall),
            ..Step::default()
        };
        let deliveries_behind = step.deliveries_per_sec < 0.9 * step.offered_per_sec
            || (in_time as f64) < 0.9 * expected as f64;
        let publishes_behind = step.publish_rate < 0.9 * f64::from(rate);
        report.steps.push(Step {
            behind: deliveries_behind || publishes_behind,
            ..step
        });
        // Publishers on schedules of their own send fewer when the answers are slow, which is
        // the figure; only deliveries falling behind leave a backlog that would skew the next
        // step.
        let stop_now = match pacing {
            Pacing::Shared => deliveries_behind || publishes_behind,
            Pacing::PerPublisher => deliveries_behind,
        };
        if stop_now && publish.stop_when_behind {
            break;
        }
    }

    // The console stops before the connections close: their leaving is no part of the steps,
    // and would fill its queue with a line per connection and channel.
    if let Some(tap) = tap.take() {
        report.console = Some(tap.stop().await);
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
        report.reordered += received.reordered;
        report.closed_by_server += u64::from(received.closed);
        for (index, step) in report.steps.iter_mut().enumerate() {
            let faults = received.steps.get(index).copied().unwrap_or_default();
            let lost = accepted_by_step[index][received.channel].saturating_sub(faults.unique);
            step.lost += lost;
            step.duplicated += faults.duplicates;
            step.reordered += faults.reordered;
            if lost + faults.duplicates + faults.reordered > 0 {
                step.subscribers_affected += 1;
            }
        }
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
    api: SocketAddr,
    kind: crate::ChannelKind,
    channels: usize,
    step: u32,
    /// This publisher's number in the step, carried in its marks.
    publisher: u32,
    publishers: usize,
    pacing: Pacing,
    /// Publishes per second of the whole step.
    rate: u32,
    /// Publishes of the whole step ([`Pacing::Shared`]).
    total: u64,
    payload: usize,
    /// How long the step publishes.
    length: Duration,
    next: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    seqs: Arc<Vec<AtomicU32>>,
    accepted: Arc<Vec<AtomicU64>>,
    round_robin: Arc<AtomicU64>,
}

impl Job {
    /// Publishes this publisher's share of the step that starts at `start`, one request at a
    /// time; returns the answers' latencies.
    async fn run(&self, client: &mut ApiClient, start: tokio::time::Instant) -> Histogram<u64> {
        let mut latencies = stats::histogram();
        // No publish is due at or past the end ([`Pacing::PerPublisher`]); a publisher that lags
        // past `give_up` leaves the rest of the step ([`Pacing::Shared`]).
        let end = start + self.length;
        let give_up = end + Duration::from_secs(1);
        match self.pacing {
            Pacing::Shared => {
                let interval = 1.0 / f64::from(self.rate);
                loop {
                    let number = self.next.fetch_add(1, Ordering::Relaxed);
                    if number >= self.total {
                        break;
                    }
                    let due = start + Duration::from_secs_f64(number as f64 * interval);
                    tokio::time::sleep_until(due).await;
                    if tokio::time::Instant::now() > give_up {
                        break;
                    }
                    self.publish(client, &mut latencies).await;
                }
            }
            Pacing::PerPublisher => {
                let interval = self.publishers as f64 / f64::from(self.rate);
                // The publishers' slots are staggered evenly over one interval.
                let first = start
                    + Duration::from_secs_f64(
                        interval * f64::from(self.publisher) / self.publishers as f64,
                    );
                let mut slot = 0u64;
                loop {
                    let due = first + Duration::from_secs_f64(slot as f64 * interval);
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    self.publish(client, &mut latencies).await;
                    slot = next_slot(
                        slot,
                        tokio::time::Instant::now().saturating_duration_since(first),
                        interval,
                    );
                }
            }
        }
        latencies
    }

    /// Sends one marked publish and waits for its answer.
    async fn publish(&self, client: &mut ApiClient, latencies: &mut Histogram<u64>) {
        let channel =
            (self.round_robin.fetch_add(1, Ordering::Relaxed) % self.channels as u64) as usize;
        let seq = self.seqs[channel].fetch_add(1, Ordering::Relaxed);
        let mark = Mark {
            step: self.step,
            seq,
            micros: stats::now_micros(),
            publisher: self.publisher,
        };
        let request = publish_request(
            &self.app,
            self.api,
            &self.kind.channel(channel),
            EVENT,
            &mark.data(self.payload),
        );
        let sent = Instant::now();
        let answer = client.send(&request).await;
        stats::record(latencies, sent.elapsed().as_micros() as u64);
        match answer {
            Ok(200) => {
                self.accepted[channel].fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A step's publishers at work: tasks on the generator's runtime, or a thread of their own.
enum Publishing {
    /// Each with its keep-alive connection, given back at the end.
    Here(Vec<JoinHandle<(ApiClient, Histogram<u64>)>>),
    /// On a runtime of their own, with connections opened there for the step; the thread gives
    /// the answers' latencies.
    Apart(std::thread::JoinHandle<Result<Histogram<u64>, BenchError>>),
}

impl Publishing {
    /// Starts `jobs` now, on this runtime, with `clients` (one each, open).
    fn here(jobs: Vec<Job>, clients: Vec<ApiClient>) -> Self {
        Self::Here(spawn_jobs(jobs, clients))
    }

    /// Starts `jobs` on a thread of their own: the kernel wakes it when an answer comes, where
    /// on the generator's runtime the publisher's task would wait behind the receivers of the
    /// deliveries read in the same turn. Each job gets a connection to `api`, opened before the
    /// step's clock starts.
    fn apart(jobs: Vec<Job>, api: SocketAddr) -> Result<Self, BenchError> {
        let thread = std::thread::Builder::new()
            .name("publishers".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(BenchError::Publishers)?;
                runtime.block_on(async move {
                    let mut clients = Vec::with_capacity(jobs.len());
                    for _ in &jobs {
                        let mut client = ApiClient::new(api);
                        client.connect().await?;
                        clients.push(client);
                    }
                    let tasks = spawn_jobs(jobs, clients);
                    let mut merged = stats::histogram();
                    for task in tasks {
                        if let Ok((_, latencies)) = task.await {
                            // Both come from `stats::histogram`, so adding cannot fail.
                            let _ = merged.add(&latencies);
                        }
                    }
                    Ok(merged)
                })
            })
            .map_err(BenchError::Publishers)?;
        Ok(Self::Apart(thread))
    }

    fn is_finished(&self) -> bool {
        match self {
            Self::Here(tasks) => tasks.iter().all(JoinHandle::is_finished),
            Self::Apart(thread) => thread.is_finished(),
        }
    }

    /// The connections to keep for the next step, and the answers' latencies.
    async fn finish(self) -> Result<(Vec<ApiClient>, Histogram<u64>), BenchError> {
        let mut merged = stats::histogram();
        let mut clients = Vec::new();
        match self {
            Self::Here(tasks) => {
                for task in tasks {
                    if let Ok((client, latencies)) = task.await {
                        clients.push(client);
                        // Both come from `stats::histogram`, so adding cannot fail.
                        let _ = merged.add(&latencies);
                    }
                }
            }
            // Called once the thread is done, so joining does not block.
            Self::Apart(thread) => {
                merged = thread.join().map_err(|_| {
                    BenchError::Publishers(std::io::Error::other("the thread panicked"))
                })??;
            }
        }
        Ok((clients, merged))
    }
}

/// Spawns each job with its client on the current runtime, starting now.
fn spawn_jobs(
    jobs: Vec<Job>,
    clients: Vec<ApiClient>,
) -> Vec<JoinHandle<(ApiClient, Histogram<u64>)>> {
    let start = tokio::time::Instant::now();
    jobs.into_iter()
        .zip(clients)
        .map(|(job, mut client)| {
            tokio::spawn(async move {
                let latencies = job.run(&mut client, start).await;
                (client, latencies)
            })
        })
        .collect()
}

/// The slot a publisher on a schedule of its own takes after `slot`, `elapsed` after its first
/// slot: the next one, or, when the answer came later than that one's time, the slot whose time
/// is running (the ones between are skipped, never made up).
pub(crate) fn next_slot(slot: u64, elapsed: Duration, interval: f64) -> u64 {
    let running = (elapsed.as_secs_f64() / interval).floor() as u64;
    (slot + 1).max(running)
}
