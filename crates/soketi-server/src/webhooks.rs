//! Webhooks: Pusher's events about channels, members and client events, posted to each app's
//! webhook URLs, signed, through a [`Queue`].
//!
//! What fires: `channel_occupied` on a channel's first subscriber anywhere in the fleet and
//! `channel_vacated` after its last leaves everywhere; `member_added` and `member_removed` on a
//! user's first and last connection anywhere; `client_event`; `cache_miss`; `subscription_count`
//! (apps with `enable_subscription_count`), rate-limited and sent by one node of the fleet in
//! [`crate::subscription_count`], then handled here as `cache_miss` is. Vacated and
//! removed wait `webhooks.vacatedDelay` and are dropped, with the occupied or added that would
//! follow, when the channel or user comes back in time: a quick reconnect is invisible. A node
//! that dies takes users and channels with it; one survivor fires their `member_removed`,
//! `channel_vacated` and `user_offline` ([`FleetDepartures`]).
//!
//! Beyond Pusher's set: `user_online` on a user's first signed-in connection anywhere and
//! `user_offline` after the last one closes everywhere, decided once for the fleet as occupancy
//! is (the adapter shares who is online under [`user_key`]), `user_offline` waiting out the
//! vacated delay like `channel_vacated`.
//!
//! Each webhook gets only its event types and the channels its filter matches; the body is
//! `{"time_ms", "events"}` and `X-Pusher-Signature` signs exactly that body. With batching,
//! the events of one app and one webhook are collected for the batching duration by the queue
//! ([`Queue::push_to_batch`]), in the order they fired: a durable queue holds each event from
//! the moment it fires, and the [`Sender`] signs the closed batch with the app's secret when it
//! posts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use soketi_adapter_core::{
    Adapter, Departure, DepartureSink, InFlight, InFlightTask, OccupancyQuestion, Queue, user_key,
};
use soketi_protocol::App;
use soketi_protocol::auth::hmac_sha256_hex;

use crate::apps::AppManager;

mod sender;
pub(crate) use sender::Sender;

/// An event a webhook may carry.
#[derive(Debug)]
pub(crate) enum Event {
    /// The first subscriber anywhere.
    Occupied(String),
    /// The last subscriber gone everywhere.
    Vacated(String),
    /// A user's first connection anywhere on a presence channel.
    MemberAdded { channel: String, user_id: String },
    /// A user's last connection gone everywhere.
    MemberRemoved { channel: String, user_id: String },
    /// A client event.
    Client {
        channel: String,
        event: String,
        data: Box<RawValue>,
        socket_id: String,
        user_id: Option<String>,
    },
    /// A cache channel's subscriber found nothing cached.
    CacheMiss(String),
    /// A user's first signed-in connection anywhere (an extension of Pusher's set).
    UserOnline(String),
    /// A channel's subscribers across the fleet changed (apps with `subscription_count` on),
    /// rate-limited per channel and sent by one node ([`crate::subscription_count`]).
    SubscriptionCount {
        /// The channel.
        channel: String,
        /// Its subscribers across the fleet.
        count: u64,
    },
    /// A user's last signed-in connection gone everywhere (an extension of Pusher's set).
    UserOffline(String),
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::Occupied(_) => "channel_occupied",
            Event::Vacated(_) => "channel_vacated",
            Event::MemberAdded { .. } => "member_added",
            Event::MemberRemoved { .. } => "member_removed",
            Event::Client { .. } => "client_event",
            Event::CacheMiss(_) => "cache_miss",
            Event::SubscriptionCount { .. } => "subscription_count",
            Event::UserOnline(_) => "user_online",
            Event::UserOffline(_) => "user_offline",
        }
    }

    /// The channel the event is about; empty for the user events, which are about none.
    fn channel(&self) -> &str {
        match self {
            Event::UserOnline(_) | Event::UserOffline(_) => "",
            Event::Occupied(c) | Event::Vacated(c) | Event::CacheMiss(c) => c,
            Event::MemberAdded { channel, .. }
            | Event::MemberRemoved { channel, .. }
            | Event::SubscriptionCount { channel, .. }
            | Event::Client { channel, .. } => channel,
        }
    }

    fn to_json(&self) -> Value {
        if let Event::UserOnline(user_id) | Event::UserOffline(user_id) = self {
            return json!({ "name": self.name(), "user_id": user_id });
        }
        let mut out = json!({ "name": self.name(), "channel": self.channel() });
        match self {
            Event::MemberAdded { user_id, .. } | Event::MemberRemoved { user_id, .. } => {
                out["user_id"] = json!(user_id);
            }
            Event::SubscriptionCount { count, .. } => {
                out["subscription_count"] = json!(count);
            }
            Event::Client {
                event,
                data,
                socket_id,
                user_id,
                ..
            } => {
                out["event"] = json!(event);
                out["data"] = serde_json::from_str(data.get()).unwrap_or(Value::Null);
                out["socket_id"] = json!(socket_id);
                if let Some(user_id) = user_id {
                    out["user_id"] = json!(user_id);
                }
            }
            _ => {}
        }
        out
    }
}

