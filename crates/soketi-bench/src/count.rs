//! Subscription-count mode: a join storm. The connections are open but not subscribed; all send
//! their `pusher:subscribe` at once, and each reads its acknowledgement, then the
//! `pusher_internal:subscription_count` events of its channel until the run ends. The figures
//! are the joins' time and their cost on the server, the count events each connection heard,
//! and whether every connection ends on its channel's final count once the joins settle
//! (servers send a channel's count at most every few seconds).

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::BenchError;
use crate::progress::Progress;
use crate::publish::PUSHER_PONG;
use crate::setup::{Conn, subscribe_message, subscription_outcome};
use crate::stats::{self, Latency};
use crate::ws::{TEXT, find};
use crate::{PeakRss, Plan, Report, Spread, SubscriptionCount, percent, procfs};

/// What the connections share with the controller.
struct Board {
    /// When the first subscription was about to go out.
    started: Instant,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    /// Microseconds from `started` to the latest acknowledgement.
    last_ack_micros: AtomicU64,
    /// Acknowledged joins per channel: once the joins are over, each channel's final count.
    acknowledged_by_channel: Vec<AtomicU64>,
    /// Whether the joins are still going on.
    joining: AtomicBool,
    events_during_joins: AtomicU64,
    /// Per connection: whether its join was acknowledged, and the last count it heard.
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Slot {
    acknowledged: AtomicBool,
    last_count: AtomicU64,
}

/// What one connection did.
#[derive(Default)]
struct Heard {
    /// From its subscription to its acknowledgement.
    join_micros: Option<u64>,
    events: u64,
    closed: bool,
}

/// How often the controller looks at the board.
const POLL: Duration = Duration::from_millis(5);

pub(crate) async fn run(
    plan: &Plan,
    conns: Vec<Conn>,
    settle: Duration,
    progress: &Progress,
    report: &mut Report,
) -> Result<SubscriptionCount, BenchError> {
    let joins = conns.len();
    let channel_of: Vec<usize> = conns.iter().map(|conn| conn.channel).collect();
    let before = procfs::sample(&plan.server_pids)?;
    let peak = PeakRss::start(plan.server_pids.clone());
    let meter = procfs::Meter::start(&plan.server_pids)?;
    let board = Arc::new(Board {
        started: Instant::now(),
        acknowledged: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_ack_micros: AtomicU64::new(0),
        acknowledged_by_channel: (0..plan.channels).map(|_| AtomicU64::new(0)).collect(),
        joining: AtomicBool::new(true),
        events_during_joins: AtomicU64::new(0),
        slots: (0..joins).map(|_| Slot::default()).collect(),
    });
    let (stop, stopped) = watch::channel(false);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(slot, conn)| {
            let message = subscribe_message(
                plan.kind,
                conn.channel,
                conn.index,
                &conn.client.socket_id,
                &plan.app.key,
                &plan.app.secret,
            );
            tokio::spawn(member(
                conn,
                slot,
                message,
                Arc::clone(&board),
                stopped.clone(),
            ))
        })
        .collect();

    // The joins: until every connection was answered, or the plan's deadline.
    progress.phase("join", 0);
    let deadline = tokio::time::Instant::now() + plan.connect_deadline;
    loop {
        let answered = board.acknowledged.load(Ordering::Relaxed) as usize
            + board.failed.load(Ordering::Relaxed) as usize;
        if answered >= joins || tokio::time::Instant::now() >= deadline {
            break;
        }
        progress.tick_time(
            board.started,
            plan.connect_deadline,
            format!("{answered}/{joins} joined"),
        );
        tokio::time::sleep(POLL).await;
    }
    board.joining.store(false, Ordering::Relaxed);
    let spent = meter.read(&plan.server_pids)?;
    let at_end = procfs::sample(&plan.server_pids)?;
    let rss_peak_kib = peak.stop().await.max(at_end.rss_kib);
    let acknowledged = board.acknowledged.load(Ordering::Relaxed);
    let seconds = Duration::from_micros(board.last_ack_micros.load(Ordering::Relaxed));

    // The settling: until every acknowledged connection heard its channel's final count.
    let finals: Vec<u64> = board
        .acknowledged_by_channel
        .iter()
        .map(|count| count.load(Ordering::Relaxed))
        .collect();
    let at_final = || {
        board
            .slots
            .iter()
            .zip(&channel_of)
            .filter(|(slot, channel)| {
                slot.acknowledged.load(Ordering::Relaxed)
                    && slot.last_count.load(Ordering::Relaxed) == finals[**channel]
            })
            .count() as u64
    };
    progress.phase("settle", 0);
    let settle_meter = procfs::Meter::start(&plan.server_pids)?;
    let settle_end = tokio::time::Instant::now() + settle;
    let mut final_count_seconds = None;
    loop {
        if acknowledged > 0 && at_final() == acknowledged {
            final_count_seconds = Some(board.started.elapsed().as_secs_f64());
            break;
        }
        if tokio::time::Instant::now() >= settle_end {
            break;
        }
        progress.tick_time(settle_meter.started(), settle, String::new());
        tokio::time::sleep(POLL).await;
    }
    let settle_spent = settle_meter.read(&plan.server_pids)?;
    let at_final = at_final();

