//! The live debug console: `GET /console` serves a page, compiled into the binary, that shows
//! what an app's connections, channels, events, webhooks and errors do as it happens, on every
//! node of the fleet. [`stream`] serves the page, its scripts and the signed stream it reads;
//! this module holds the taps that feed the streams.
//!
//! A tap costs nothing while nobody watches: [`Console::emit`] is one atomic load until a
//! console is open on some app, here or on another node, which asks for the app's lines through
//! the adapter's `console` extension. Each open console has a bounded queue: a line that does
//! not fit is counted and the page is told how many it missed, so that a slow page never holds
//! up anything else.

pub(crate) mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use serde_json::{Map, Value};
use soketi_adapter_core::{Extension, Fleet};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// The console's messages between nodes, generated from
/// `proto/soketi/console/v1/console.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
mod proto {
    include!(concat!(env!("OUT_DIR"), "/soketi.console.v1.rs"));
}

use proto::message::Body;

/// The extension kind of the console's messages between nodes.
const KIND: &str = "console";
/// Lines one open console may have waiting; more are dropped and counted.
const QUEUE_LINES: usize = 1024;
/// Lines of one app waiting to go to other nodes; more are dropped and counted.
const OUTBOX_LINES: usize = 4096;
/// How long a node sends an app's lines to a node that asked for them, unless asked again.
const WATCH_TTL: Duration = Duration::from_secs(6);
/// How often a node with open consoles asks again; well within [`WATCH_TTL`].
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How long lines for other nodes gather before they go, one message per app and node.
const FORWARD_AFTER: Duration = Duration::from_millis(50);
/// Bytes of an event's data that a line carries.
const EXCERPT_BYTES: usize = 2048;
/// Apps that other nodes may have this node watch at once: a bound on what a peer can make it
/// hold.
const MAX_REMOTE_APPS: usize = 10_000;

/// The taps of one server: which apps are watched, here and by other nodes, and where their
/// lines go.
pub(crate) struct Console {
    /// The name lines carry: the fleet's node id, or `local` without a fleet.
    node: String,
    /// Apps with a console open here or on another node; zero makes every tap one load.
    watched: AtomicUsize,
    apps: RwLock<HashMap<String, Watch>>,
    fleet: OnceLock<Weak<dyn Fleet>>,
    outbox: Mutex<Outbox>,
    /// Wakes the forwarding task when lines for other nodes start to gather.
    forward: Arc<Notify>,
}

/// Who watches one app.
#[derive(Default)]
struct Watch {
    /// The consoles open here.
    local: Vec<Arc<Watcher>>,
    /// The nodes with a console open on it, until when they asked.
    remote: HashMap<String, Instant>,
}

impl Watch {
    fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }
}

/// Lines waiting for other nodes, by app, and how many did not fit.
#[derive(Default)]
struct Outbox {
    lines: HashMap<String, Vec<String>>,
    dropped: HashMap<String, u64>,
}

/// One open console: its queue of lines, and how many did not fit since it was last told.
struct Watcher {
    lines: mpsc::Sender<Bytes>,
    dropped: AtomicU64,
}