/// Fires the webhooks of what a node that died took with it (its last members, the channels only
/// it held), for the node of the fleet that reports them.
pub(crate) struct FleetDepartures {
    webhooks: Arc<Webhooks>,
    apps: Arc<dyn AppManager>,
}

impl FleetDepartures {
    pub(crate) fn new(webhooks: Arc<Webhooks>, apps: Arc<dyn AppManager>) -> Self {
        Self { webhooks, apps }
    }
}

impl DepartureSink for FleetDepartures {
    fn departed(&self, departures: Vec<Departure>) {
        let (webhooks, apps) = (self.webhooks.clone(), self.apps.clone());
        tokio::spawn(async move {
            for departure in departures {
                let (app_id, event) = match departure {
                    Departure::MemberRemoved {
                        app_id,
                        channel,
                        user_id,
                    } => (app_id, Event::MemberRemoved { channel, user_id }),
                    Departure::Vacated { app_id, channel } => (app_id, Event::Vacated(channel)),
                    Departure::UserOffline { app_id, user_id } => {
                        (app_id, Event::UserOffline(user_id))
                    }
                };
                match apps.find_by_id(&app_id).await {
                    Ok(Some(app)) => webhooks.fire(&app, event),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(app_id, error = %e, "no webhook for what a node that left took with it: the app could not be read");
                    }
                }
            }
        });
    }
}

/// What a queued webhook job holds: everything needed to post it, already signed.
#[derive(Serialize, Deserialize)]
struct Job {
    /// Where it is posted; empty when it invokes `lambda`.
    url: String,
    headers: Vec<(String, String)>,
    body: String,
    /// The app, for the live console; jobs queued before it was added have none.
    #[serde(default)]
    app_id: String,
    /// The Lambda function invoked with `{"payload": body, "headers": headers}` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lambda: Option<LambdaJob>,
}

/// A webhook's Lambda function, as a queued job carries it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
struct LambdaJob {
    function: String,
    #[serde(default)]
    asynchronous: bool,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    credentials: Option<(String, String, Option<String>)>,
}

impl Job {
    /// The request for `app`'s webhook number `index` carrying `events` (each a JSON object),
    /// signed with the app's secret; `None` when the app has no such webhook.
    fn signed<E: AsRef<str>>(app: &App, index: usize, events: &[E]) -> Option<Job> {
        let hook = app.webhooks.get(index)?;
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut body = format!("{{\"time_ms\":{time_ms},\"events\":[");
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(event.as_ref());
        }
        body.push_str("]}");
        let signature = hmac_sha256_hex(&app.secret, body.as_bytes());
        // Custom headers first: the key and the signature cannot be overridden.
        let mut headers: Vec<(String, String)> = hook
            .headers
            .iter()
            .filter(|(name, _)| {
                !name.eq_ignore_ascii_case("x-pusher-key")
                    && !name.eq_ignore_ascii_case("x-pusher-signature")
            })
            .cloned()
            .collect();
        headers.push(("X-Pusher-Key".into(), app.key.clone()));
        headers.push(("X-Pusher-Signature".into(), signature));
        Some(Job {
            url: hook.url.clone(),
            headers,
            body,
            app_id: app.id.clone(),
            lambda: hook.lambda.as_ref().map(|l| LambdaJob {
                function: l.function.clone(),
                asynchronous: l.asynchronous,
                region: l.region.clone(),
                endpoint: l.endpoint.clone(),
                credentials: l.credentials.clone(),
            }),
        })
    }
}

/// The queue's batch group of `app_id`'s webhook number `index`, as [`read_batch_group`] reads
/// it back.
fn batch_group(app_id: &str, index: usize) -> String {
    format!("{index}:{app_id}")
}

/// The app id and webhook number of a batch group.
fn read_batch_group(group: &str) -> Option<(&str, usize)> {
    let (index, app_id) = group.split_once(':')?;
    Some((app_id, index.parse().ok()?))
}

/// An event for a batch, on its way to the queue.
struct BatchItem {
    group: String,
    event: Bytes,
    window: Duration,
    _counted: InFlightTask,
}

/// Settings of webhooks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WebhookSettings {
    /// Collect events this long per app and webhook; `None` sends each at once.
    pub(crate) batching: Option<Duration>,
    /// How long `channel_vacated` and `member_removed` wait.
    pub(crate) vacated_delay: Duration,
}