    let _ = stop.send(true);
    let mut latencies = stats::histogram();
    let mut events = Vec::with_capacity(joins);
    for task in tasks {
        let Ok(heard) = task.await else { continue };
        if let Some(micros) = heard.join_micros {
            stats::record(&mut latencies, micros);
        }
        events.push(heard.events);
        report.closed_by_server += u64::from(heard.closed);
    }
    // With one channel, its final count is every connection's; with several, the largest.
    let final_count = finals.iter().copied().max().unwrap_or(0);
    Ok(SubscriptionCount {
        joins: joins as u64,
        acknowledged,
        failed: joins as u64 - acknowledged,
        seconds: seconds.as_secs_f64(),
        per_sec: acknowledged as f64 / seconds.as_secs_f64().max(1e-6),
        join_latency: Latency::of(&latencies),
        server_cpu_seconds: spent.server_cpu.as_secs_f64(),
        server_rss_before_kib: before.rss_kib,
        server_rss_peak_kib: rss_peak_kib,
        generator_cpu_percent: percent(spent.own_cpu, spent.wall),
        events: Spread::of(events),
        events_during_joins: board.events_during_joins.load(Ordering::Relaxed),
        final_count,
        at_final_count: at_final,
        all_at_final_count: acknowledged > 0 && at_final == acknowledged,
        final_count_seconds,
        settle_server_cpu_seconds: settle_spent.server_cpu.as_secs_f64(),
    })
}

/// Joins with `message` and reads until `stop`: the acknowledgement, then count events.
async fn member(
    mut conn: Conn,
    slot: usize,
    message: String,
    board: Arc<Board>,
    mut stop: watch::Receiver<bool>,
) -> Heard {
    let mut heard = Heard::default();
    let sent = Instant::now();
    if conn.client.send_text(message.as_bytes()).await.is_err() {
        board.failed.fetch_add(1, Ordering::Relaxed);
        heard.closed = true;
        return heard;
    }
    let mut answered = false;
    loop {
        let mut outcome = None;
        let mut events = 0;
        let mut last = None;
        let mut ping = false;
        let mut on_message = |opcode: u8, payload: &[u8]| {
            if opcode != TEXT {
                return;
            }
            if let Some(count) = count_of(payload) {
                events += 1;
                last = Some(count);
            } else if let Some(result) = subscription_outcome(payload).filter(|_| !answered) {
                outcome.get_or_insert(result.is_ok());
            } else {
                ping |= find(payload, b"pusher:ping").is_some();
            }
        };
        let read = tokio::select! {
            biased;
            _ = stop.changed() => break,
            read = conn.client.read_messages(&mut on_message) => read,
        };
        if let Some(ok) = outcome {
            answered = true;
            if ok {
                let micros = board.started.elapsed().as_micros() as u64;
                board.last_ack_micros.fetch_max(micros, Ordering::Relaxed);
                board.acknowledged_by_channel[conn.channel].fetch_add(1, Ordering::Relaxed);
                board.slots[slot]
                    .acknowledged
                    .store(true, Ordering::Relaxed);
                board.acknowledged.fetch_add(1, Ordering::Relaxed);
                heard.join_micros = Some(sent.elapsed().as_micros() as u64);
            } else {
                board.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if events > 0 {
            heard.events += events;
            if board.joining.load(Ordering::Relaxed) {
                board
                    .events_during_joins
                    .fetch_add(events, Ordering::Relaxed);
            }
        }
        if let Some(count) = last {
            board.slots[slot].last_count.store(count, Ordering::Relaxed);
        }
        let broken = read.is_err() || (ping && conn.client.send_text(PUSHER_PONG).await.is_err());
        if broken {
            if !answered {
                board.failed.fetch_add(1, Ordering::Relaxed);
            }
            heard.closed = true;
            break;
        }
    }
    heard
}

/// The count of a `pusher_internal:subscription_count` frame, found without parsing its JSON;
/// its `data` is a JSON string holding `{"subscription_count":N}` (or, from some servers, that
/// object itself).
pub(crate) fn count_of(frame: &[u8]) -> Option<u64> {
    const EVENT: &[u8] = b"pusher_internal:subscription_count";
    const FIELD: &[u8] = b"subscription_count";
    let event = find(frame, EVENT)?;
    // The event's name ends with the field's name; JSON keeps no order, so the field may come
    // before or after it.
    let in_event = event + EVENT.len() - FIELD.len();
    frame
        .windows(FIELD.len())
        .enumerate()
        .filter(|&(at, window)| window == FIELD && at != in_event)
        .find_map(|(at, _)| number_after(&frame[at + FIELD.len()..]))
}

/// The number that follows a field's name: past its closing quote (escaped or not) and colon.
fn number_after(rest: &[u8]) -> Option<u64> {
    let start = rest.iter().position(u8::is_ascii_digit)?;
    if !rest[..start]
        .iter()
        .all(|byte| matches!(byte, b'"' | b'\\' | b':' | b' '))
    {
        return None;
    }
    let digits = rest[start..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&rest[start..start + digits])
        .ok()?
        .parse()
        .ok()
}
