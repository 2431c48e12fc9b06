//! soketi's Prometheus metrics, with soketi's names and labels (`app_id`, `port`).
//!
//! [`Metrics`] owns the registry and encodes it. [`Metrics::app`] hands out an [`AppMetrics`]:
//! the counters of one app, looked up once, so that a connection pays for a message a couple
//! of relaxed atomic additions and never a label lookup. With metrics disabled an `AppMetrics`
//! is empty and counting is a branch on `None`.
//!
//! Every subscriber of a publish adds to its app's counters, from every worker thread at once,
//! so one shared atomic per counter would bounce its cache line between cores on each frame.
//! The counters are striped instead: each thread adds to its own cache line, and a scrape sums
//! the stripes. prometheus-client encodes them through a [`Collector`].
//!
//! prometheus-client writes every counter with a `_total` suffix; soketi's byte counters
//! (`socket_received_bytes` and the like) and its `horizontal_adapter_*` counters have none, so
//! [`Metrics::encode`] drops the suffix from those names again, and writes the bounds of the
//! `horizontal_adapter_resolve_time` histogram as prom-client does (`le="1"`, not `"1.0"`).
//! Dashboards written for soketi then work unchanged.
//!
//! The `horizontal_adapter_*` metrics count the requests a fleet's nodes send one another;
//! [`Metrics`] is the adapter's [`RequestMetrics`] sink. As in soketi, the resolve time is
//! observed in milliseconds against prom-client's default buckets (meant for seconds).

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

use dashmap::DashMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use soketi_adapter_core::RequestMetrics;

use crate::config::MetricsConfig;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A metric as soketi declares it: its name after the prefix, and its help text.
struct Spec {
    name: &'static str,
    help: &'static str,
}

const CONNECTED: Spec = Spec {
    name: "connected",
    help: "The number of currently connected sockets.",
};

/// soketi's counters, indexed by [`Count`]: the server's, then the horizontal adapter's from
/// [`ADAPTER_COUNTERS`] on, which soketi lists after [`RESOLVE_TIME`].
const COUNTERS: [Spec; 14] = [
    Spec {
        name: "new_connections_total",
        help: "Total amount of soketi connection requests.",
    },
    Spec {
        name: "new_disconnections_total",
        help: "Total amount of soketi disconnections.",
    },
    Spec {
        name: "socket_received_bytes",
        help: "Total amount of bytes that soketi received.",
    },
    Spec {
        name: "socket_transmitted_bytes",
        help: "Total amount of bytes that soketi transmitted.",
    },
    Spec {
        name: "ws_messages_received_total",
        help: "The total amount of WS messages received from connections by the server.",
    },
    Spec {
        name: "ws_messages_sent_total",
        help: "The total amount of WS messages sent to the connections from the server.",
    },
    Spec {
        name: "http_received_bytes",
        help: "Total amount of bytes that soketi's REST API received.",
    },
    Spec {
        name: "http_transmitted_bytes",
        help: "Total amount of bytes that soketi's REST API sent back.",
    },
    Spec {
        name: "http_calls_received_total",
        help: "Total amount of received REST API calls.",
    },
    Spec {
        name: "horizontal_adapter_resolved_promises",
        help: "The total amount of promises that were fulfilled by other nodes.",
    },
    Spec {
        name: "horizontal_adapter_uncomplete_promises",
        help: "The total amount of promises that were not fulfilled entirely by other nodes.",
    },
    Spec {
        name: "horizontal_adapter_sent_requests",
        help: "The total amount of sent requests to other nodes.",
    },
    Spec {
        name: "horizontal_adapter_received_requests",
        help: "The total amount of received requests from other nodes.",
    },
    Spec {
        name: "horizontal_adapter_received_responses",
        help: "The total amount of received responses from other nodes.",
    },
];

/// The index in [`COUNTERS`] of the first horizontal adapter counter.
const ADAPTER_COUNTERS: usize = Count::ResolvedPromises as usize;

/// The time a request to the other nodes took, in milliseconds.
const RESOLVE_TIME: Spec = Spec {
    name: "horizontal_adapter_resolve_time",
    help: "The average resolve time for requests to other nodes.",
};

