//! `subscription_count`, for apps with `enable_subscription_count`: the subscribers of a
//! non-presence channel hear `pusher_internal:subscription_count` with the channel's
//! subscribers across the fleet when that number changes, and the webhooks get
//! `subscription_count` from one node.
//!
//! The adapter counts (each node shares its own counts; see `Adapter::subscription_count`);
//! this task sends. Per channel it coalesces: the first change goes out at once, later ones at
//! most once per [`INTERVAL`], with the count of that moment, so that a join storm on a big
//! channel costs each subscriber one frame per interval, not one per join. A count that is back
//! where it was when last sent is not sent again. Each node sends the frame to its own
//! subscribers; the webhook goes from the node that speaks for the channel (of the nodes with
//! subscribers, the smallest id), or for a count of zero from the node that last did.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use soketi_adapter_core::Adapter;
use soketi_protocol::{message, ws};

use crate::apps::AppManager;
use crate::webhooks::{Event, Webhooks};

/// At most one `subscription_count` per channel per interval, on each node.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);

/// How often the task looks for changes: the latency of a channel's first change.
const TICK: Duration = Duration::from_millis(50);

/// What was sent about a channel.
#[derive(Default)]
struct Sent {
    /// When the last frame went out.
    at: Option<Instant>,
    /// The count it said.
    count: Option<u64>,
    /// Whether a change waits for the interval to pass.
    due: bool,
    /// Whether this node spoke for the channel when it last looked.
    speaks: bool,
    /// The count of the last webhook this node sent while it spoke for the channel.
    hooked: Option<u64>,
}

/// Sends the counts while the server lives.
pub(crate) async fn run(
    adapter: Weak<dyn Adapter>,
    apps: Weak<dyn AppManager>,
    webhooks: Weak<Webhooks>,
) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channels: HashMap<(String, String), Sent> = HashMap::new();
    loop {
        ticks.tick().await;
        let (Some(adapter), Some(apps), Some(webhooks)) =
            (adapter.upgrade(), apps.upgrade(), webhooks.upgrade())
        else {
            return;
        };
        for key in adapter.take_subscription_count_changes() {
            channels.entry(key).or_default().due = true;
        }
        let now = Instant::now();
        let ready: Vec<(String, String)> = channels
            .iter()
            .filter(|(_, s)| s.due && s.at.is_none_or(|at| now.duration_since(at) >= INTERVAL))
            .map(|(key, _)| key.clone())
            .collect();
        for key in ready {
            let Some(sent) = channels.get_mut(&key) else {
                continue;
            };
            sent.due = false;
            let (app_id, channel) = (&key.0, &key.1);
            let now_count = adapter.subscription_count(app_id, channel);
            let count = now_count.count;
            let speaks = now_count.speaks || (count == 0 && sent.speaks);
            sent.speaks = now_count.speaks;
            let frame = sent.count.unwrap_or(0) != count;
            // A node that starts speaking for the channel (the former speaker's subscribers
            // left, or it died) sends the count it sees even when its own frames had it.
            let hook = speaks && sent.hooked != Some(count);
            if !speaks {
                sent.hooked = None;
            }
            if !frame && !hook {
                continue;
            }
            sent.at = Some(now);
            sent.count = Some(count);
            if hook {
                sent.hooked = Some(count);
            }
            let app = match apps.find_by_id(app_id).await {
                Ok(Some(app)) if app.enable_subscription_count => app,
                _ => continue,
            };
            if frame
                && count > 0
                && let Some(registry) = adapter.local().get_app(app_id)
            {
                let frame = message::subscription_count(channel, count);
                registry.publish(channel, &ws::text(frame.as_bytes()), None);
            }
            if hook && !app.webhooks.is_empty() {
                webhooks.fire(
                    &app,
                    Event::SubscriptionCount {
                        channel: channel.clone(),
                        count,
                    },
                );
            }
        }
        // A channel left by everyone is forgotten once its interval is over.
        channels.retain(|_, s| {
            s.due
                || s.count.unwrap_or(0) > 0
                || s.at.is_some_and(|at| now.duration_since(at) < INTERVAL)
        });
    }
}
