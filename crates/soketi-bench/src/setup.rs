//! Opening and subscribing the connections, a bounded number of handshakes at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use soketi_protocol::auth;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::{BenchError, WsError};
use crate::progress::Progress;
use crate::stats::{self, Latency};
use crate::ws::{Client, Dial, find};
use crate::{ChannelKind, Plan, Setup, percent, procfs};

/// How long one connection's connect, upgrade or subscription may take.
pub(crate) const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// One open, subscribed connection.
pub(crate) struct Conn {
    pub(crate) client: Client,
    /// Its number in the plan.
    pub(crate) index: usize,
    /// The channel it subscribed to.
    pub(crate) channel: usize,
    /// The server (index into the plan's servers) it is connected to.
    pub(crate) node: usize,
}

/// Opens the plan's connections and, when `subscribe`, subscribes each to its channel; those not
/// done by the plan's deadline count as failed. Fails only if none succeeded.
pub(crate) async fn open_all(
    plan: &Plan,
    subscribe: bool,
    progress: &Progress,
) -> Result<(Vec<Conn>, Setup), BenchError> {
    progress.phase("connect", plan.connections as u64);
    let cpu_start = procfs::own_cpu();
    let server_start = procfs::sample(&plan.server_pids)?;
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(plan.handshakes));
    let mut tasks = JoinSet::new();
    for index in 0..plan.connections {
        let gate = Arc::clone(&gate);
        let node = index % plan.servers.len();
        let server = plan.servers[node];
        let source = plan.sources.of(index);
        let app = plan.app.clone();
        let kind = plan.kind;
        let channel = index % plan.channels;
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let began = Instant::now();
            let dial = Dial {
                server,
                source,
                key: &app.key,
                deadline: STEP_DEADLINE,
            };
            let mut client = Client::connect(&dial).await?;
            if subscribe {
                self::subscribe(&mut client, kind, channel, index, &app.key, &app.secret).await?;
            }
            Ok::<_, WsError>((
                Conn {
                    client,
                    index,
                    channel,
                    node,
                },
                began.elapsed(),
            ))
        });
    }

    let mut conns = Vec::with_capacity(plan.connections);
    let mut per_connection = stats::histogram();
    let mut failures = 0;
    let mut first_failure = None;
    let mut last_done = started;
    let deadline = tokio::time::Instant::now() + plan.connect_deadline;
    loop {
        let next = tokio::time::timeout_at(deadline, tasks.join_next()).await;
        match next {
            Ok(Some(Ok(Ok((conn, took))))) => {
                stats::record(&mut per_connection, took.as_micros() as u64);
                conns.push(conn);
                last_done = Instant::now();
                progress.inc();
            }
            Ok(Some(Ok(Err(err)))) => {
                failures += 1;
                first_failure.get_or_insert_with(|| err.to_string());
                progress.inc();
            }
            Ok(Some(Err(join))) => {
                failures += 1;
                first_failure.get_or_insert_with(|| format!("a connection task failed: {join}"));
            }
            Ok(None) => break,
            Err(_) => {
                let missing = tasks.len();
                tasks.abort_all();
                failures += missing;
                first_failure.get_or_insert_with(|| {
                    format!(
                        "{missing} connections not subscribed within {:?}",
                        plan.connect_deadline
                    )
                });
                break;
            }
        }
    }
    if conns.is_empty() {
        return Err(BenchError::NoConnection {
            failed: failures,
            first: first_failure.unwrap_or_default(),
        });
    }
    conns.sort_by_key(|conn| conn.index);
    let wall = last_done - started;
    let server_end = procfs::sample(&plan.server_pids)?;
    let setup = Setup {
        wanted: plan.connections,
        subscribed: conns.len(),
        failed: failures,
        first_failure,
        seconds: wall.as_secs_f64(),
        per_connection: Latency::of(&per_connection),
        generator_cpu_percent: percent(procfs::own_cpu().saturating_sub(cpu_start), wall),
        server_cpu_seconds: server_end
            .cpu
            .saturating_sub(server_start.cpu)
            .as_secs_f64(),
    };
    Ok((conns, setup))
}

/// The user id of connection `index` on presence channels.
pub(crate) fn user_id(index: usize) -> String {
    format!("u{index}")
}

/// The `pusher:subscribe` message of connection `index` to channel `channel`, signed as the app's
/// auth endpoint would sign it.
pub(crate) fn subscribe_message(
    kind: ChannelKind,
    channel: usize,
    index: usize,
    socket_id: &str,
    key: &str,
    secret: &str,
) -> String {
    let name = kind.channel(channel);
    let mut data = serde_json::json!({ "channel": name });
    match kind.of(channel) {
        ChannelKind::Public | ChannelKind::Mixed => {}
        ChannelKind::Private => {
            let to_sign = auth::channel_string_to_sign(socket_id, &name, None);
            data["auth"] = auth::sign(key, secret, &to_sign).into();
        }
        ChannelKind::Presence => {
            let channel_data =
                serde_json::json!({ "user_id": user_id(index), "user_info": { "i": index } })
                    .to_string();
            let to_sign = auth::channel_string_to_sign(socket_id, &name, Some(&channel_data));
            data["auth"] = auth::sign(key, secret, &to_sign).into();
            data["channel_data"] = channel_data.into();
        }
    }
    serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string()
}

/// Subscribes and waits for `pusher_internal:subscription_succeeded`.
pub(crate) async fn subscribe(
    client: &mut Client,
    kind: ChannelKind,
    channel: usize,
    index: usize,
    key: &str,
    secret: &str,
) -> Result<(), WsError> {
    let message = subscribe_message(kind, channel, index, &client.socket_id, key, secret);
    client.send_text(message.as_bytes()).await?;
    tokio::time::timeout(STEP_DEADLINE, async {
        loop {
            let text = client.next_text().await?;
            if let Some(outcome) = subscription_outcome(&text) {
                return outcome;
            }
        }
    })
    .await
    .map_err(|_| WsError::Timeout("the subscription"))?
}

/// `Some(Ok)` for a subscription's success, `Some(Err)` for its refusal, `None` for other
/// messages (members joining meanwhile, for example).
pub(crate) fn subscription_outcome(text: &[u8]) -> Option<Result<(), WsError>> {
    if find(text, b"pusher_internal:subscription_succeeded").is_some() {
        Some(Ok(()))
    } else if find(text, b"pusher:subscription_error").is_some()
        || find(text, b"\"pusher:error\"").is_some()
    {
        let shown = &text[..text.len().min(300)];
        Some(Err(WsError::Unexpected(
            String::from_utf8_lossy(shown).into_owned(),
        )))
    } else {
        None
    }
}