/// The upper bounds of [`RESOLVE_TIME`]'s buckets: prom-client's defaults, which soketi keeps.
const RESOLVE_TIME_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The most apps that series are made for from a peer node's word alone (the app of a request
/// it sent), so that a broken peer cannot grow the registry without bound.
const MAX_APPS_FROM_PEERS: usize = 10_000;

/// Indexes of [`COUNTERS`].
#[derive(Clone, Copy)]
enum Count {
    NewConnections,
    NewDisconnections,
    SocketReceivedBytes,
    SocketTransmittedBytes,
    WsMessagesReceived,
    WsMessagesSent,
    HttpReceivedBytes,
    HttpTransmittedBytes,
    HttpCallsReceived,
    ResolvedPromises,
    UncompletePromises,
    SentRequests,
    ReceivedRequests,
    ReceivedResponses,
}

/// The suffix prometheus-client adds to every counter's name.
const TOTAL: &str = "_total";

/// The most stripes a counter has; past this many threads, threads share stripes.
const MAX_STRIPES: usize = 32;

/// The configured prefix cannot start a Prometheus metric name.
#[derive(Debug, thiserror::Error)]
#[error(
    "metrics.prometheus.prefix (SOKETI_METRICS_PROMETHEUS_PREFIX) is {0:?}, which cannot start \
     a Prometheus metric name; use letters, digits, `_` and `:`, not starting with a digit"
)]
pub struct InvalidPrefix(String);

/// The server's metrics; empty when `metrics.enabled` is off.
pub(crate) struct Metrics {
    inner: Option<Enabled>,
}

struct Enabled {
    registry: Registry,
    apps: Arc<Apps>,
}

/// Every app's counters, and what their series are named and labelled with.
#[derive(Debug)]
struct Apps {
    prefix: String,
    /// The main port, as the `port` label writes it.
    port: String,
    /// Stripes per counter: a power of two.
    stripes: usize,
    /// Only apps that exist get here (callers look the app up first), so it is bounded by the
    /// configured apps.
    by_id: DashMap<String, Arc<AppCounters>>,
}