impl Watcher {
    fn offer(&self, line: &Bytes) {
        if self.lines.try_send(line.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A console open on an app; dropping it closes it.
pub(crate) struct Watching {
    console: Arc<Console>,
    app_id: String,
    watcher: Arc<Watcher>,
}

impl Watching {
    /// Lines that did not fit in the queue since the last call.
    pub(crate) fn take_dropped(&self) -> u64 {
        self.watcher.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let last_here = {
            let mut apps = self.console.apps.write();
            let Some(watch) = apps.get_mut(&self.app_id) else {
                return;
            };
            watch.local.retain(|w| !Arc::ptr_eq(w, &self.watcher));
            let last_here = watch.local.is_empty();
            if watch.is_empty() {
                apps.remove(&self.app_id);
            }
            self.console.watched.store(apps.len(), Ordering::Relaxed);
            last_here
        };
        if last_here {
            self.console.send(Body::Unwatch(proto::Unwatch {
                app_ids: vec![self.app_id.clone()],
            }));
        }
    }
}

impl Console {
    /// A console whose lines name `node`.
    pub(crate) fn new(node: String) -> Arc<Self> {
        Arc::new(Self {
            node,
            watched: AtomicUsize::new(0),
            apps: RwLock::default(),
            fleet: OnceLock::new(),
            outbox: Mutex::default(),
            forward: Arc::new(Notify::new()),
        })
    }

    /// Joins the fleet: consoles opened on other nodes get this node's lines, and consoles
    /// opened here get theirs. The returned task sends the lines and renews the watches.
    pub(crate) fn join_fleet(self: &Arc<Self>, fleet: Arc<dyn Fleet>) -> JoinHandle<()> {
        let _ = self.fleet.set(Arc::downgrade(&fleet));
        fleet.register_extension(KIND, self.clone());
        tokio::spawn(run(Arc::downgrade(self), self.forward.clone()))
    }

    /// Whether a console is open on `app_id`, here or on another node: a caller with several
    /// lines to build asks first.
    pub(crate) fn watches(&self, app_id: &str) -> bool {
        self.watched.load(Ordering::Relaxed) != 0 && self.apps.read().contains_key(app_id)
    }

    /// Records what happened to `app_id`: a line of `kind` with the members of `fields`, built
    /// only when someone watches the app.
    pub(crate) fn emit(&self, app_id: &str, kind: &str, fields: impl FnOnce() -> Value) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        let apps = self.apps.read();
        let Some(watch) = apps.get(app_id) else {
            return;
        };
        let line = self.line(kind, fields());
        if !watch.remote.is_empty() {
            let mut outbox = self.outbox.lock();
            let was_empty = outbox.lines.is_empty();
            let lines = outbox.lines.entry(app_id.to_owned()).or_default();
            if lines.len() < OUTBOX_LINES {
                lines.push(line.clone());
            } else {
                *outbox.dropped.entry(app_id.to_owned()).or_default() += 1;
            }
            if was_empty {
                self.forward.notify_one();
            }
        }
        let line = Bytes::from(line);
        for watcher in &watch.local {
            watcher.offer(&line);
        }
    }

    /// A line as the page reads it: `type`, `time` (Unix milliseconds), `node`, then `fields`.
    pub(crate) fn line(&self, kind: &str, fields: Value) -> String {
        let mut object = Map::new();
        object.insert("type".into(), kind.into());
        object.insert("time".into(), unix_millis().into());
        object.insert("node".into(), self.node.clone().into());
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        Value::Object(object).to_string()
    }

    /// Opens a console on `app_id`: the lines come on the receiver, until the guard drops.
    pub(crate) fn watch(self: &Arc<Self>, app_id: &str) -> (Watching, mpsc::Receiver<Bytes>) {
        let (lines, receiver) = mpsc::channel(QUEUE_LINES);
        let watcher = Arc::new(Watcher {
            lines,
            dropped: AtomicU64::new(0),
        });
        let first_here = {
            let mut apps = self.apps.write();
            let watch = apps.entry(app_id.to_owned()).or_default();
            let first_here = watch.local.is_empty();
            watch.local.push(watcher.clone());
            self.watched.store(apps.len(), Ordering::Relaxed);
            first_here
        };
        if first_here {
            self.send(Body::Watch(proto::Watch {
                app_ids: vec![app_id.to_owned()],
                ttl_ms: ttl_ms(),
            }));
        }
        let guard = Watching {
            console: self.clone(),
            app_id: app_id.to_owned(),
            watcher,
        };
        (guard, receiver)
    }

    /// The apps with a console open here.
    fn watched_here(&self) -> Vec<String> {
        self.apps
            .read()
            .iter()
            .filter(|(_, watch)| !watch.local.is_empty())
            .map(|(app_id, _)| app_id.clone())
            .collect()
    }

    fn fleet(&self) -> Option<Arc<dyn Fleet>> {
        self.fleet.get().and_then(Weak::upgrade)
    }

    /// Sends `body` to every other node, in the background; nothing without a fleet.
    fn send(&self, body: Body) {
        let Some(fleet) = self.fleet() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let payload = encode(body);
        runtime.spawn(async move {
            if let Err(e) = fleet.send_extension(KIND, payload, None).await {
                tracing::debug!(error = %e, "cannot tell the fleet about a console");
            }
        });
    }

    /// Forgets the nodes that stopped asking, and asks again for the apps watched here.
    async fn renew(&self, fleet: &dyn Fleet) {
        let now = Instant::now();
        {
            let mut apps = self.apps.write();
            for watch in apps.values_mut() {
                watch.remote.retain(|_, until| *until > now);
            }
            apps.retain(|_, watch| !watch.is_empty());
            self.watched.store(apps.len(), Ordering::Relaxed);
        }
        let app_ids = self.watched_here();
        if app_ids.is_empty() {
            return;
        }
        let body = Body::Watch(proto::Watch {
            app_ids,
            ttl_ms: ttl_ms(),
        });
        let payload = encode(body);
        if let Err(e) = fleet.send_extension(KIND, payload, None).await {
            tracing::debug!(error = %e, "cannot renew the consoles' watch");
        }
    }

    /// Sends the lines gathered for other nodes, one message per app and node.
    async fn forward(&self, fleet: &dyn Fleet) {
        let Outbox { lines, dropped } = std::mem::take(&mut *self.outbox.lock());
        let mut batches = lines;
        for (app_id, count) in dropped {
            let line = self.line("dropped", serde_json::json!({ "count": count }));
            batches.entry(app_id).or_default().push(line);
        }
        for (app_id, lines) in batches {
            let nodes: Vec<String> = match self.apps.read().get(&app_id) {
                Some(watch) => watch.remote.keys().cloned().collect(),
                None => continue,
            };
            let body = Body::Lines(proto::Lines {
                app_id: app_id.clone(),
                lines,
            });
            let payload = encode(body);
            for node in nodes {
                if let Err(e) = fleet
                    .send_extension(KIND, payload.clone(), Some(&node))
                    .await
                {
                    tracing::debug!(error = %e, node, "cannot send console lines");
                }
            }
        }
    }

    /// Lines of another node, for the consoles open here.
    fn receive(&self, lines: proto::Lines) {
        let apps = self.apps.read();
        let Some(watch) = apps.get(&lines.app_id) else {
            return;
        };
        for line in lines.lines {
            // One line per `data:` field: a line with a line break would end it early.
            if line.contains(['\n', '\r']) {
                continue;
            }
            let line = Bytes::from(line);
            for watcher in &watch.local {
                watcher.offer(&line);
            }
        }
    }
}

impl Extension for Console {
    fn on_message(&self, from: &str, payload: &[u8]) {
        let Ok(message) = proto::Message::decode(payload) else {
            tracing::warn!(from, "dropping a console message that does not decode");
            return;
        };
        match message.body {
            Some(Body::Watch(watch)) => {
                let ttl = Duration::from_millis(watch.ttl_ms.into()).min(WATCH_TTL * 10);
                let until = Instant::now() + ttl;
                let mut apps = self.apps.write();
                for app_id in watch.app_ids {
                    if apps.len() >= MAX_REMOTE_APPS && !apps.contains_key(&app_id) {
                        break;
                    }
                    apps.entry(app_id)
                        .or_default()
                        .remote
                        .insert(from.to_owned(), until);
                }
                self.watched.store(apps.len(), Ordering::Relaxed);
            }
            Some(Body::Unwatch(unwatch)) => {
                let mut apps = self.apps.write();
                for app_id in unwatch.app_ids {
                    if let Some(watch) = apps.get_mut(&app_id) {
                        watch.remote.remove(from);
                        if watch.is_empty() {
                            apps.remove(&app_id);
                        }
                    }
                }
                self.watched.store(apps.len(), Ordering::Relaxed);
            }
            Some(Body::Lines(lines)) => self.receive(lines),
            None => {}
        }
    }

    fn on_node_joined(&self, _node: &str, _is_master: bool) -> Option<Bytes> {
        let app_ids = self.watched_here();
        if app_ids.is_empty() {
            return None;
        }
        let body = Body::Watch(proto::Watch {
            app_ids,
            ttl_ms: ttl_ms(),
        });
        Some(encode(body))
    }
}

/// Renews the watches now and then, and sends gathered lines shortly after they start to
/// gather; ends with the console.
async fn run(console: Weak<Console>, forward: Arc<Notify>) {
    let mut ticks = tokio::time::interval(WATCH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let renew = tokio::select! {
            _ = ticks.tick() => true,
            () = forward.notified() => false,
        };
        if !renew {
            tokio::time::sleep(FORWARD_AFTER).await;
        }
        let Some(console) = console.upgrade() else {
            return;
        };
        let Some(fleet) = console.fleet() else {
            return;
        };
        if renew {
            console.renew(&*fleet).await;
        }
        console.forward(&*fleet).await;
    }
}

/// Event data as the console shows it: the text of a string, else the JSON, cut after
/// [`EXCERPT_BYTES`] so that a large payload does not fill the page's queue.
pub(crate) fn excerpt(data: &str) -> String {
    let text = match serde_json::from_str::<String>(data) {
        Ok(text) => text,
        Err(_) => data.to_owned(),
    };
    if text.len() <= EXCERPT_BYTES {
        return text;
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A console message as it travels between nodes.
fn encode(body: Body) -> Bytes {
    Bytes::from(proto::Message { body: Some(body) }.encode_to_vec())
}

fn ttl_ms() -> u32 {
    u32::try_from(WATCH_TTL.as_millis()).unwrap_or(u32::MAX)
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
