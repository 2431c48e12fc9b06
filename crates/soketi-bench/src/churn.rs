//! Churn mode: members of one presence channel leave and join again in a loop while the others
//! stay, so that every join and leave is announced to the whole channel.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::BenchError;
use crate::progress::Progress;
use crate::publish::{Shared, spawn_receivers};
use crate::setup::{Conn, subscribe_message, subscription_outcome};
use crate::stats::{self, Latency};
use crate::ws::{TEXT, find};
use crate::{Churn, Plan, Report, percent, procfs};

/// What one churner did.
struct Cycles {
    operations: u64,
    failed: u64,
    latencies: hdrhistogram::Histogram<u64>,
    member_events: u64,
    closed: bool,
}

pub(crate) async fn run(
    plan: &Plan,
    mut conns: Vec<Conn>,
    churners: usize,
    duration: Duration,
    progress: &Progress,
    report: &mut Report,
) -> Result<Churn, BenchError> {
    let members = conns.len();
    let stayers = conns.split_off(churners.min(conns.len()));
    let shared = Shared::new(0);
    let (stop, stopped) = watch::channel(false);
    let receivers = spawn_receivers(stayers, Some(Arc::clone(&shared)), &stopped);

    let meter = procfs::Meter::start(&plan.server_pids)?;
    let end = tokio::time::Instant::now() + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let app = plan.app.clone();
            let kind = plan.kind;
            tokio::spawn(async move { churn(conn, kind, &app.key, &app.secret, end).await })
        })
        .collect();
    progress.phase("churn", 0);
    progress.until_done(&tasks, meter.started(), duration).await;
    let spent = meter.read(&plan.server_pids)?;

    let mut latencies = stats::histogram();
    let (mut operations, mut failed, mut member_events) = (0, 0, 0);
    for task in tasks {
        let Ok(cycles) = task.await else { continue };
        operations += cycles.operations;
        failed += cycles.failed;
        member_events += cycles.member_events;
        report.closed_by_server += u64::from(cycles.closed);
        let _ = latencies.add(&cycles.latencies);
    }
    let _ = stop.send(true);
    for receiver in receivers {
        if let Ok(received) = receiver.await {
            report.closed_by_server += u64::from(received.closed);
        }
    }
    member_events += shared.member_events.load(Ordering::Relaxed);
    let secs = spent.wall.as_secs_f64().max(1e-3);
    Ok(Churn {
        members,
        operations,
        per_sec: operations as f64 / secs,
        join_latency: Latency::of(&latencies),
        member_events_per_sec: member_events as f64 / secs,
        failed,
        generator_cpu_percent: percent(spent.own_cpu, spent.wall),
        server_cpu_percent: percent(spent.server_cpu, spent.wall),
    })
}

/// Leaves and joins again until `end`.
async fn churn(
    mut conn: Conn,
    kind: crate::ChannelKind,
    key: &str,
    secret: &str,
    end: tokio::time::Instant,
) -> Cycles {
    let mut cycles = Cycles {
        operations: 0,
        failed: 0,
        latencies: stats::histogram(),
        member_events: 0,
        closed: false,
    };
    let channel = kind.channel(conn.channel);
    let leave =
        serde_json::json!({ "event": "pusher:unsubscribe", "data": { "channel": channel } })
            .to_string();
    let join = subscribe_message(
        kind,
        conn.channel,
        conn.index,
        &conn.client.socket_id,
        key,
        secret,
    );
    while tokio::time::Instant::now() < end {
        if conn.client.send_text(leave.as_bytes()).await.is_err() {
            cycles.closed = true;
            break;
        }
        let began = Instant::now();
        if conn.client.send_text(join.as_bytes()).await.is_err() {
            cycles.closed = true;
            break;
        }
        cycles.operations += 1;
        // Read until this join's answer, counting the others' member events meanwhile.
        let outcome = tokio::time::timeout_at(end + Duration::from_secs(5), async {
            loop {
                let mut outcome = None;
                let mut members = 0;
                conn.client
                    .read_messages(&mut |opcode, payload| {
                        if opcode != TEXT {
                            return;
                        }
                        match subscription_outcome(payload) {
                            Some(result) if outcome.is_none() => outcome = Some(result.is_ok()),
                            _ if find(payload, b"member_").is_some() => members += 1,
                            _ => {}
                        }
                    })
                    .await?;
                cycles.member_events += members;
                if let Some(ok) = outcome {
                    return Ok::<_, crate::WsError>(ok);
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(true)) => {
                cycles.operations += 1;
                stats::record(&mut cycles.latencies, began.elapsed().as_micros() as u64);
            }
            Ok(Ok(false)) => cycles.failed += 1,
            Ok(Err(_)) => {
                cycles.closed = true;
                break;
            }
            Err(_) => {
                cycles.failed += 1;
                break;
            }
        }
    }
    cycles
}