impl Metrics {
    /// soketi's metrics from `config`, labelled with the main port `port`.
    pub(crate) fn new(config: &MetricsConfig, port: u16) -> Result<Self, InvalidPrefix> {
        if !config.enabled {
            return Ok(Self::disabled());
        }
        let prefix = config.prometheus.prefix.clone();
        if !is_metric_name(&format!("{prefix}{}", CONNECTED.name)) {
            return Err(InvalidPrefix(prefix));
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let apps = Arc::new(Apps {
            prefix,
            port: port.to_string(),
            stripes: threads.next_power_of_two().min(MAX_STRIPES),
            by_id: DashMap::new(),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(apps.clone()));
        Ok(Self {
            inner: Some(Enabled { registry, apps }),
        })
    }

    /// Metrics that count nothing.
    pub(crate) fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether metrics are collected and `/metrics` is served.
    pub(crate) fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The counters of the app `app_id`, for a connection or a request to hold. Call it only
    /// for apps that exist.
    pub(crate) fn app(&self, app_id: &str) -> AppMetrics {
        let Some(inner) = &self.inner else {
            return AppMetrics(None);
        };
        let apps = &inner.apps;
        if let Some(found) = apps.by_id.get(app_id) {
            return AppMetrics(Some(found.clone()));
        }
        let counters = apps
            .by_id
            .entry(app_id.to_owned())
            .or_insert_with(|| Arc::new(AppCounters::new(apps.stripes)))
            .clone();
        AppMetrics(Some(counters))
    }

    /// The counters of the app `app_id` that a peer node named, which may not exist: past
    /// [`MAX_APPS_FROM_PEERS`] apps, only those already counted.
    fn app_from_peer(&self, app_id: &str) -> AppMetrics {
        match &self.inner {
            Some(inner)
                if inner.apps.by_id.len() >= MAX_APPS_FROM_PEERS
                    && !inner.apps.by_id.contains_key(app_id) =>
            {
                AppMetrics(None)
            }
            _ => self.app(app_id),
        }
    }

    /// Every metric in the Prometheus text format (version 0.0.4), as soketi names them; empty
    /// when disabled.
    pub(crate) fn encode(&self) -> String {
        let Some(inner) = &self.inner else {
            return String::new();
        };
        let mut text = String::new();
        // Writing to a String cannot fail; a failure could only come from a label's encoder.
        if let Err(e) = prometheus_text::encode(&mut text, &inner.registry) {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        let unsuffixed: Vec<String> = COUNTERS
            .iter()
            .filter(|spec| !spec.name.ends_with(TOTAL))
            .map(|spec| format!("{}{}{TOTAL}", inner.apps.prefix, spec.name))
            .collect();
        let text = drop_total_suffix(&text, &unsuffixed);
        let bucket = format!("{}{}_bucket", inner.apps.prefix, RESOLVE_TIME.name);
        integer_bounds_as_js(&text, &bucket)
    }

    /// Every metric as prom-client's `getMetricsAsJSON` shapes it (soketi's `/metrics?json=1`);
    /// an empty array when disabled.
    pub(crate) fn to_json(&self) -> Value {
        let Some(inner) = &self.inner else {
            return json!([]);
        };
        let apps = &inner.apps;
        let snapshot = apps.snapshot();
        // soketi's port label is a number.
        let port: Value = apps.port.parse::<u16>().map_or(Value::Null, Value::from);
        let labels = |app_id: &str| json!({ "app_id": app_id, "port": port });
        let metric = |spec: &Spec, kind: &str, values: Vec<Value>| {
            json!({
                "help": spec.help,
                "name": format!("{}{}", apps.prefix, spec.name),
                "type": kind,
                "values": values,
                "aggregator": "sum",
            })
        };
        let mut out = Vec::with_capacity(2 + COUNTERS.len());
        let connected = snapshot
            .iter()
            .map(|(id, c)| json!({ "value": c.connected(), "labels": labels(id) }))
            .collect();
        out.push(metric(&CONNECTED, "gauge", connected));
        for (i, spec) in COUNTERS.iter().enumerate() {
            if i == ADAPTER_COUNTERS {
                out.push(metric(
                    &RESOLVE_TIME,
                    "histogram",
                    resolve_time_json(apps, &snapshot),
                ));
            }
            let values = snapshot
                .iter()
                .map(|(id, c)| json!({ "value": c.get(i), "labels": labels(id) }))
                .collect();
            out.push(metric(spec, "counter", values));
        }
        Value::Array(out)
    }
}

/// The values of [`RESOLVE_TIME`] as prom-client's `getMetricsAsJSON` lists a histogram's:
/// each app's cumulative buckets (`le` a number, `"+Inf"` last), then its sum and count.
fn resolve_time_json(apps: &Apps, snapshot: &[(String, Arc<AppCounters>)]) -> Vec<Value> {
    let name = format!("{}{}", apps.prefix, RESOLVE_TIME.name);
    let port: Value = apps.port.parse::<u16>().map_or(Value::Null, Value::from);
    let mut values = Vec::new();
    for (id, counters) in snapshot {
        let time = counters.resolve_time.lock().clone();
        let mut cumulative = 0;
        for (i, count) in time.buckets.iter().enumerate() {
            cumulative += count;
            let le = RESOLVE_TIME_BUCKETS
                .get(i)
                .map_or_else(|| json!("+Inf"), |bound| json!(bound));
            values.push(json!({
                "labels": { "le": le, "app_id": id, "port": port },
                "value": cumulative,
                "metricName": format!("{name}_bucket"),
            }));
        }
        let labels = json!({ "app_id": id, "port": port });
        values.push(
            json!({ "labels": labels, "value": time.sum, "metricName": format!("{name}_sum") }),
        );
        values.push(
            json!({ "labels": labels, "value": time.count, "metricName": format!("{name}_count") }),
        );
    }
    values
}

impl Apps {
    /// Every app's counters, sorted by app id so that the output is stable.
    fn snapshot(&self) -> Vec<(String, Arc<AppCounters>)> {
        let mut apps: Vec<_> = self
            .by_id
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        apps
    }
}

impl Collector for Apps {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        let labels = |app_id| [("app_id", app_id), ("port", self.port.as_str())];
        let name = format!("{}{}", self.prefix, CONNECTED.name);
        let mut metric =
            encoder.encode_descriptor(&name, CONNECTED.help, None, MetricType::Gauge)?;
        for (id, counters) in &snapshot {
            ConstGauge::new(counters.connected()).encode(metric.encode_family(&labels(id))?)?;
        }
        for (i, spec) in COUNTERS.iter().enumerate() {
            if i == ADAPTER_COUNTERS {
                self.encode_resolve_time(&mut encoder, &snapshot)?;
            }
            // The encoder adds `_total`; the names that have none get theirs removed again in
            // `Metrics::encode`.
            let short = spec.name.strip_suffix(TOTAL).unwrap_or(spec.name);
            let name = format!("{}{short}", self.prefix);
            let mut metric =
                encoder.encode_descriptor(&name, spec.help, None, MetricType::Counter)?;
            for (id, counters) in &snapshot {
                ConstCounter::new(counters.get(i)).encode(metric.encode_family(&labels(id))?)?;
            }
        }
        Ok(())
    }
}

impl Apps {
    fn encode_resolve_time(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        snapshot: &[(String, Arc<AppCounters>)],
    ) -> Result<(), std::fmt::Error> {
        let name = format!("{}{}", self.prefix, RESOLVE_TIME.name);
        let mut metric =
            encoder.encode_descriptor(&name, RESOLVE_TIME.help, None, MetricType::Histogram)?;
        for (id, counters) in snapshot {
            let time = counters.resolve_time.lock().clone();
            let buckets: Vec<(f64, u64)> = RESOLVE_TIME_BUCKETS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(time.buckets)
                .collect();
            let labels = [("app_id", id.as_str()), ("port", self.port.as_str())];
            metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(time.sum, time.count, &buckets, None)?;
        }
        Ok(())
    }
}

/// Whether `name` is a valid Prometheus metric name.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Rewrites the names in `unsuffixed` (each ending in `_total`) without their suffix, in the
/// `# HELP`, `# TYPE` and sample lines of an exposition, and leaves everything else alone,
/// label values included.
fn drop_total_suffix(text: &str, unsuffixed: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let start = if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            "# HELP ".len()
        } else {
            0
        };
        let rest = &line[start..];
        let end = rest.find([' ', '{']).unwrap_or(rest.len());
        let name = &rest[..end];
        if unsuffixed.iter().any(|u| u == name) {
            out.push_str(&line[..start]);
            out.push_str(&name[..name.len() - TOTAL.len()]);
            out.push_str(&rest[end..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Rewrites the integer bucket bounds of the `bucket` series from prometheus-client's `1.0` to
/// prom-client's `1`, so that a query naming a bucket (`le="1"`) finds it.
fn integer_bounds_as_js(text: &str, bucket: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let is_bucket = line
            .strip_prefix(bucket)
            .is_some_and(|rest| rest.starts_with('{'));
        let rewritten = is_bucket
            .then(|| {
                let start = line.find("le=\"")? + "le=\"".len();
                let len = line[start..].find('"')?;
                let bound = line[start..start + len].strip_suffix(".0")?;
                bound
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| format!("{}{bound}{}", &line[..start], &line[start + len..]))
            })
            .flatten();
        out.push_str(rewritten.as_deref().unwrap_or(line));
    }
    out
}

/// One app's [`RESOLVE_TIME`]: the observations per bucket (the last one past every bound),
/// their sum and their count.
#[derive(Clone, Default)]
struct ResolveTime {
    buckets: [u64; RESOLVE_TIME_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl ResolveTime {
    fn observe(&mut self, millis: f64) {
        let bucket = RESOLVE_TIME_BUCKETS
            .iter()
            .position(|bound| millis <= *bound)
            .unwrap_or(RESOLVE_TIME_BUCKETS.len());
        self.buckets[bucket] += 1;
        self.sum += millis;
        self.count += 1;
    }
}

/// One thread's share of an app's counters, alone on its cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Stripe([AtomicU64; COUNTERS.len()]);

/// The counters of one app.
struct AppCounters {
    /// Connections open now. Connections open and close far less often than they carry
    /// frames, so this one is not striped.
    connected: AtomicI64,
    stripes: Box<[Stripe]>,
    /// Requests to other nodes are rare next to frames: a lock is cheap enough.
    resolve_time: parking_lot::Mutex<ResolveTime>,
}

impl std::fmt::Debug for AppCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCounters")
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

impl AppCounters {
    fn new(stripes: usize) -> Self {
        Self {
            connected: AtomicI64::new(0),
            stripes: (0..stripes.max(1)).map(|_| Stripe::default()).collect(),
            resolve_time: parking_lot::Mutex::default(),
        }
    }

    /// The stripe of the calling thread.
    #[inline]
    fn stripe(&self) -> &Stripe {
        // `stripes` is a power of two, so the mask keeps the index in bounds.
        &self.stripes[thread_index() & (self.stripes.len() - 1)]
    }

    fn connected(&self) -> i64 {
        self.connected.load(Relaxed)
    }

    /// The sum of counter `i` over the stripes. Each stripe only grows, so successive sums do
    /// too, as Prometheus expects of a counter.
    fn get(&self, i: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[i].load(Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl Stripe {
    #[inline]
    fn add(&self, count: Count, by: u64) {
        self.0[count as usize].fetch_add(by, Relaxed);
    }
}

/// A number for the calling thread, given out in order, that picks its stripe.
#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| match index.get() {
        usize::MAX => {
            let new = NEXT.fetch_add(1, Relaxed) % MAX_STRIPES;
            index.set(new);
            new
        }
        known => known,
    })
}

/// The counters of one app, cheap to clone (a reference count), empty when metrics are
/// disabled.
#[derive(Clone, Default)]
pub(crate) struct AppMetrics(Option<Arc<AppCounters>>);

impl AppMetrics {
    /// A connection of the app was accepted.
    pub(crate) fn connected(&self) {
        if let Some(c) = &self.0 {
            c.connected.fetch_add(1, Relaxed);
            c.stripe().add(Count::NewConnections, 1);
        }
    }

    /// An accepted connection of the app closed.
    pub(crate) fn disconnected(&self) {
        if let Some(c) = &self.0 {
            c.connected.fetch_sub(1, Relaxed);
            c.stripe().add(Count::NewDisconnections, 1);
        }
    }

    /// A client sent a message of `bytes` bytes.
    #[inline]
    pub(crate) fn ws_received(&self, bytes: usize) {
        if let Some(c) = &self.0 {
            let stripe = c.stripe();
            stripe.add(Count::WsMessagesReceived, 1);
            stripe.add(Count::SocketReceivedBytes, bytes as u64);
        }
    }

    /// A message of `bytes` bytes was queued for a client.
    #[inline]
    pub(crate) fn ws_sent(&self, bytes: usize) {
        if let Some(c) = &self.0 {
            let stripe = c.stripe();
            stripe.add(Count::WsMessagesSent, 1);
            stripe.add(Count::SocketTransmittedBytes, bytes as u64);
        }
    }

    /// The HTTP API answered a call with a body of `sent` bytes to one of `received` bytes.
    pub(crate) fn http_call(&self, received: usize, sent: usize) {
        if let Some(c) = &self.0 {
            let stripe = c.stripe();
            stripe.add(Count::HttpCallsReceived, 1);
            stripe.add(Count::HttpReceivedBytes, received as u64);
            stripe.add(Count::HttpTransmittedBytes, sent as u64);
        }
    }
}

impl AppMetrics {
    fn add(&self, count: Count) {
        if let Some(c) = &self.0 {
            c.stripe().add(count, 1);
        }
    }
}

/// soketi's `horizontal_adapter_*` metrics, counted by the fleet's adapter.
impl RequestMetrics for Metrics {
    fn request_sent(&self, app_id: &str) {
        self.app(app_id).add(Count::SentRequests);
    }

    fn request_received(&self, app_id: &str) {
        self.app_from_peer(app_id).add(Count::ReceivedRequests);
    }

    fn response_received(&self, app_id: &str) {
        self.app(app_id).add(Count::ReceivedResponses);
    }

    fn request_resolved(&self, app_id: &str, complete: bool, elapsed: std::time::Duration) {
        let app = self.app(app_id);
        app.add(if complete {
            Count::ResolvedPromises
        } else {
            Count::UncompletePromises
        });
        if let Some(c) = &app.0 {
            c.resolve_time
                .lock()
                .observe(elapsed.as_secs_f64() * 1000.0);
        }
    }
}
