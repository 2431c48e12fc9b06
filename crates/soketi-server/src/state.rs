//! What every connection and request shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use soketi_adapter_core::{Adapter, Cache, RateLimiter, Transport};

use crate::apps::AppManager;
use crate::client_ip::{Cidr, IpLimiter};
use crate::config::Config;
use crate::connection::{Connection, Counters};
use crate::console::Console;
use crate::flusher::Flushers;
use crate::metrics::Metrics;
use crate::webhooks::Webhooks;

/// The server's shared state.
pub(crate) struct State {
    pub(crate) config: Config,
    pub(crate) apps: Arc<dyn AppManager>,
    pub(crate) adapter: Arc<dyn Adapter>,
    pub(crate) rate_limiter: Arc<dyn RateLimiter>,
    /// The last events of cache channels.
    pub(crate) cache: Arc<dyn Cache>,
    /// The transport of a horizontal adapter, for `/cluster` and for leaving at shutdown.
    pub(crate) transport: Option<Arc<dyn Transport>>,
    /// Webhooks of every app.
    pub(crate) webhooks: Arc<Webhooks>,
    /// soketi's Prometheus metrics, per app.
    pub(crate) metrics: Arc<Metrics>,
    /// The live console's taps.
    pub(crate) console: Arc<Console>,
    /// Counts of notable events, for operators.
    pub(crate) counters: Arc<Counters>,
    /// Every open connection of this node, for the idle sweep and for shutdown.
    pub(crate) connections: DashMap<u64, Arc<Connection>>,
    /// What writes the connections' queued frames.
    pub(crate) flushers: Flushers<Connection>,
    /// The per-address caps on WebSocket connections.
    pub(crate) ip_limiter: IpLimiter,
    /// The proxies whose forwarding headers name the client's address.
    pub(crate) trusted_proxies: Vec<Cidr>,
    next_connection: AtomicU64,
    requests_in_flight: AtomicU64,
    closing: AtomicBool,
    started: Instant,
}

/// The drivers a server runs with, as `start` picks them from the configuration.
pub(crate) struct Services {
    pub(crate) apps: Arc<dyn AppManager>,
    pub(crate) adapter: Arc<dyn Adapter>,
    pub(crate) rate_limiter: Arc<dyn RateLimiter>,
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) transport: Option<Arc<dyn Transport>>,
    pub(crate) webhooks: Arc<Webhooks>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) console: Arc<Console>,
    pub(crate) trusted_proxies: Vec<Cidr>,
}

impl State {
    pub(crate) fn new(config: Config, services: Services) -> Self {
        let Services {
            apps,
            adapter,
            rate_limiter,
            cache,
            transport,
            webhooks,
            metrics,
            console,
            trusted_proxies,
        } = services;
        let ip_limiter = IpLimiter::new(
            config.ip_limits.max_connections,
            config.ip_limits.max_connects_per_sec,
        );
        Self {
            config,
            apps,
            adapter,
            rate_limiter,
            cache,
            transport,
            webhooks,
            metrics,
            console,
            counters: Arc::default(),
            connections: DashMap::new(),
            flushers: Flushers::new(
                tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers()),
            ),
            ip_limiter,
            trusted_proxies,
            next_connection: AtomicU64::new(1),
            requests_in_flight: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// A number unique to each connection of this process.
    pub(crate) fn next_connection_key(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Milliseconds since the server started; a cheap monotonic clock for activity tracking.
    pub(crate) fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether the server is shutting down.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Counts an HTTP request until the guard drops.
    pub(crate) fn request_started(&self) -> InFlight<'_> {
        self.requests_in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    /// HTTP requests being answered.
    pub(crate) fn requests_in_flight(&self) -> u64 {
        self.requests_in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn set_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }
}

/// Marks an HTTP request in flight; see [`State::request_started`].
pub(crate) struct InFlight<'a>(&'a State);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.requests_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Seconds since the Unix epoch, for HTTP API signatures.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