/// Turns events into queued webhook jobs.
pub(crate) struct Webhooks {
    queue: Arc<dyn Queue>,
    adapter: Arc<dyn Adapter>,
    settings: WebhookSettings,
    /// Events for batches, pushed to the queue one after the other by one task, so that a batch
    /// holds them in the order they fired.
    batcher: tokio::sync::mpsc::UnboundedSender<BatchItem>,
    /// Vacated and removed events waiting out the delay, by app and what they are about.
    pending: DashMap<(String, String), Pending>,
    generation: AtomicU64,
    /// Tasks that will still queue something (a settle, a batch, a push): shutdown waits for
    /// them.
    in_flight: InFlight,
}

/// A delayed event: what [`Webhooks::drain`] decides at once when the server stops.
struct Pending {
    generation: u64,
    app: Arc<App>,
    event: Arc<Event>,
    question: OccupancyQuestion,
}

impl Webhooks {
    pub(crate) fn new(
        queue: Arc<dyn Queue>,
        adapter: Arc<dyn Adapter>,
        settings: WebhookSettings,
    ) -> Arc<Self> {
        let (batcher, mut items) = tokio::sync::mpsc::unbounded_channel::<BatchItem>();
        tokio::spawn({
            let queue = queue.clone();
            async move {
                while let Some(item) = items.recv().await {
                    if let Err(e) = queue
                        .push_to_batch(&item.group, item.event, item.window)
                        .await
                    {
                        tracing::warn!(error = %e, "could not queue a webhook");
                    }
                }
            }
        });
        Arc::new(Self {
            queue,
            adapter,
            settings,
            batcher,
            pending: DashMap::new(),
            generation: AtomicU64::new(1),
            in_flight: InFlight::default(),
        })
    }

    /// What a stopping server does once its connections closed, so that no `channel_vacated`
    /// or `member_removed` waiting out the delay is lost with the process: in a fleet, where
    /// this node's clients reconnect to the others, the delayed events wait out their delay as
    /// usual (a client back elsewhere in time vacated nothing); then every one still waiting is
    /// decided now, and the drain waits until every job is on the queue (a queue of this process
    /// sends its open batches when their window ends). It takes at most the vacated delay and `margin`. Returns how many delayed events
    /// it decided itself.
    pub(crate) async fn drain(self: &Arc<Self>, margin: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + self.settings.vacated_delay + margin;
        if !self.adapter.settle_time().is_zero() {
            while !self.pending.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let keys: Vec<_> = self.pending.iter().map(|e| e.key().clone()).collect();
        let mut decided = 0;
        for key in keys {
            if let Some((_, pending)) = self.pending.remove(&key) {
                decided += 1;
                self.decide(&pending.app, &pending.event, &pending.question)
                    .await;
            }
        }
        self.in_flight.settled(deadline).await;
        // A queue of this process (sync) sends what it holds before the process ends.
        self.queue
            .settle(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await;
        decided
    }

    /// Whether `app` has a webhook for `event` on any channel; the cheap check callers make
    /// before doing any work for webhooks.
    pub(crate) fn wanted(app: &App, event: &str) -> bool {
        app.webhooks
            .iter()
            .any(|w| w.event_types.iter().any(|t| t == event))
    }

    /// Handles one event: delays, cancels, filters, batches and queues it.
    pub(crate) fn fire(self: &Arc<Self>, app: &Arc<App>, event: Event) {
        if !Self::wanted(app, event.name())
            && !matches!(
                event,
                Event::Occupied(_) | Event::MemberAdded { .. } | Event::UserOnline(_)
            )
        {
            return;
        }
        match &event {
            // A channel or user back within the delay: the pending event is dropped, and so is
            // this one.
            Event::Occupied(channel) if self.cancel(app, &format!("vacated:{channel}")) => {
                return;
            }
            Event::MemberAdded { channel, user_id }
                if self.cancel(app, &format!("removed:{channel}:{user_id}"))
                    || self.adapter.member_moved(
                        &app.id,
                        channel,
                        user_id,
                        self.settings.vacated_delay,
                    ) =>
            {
                // Back within the delay, here or from another node: neither the pending
                // member_removed nor this member_added is sent.
                return;
            }
            // Back within the delay: neither the pending user_offline nor this is sent. From
            // another node, the arbitration below says no.
            Event::UserOnline(user_id) if self.cancel(app, &format!("offline:{user_id}")) => {
                return;
            }
            Event::Occupied(channel) if !self.adapter.settle_time().is_zero() => {
                return self.settle(app, channel.clone(), event);
            }
            Event::UserOnline(user_id) if !self.adapter.settle_time().is_zero() => {
                return self.settle(app, user_key(user_id), event);
            }
            Event::UserOffline(user_id) => {
                let key = format!("offline:{user_id}");
                return self.delay(app, key, event);
            }
            Event::Vacated(channel) => {
                let key = format!("vacated:{channel}");
                return self.delay(app, key, event);
            }
            Event::MemberRemoved { channel, user_id } => {
                let key = format!("removed:{channel}:{user_id}");
                return self.delay(app, key, event);
            }
            _ => {}
        }
        self.emit(app, &event);
    }

    /// Waits for the other nodes' reports, then announces `channel_occupied` if this node is
    /// the one the fleet agrees on (see `Adapter::announces`).
    fn settle(self: &Arc<Self>, app: &Arc<App>, channel: String, event: Event) {
        let (this, app) = (self.clone(), app.clone());
        let question = self.question(true);
        let counted = self.in_flight.enter();
        tokio::spawn(async move {
            let _counted = counted;
            tokio::time::sleep(this.adapter.settle_time()).await;
            if this.adapter.announces(&app.id, &channel, &question) {
                this.emit(&app, &event);
            }
        });
    }

    fn question(&self, occupied: bool) -> OccupancyQuestion {
        OccupancyQuestion {
            occupied,
            since: Instant::now(),
            tolerance: self.adapter.settle_time(),
            vacated_delay: self.settings.vacated_delay,
        }
    }

    fn cancel(&self, app: &App, key: &str) -> bool {
        self.pending
            .remove(&(app.id.clone(), key.to_owned()))
            .is_some()
    }

    fn delay(self: &Arc<Self>, app: &Arc<App>, key: String, event: Event) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let pending_key = (app.id.clone(), key);
        let event = Arc::new(event);
        let question = self.question(false);
        self.pending.insert(
            pending_key.clone(),
            Pending {
                generation,
                app: app.clone(),
                event: event.clone(),
                question,
            },
        );
        let (this, app) = (self.clone(), app.clone());
        tokio::spawn(async move {
            tokio::time::sleep(this.settings.vacated_delay).await;
            // Gone when a return cancelled it, a newer one replaced it, or a drain decided it.
            if this
                .pending
                .remove_if(&pending_key, |_, p| p.generation == generation)
                .is_none()
            {
                return;
            }
            this.decide(&app, &event, &question).await;
        });
    }

    /// Queues a delayed event unless its channel or user came back or another node speaks for
    /// the fleet.
    async fn decide(self: &Arc<Self>, app: &Arc<App>, event: &Event, question: &OccupancyQuestion) {
        if self.came_back(app, event).await {
            return;
        }
        if let Event::Vacated(channel) = event
            && !self.adapter.announces(&app.id, channel, question)
        {
            // Another node speaks for the fleet.
            return;
        }
        if let Event::UserOffline(user_id) = event
            && !self
                .adapter
                .announces(&app.id, &user_key(user_id), question)
        {
            return;
        }
        self.emit(app, event);
    }

    /// Whether the channel or user of a delayed event is back, anywhere.
    async fn came_back(&self, app: &App, event: &Event) -> bool {
        match event {
            Event::Vacated(channel) => self.adapter.occupied(&app.id, channel),
            Event::MemberRemoved { channel, user_id } => self
                .adapter
                .presence_members(&app.id, channel)
                .await
                .is_ok_and(|members| members.iter().any(|m| &m.user_id == user_id)),
            Event::UserOffline(user_id) => self.adapter.user_online(&app.id, user_id),
            _ => false,
        }
    }

    fn emit(self: &Arc<Self>, app: &Arc<App>, event: &Event) {
        let (name, channel) = (event.name(), event.channel());
        let json = event.to_json().to_string();
        for (index, hook) in app.webhooks.iter().enumerate() {
            // The user events are about no channel: a webhook's channel filter does not apply.
            let wanted = match event {
                Event::UserOnline(_) | Event::UserOffline(_) => {
                    hook.event_types.iter().any(|t| t == name)
                }
                _ => hook.wants(name, channel),
            };
            if !wanted {
                continue;
            }
            match self.settings.batching {
                None => self.queue_job(app, index, &json),
                Some(window) => {
                    let item = BatchItem {
                        group: batch_group(&app.id, index),
                        event: Bytes::from(json.clone()),
                        window,
                        _counted: self.in_flight.enter(),
                    };
                    if self.batcher.send(item).is_err() {
                        tracing::warn!("could not queue a webhook: the queue's pusher stopped");
                    }
                }
            }
        }
    }

    fn queue_job(self: &Arc<Self>, app: &App, index: usize, event: &str) {
        let Some(job) = Job::signed(app, index, &[event]) else {
            return;
        };
        let Ok(job) = serde_json::to_vec(&job) else {
            return;
        };
        let queue = self.queue.clone();
        let counted = self.in_flight.enter();
        tokio::spawn(async move {
            let _counted = counted;
            if let Err(e) = queue.push(Bytes::from(job)).await {
                tracing::warn!(error = %e, "could not queue a webhook");
            }
        });
    }
}
