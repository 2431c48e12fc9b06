//! The soketi server: WebSocket and HTTP API of the Pusher Channels protocol 7 over hyper,
//! wired to an [`soketi_adapter_core::Adapter`] and an [`apps::AppManager`]. fastwebsockets
//! answers the upgrade handshake; the frames are read and written with `soketi_protocol::ws`.
//!
//! The entry point is [`start`], which binds the main port and the operations port (metrics and
//! probes), spawns the server on the current tokio runtime and returns a [`RunningServer`]; the
//! binary and the tests both use it, so that a whole server can run in-process on port 0. All
//! wiring lives here; `main.rs` only parses the command line.
//!
//! This crate is the top of the dependency graph: nothing depends on it.

pub mod apps;
mod client_ip;
pub mod config;
mod connection;
mod console;
mod cors;
mod error;
mod flusher;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod memory;
mod metrics;
mod ops;
pub mod probe;
mod session;
mod state;
mod subscription_count;
mod tls;
mod webhooks;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use soketi_adapter_cluster::ClusterTransport;
use soketi_adapter_core::{
    Adapter, Cache, HorizontalAdapter, LocalAdapter, LocalRateLimiter, MemoryCache, Queue,
    RateLimiter, SyncQueue, Transport,
};
use soketi_adapter_nats::NatsTransport;
use soketi_adapter_redis::{RedisCache, RedisQueue, RedisRateLimiter, RedisTransport};
use soketi_aws::sqs::SqsClient;
use soketi_aws::{
    AwsClient, Credentials, CredentialsProvider, Endpoint, Service, SqsQueue, SqsSettings,
};
use soketi_channels::Outbox;
use soketi_protocol::CloseCode;
use soketi_ratelimit_cluster::ClusterRateLimiter;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::apps::{
    AppManager, AppStoreError, ArrayAppManager, CachedAppManager, DynamoDbAppManager,
    SqlAppManager, SqlBackend,
};
pub use crate::config::Config;
use crate::config::{
    AdapterDriver, AppManagerDriver, CacheDriver, ConfigError, Mode, QueueDriver,
    RateLimiterDriver, RedisUser,
};
use crate::console::Console;
pub use crate::error::StartError;
pub use crate::metrics::InvalidPrefix;
use crate::metrics::Metrics;
use crate::state::{Services, State};
use crate::webhooks::{FleetDepartures, Webhooks};

/// The adapter the configuration names, and the transport of a horizontal one.
struct Adapters {
    adapter: Arc<dyn Adapter>,
    horizontal: Option<Arc<HorizontalAdapter>>,
    transport: Option<Arc<dyn Transport>>,
    cache: Arc<dyn Cache>,
}

async fn adapter(config: &Config) -> Result<Adapters, StartError> {
    let cache: Arc<dyn Cache> = match config.cache.driver {
        CacheDriver::Redis => {
            let endpoint = config.redis_endpoint(RedisUser::Cache)?;
            soketi_adapter_redis::check_endpoint(&endpoint, "cache")
                .await
                .map_err(StartError::RedisCache)?;
            Arc::new(
                RedisCache::with_endpoint(&endpoint, &config.redis_key_prefix(RedisUser::Cache)?)
                    .map_err(StartError::RedisCache)?,
            )
        }
        // `Config::check_runnable` refuses the drivers this build does not provide.
        _ => {
            let memory = Arc::new(MemoryCache::new());
            tokio::spawn(purge_memory_cache(Arc::downgrade(&memory)));
            memory
        }
    };
    let local = LocalAdapter::new(cache.clone(), config.cache_ttl());
    let transport: Arc<dyn Transport> = match config.adapter.driver {
        AdapterDriver::Redis => RedisTransport::start(config.redis_transport_config()?).await?,
        AdapterDriver::Nats => NatsTransport::start(config.nats_transport_config()).await?,
        AdapterDriver::Cluster => {
            ClusterTransport::start(config.cluster_transport_config()).await?
        }
        AdapterDriver::Local => {
            return Ok(Adapters {
                adapter: Arc::new(local),
                horizontal: None,
                transport: None,
                cache,
            });
        }
    };
    tracing::info!(
        node = transport.node_id(),
        driver = config.adapter.driver.as_str(),
        "joining the fleet"
    );
    let timeout = config.requests_timeout().unwrap_or_default();
    let adapter = HorizontalAdapter::start(local, transport.clone(), timeout);
    Ok(Adapters {
        adapter: adapter.clone(),
        horizontal: Some(adapter),
        transport: Some(transport),
        cache,
    })
}

/// The webhook queue the configuration names, started with the sender, unless this process
/// is a server without queue processing.
fn webhooks(
    config: &Config,
    adapter: Arc<dyn Adapter>,
    apps: Arc<dyn AppManager>,
    console: Arc<Console>,
) -> Result<Arc<Webhooks>, StartError> {
    let policy = config.retry_policy();
    let queue: Arc<dyn Queue> = match config.queue.driver {
        QueueDriver::Redis => Arc::new(
            RedisQueue::with_endpoint(
                &config.redis_endpoint(RedisUser::Queue)?,
                &config.redis_key_prefix(RedisUser::Queue)?,
                "webhooks",
                policy,
                config.queue.redis.concurrency as usize,
            )
            .map_err(StartError::RedisQueue)?,
        ),
        QueueDriver::Sqs => Arc::new(sqs_queue(config)?),
        QueueDriver::Sync => Arc::new(SyncQueue::new(policy)),
    };
    if config.mode != Mode::Server || config.queue.driver == QueueDriver::Sync {
        let sender = webhooks::Sender::new(config.webhook_timeout(), apps, console)
            .map_err(StartError::WebhookClient)?;
        queue.start(Arc::new(sender));
    }
    Ok(Webhooks::new(queue, adapter, config.webhook_settings()))
}

/// The SQS webhook queue of `queue.sqs`.
fn sqs_queue(config: &Config) -> Result<SqsQueue, StartError> {
    let sqs = &config.queue.sqs;
    let options = config.sqs_client_options()?;
    let region = options.region.as_deref().unwrap_or(&sqs.region);
    let failed = |e: &dyn std::fmt::Display| StartError::SqsQueue(e.to_string());
    let http = soketi_aws::http_client().map_err(StartError::WebhookClient)?;
    let configured = options.endpoint.as_deref().or(sqs.endpoint.as_deref());
    let endpoint = Endpoint::resolve(Service::Sqs, region, configured, |name| {
        std::env::var(name).ok()
    })
    .map_err(|e| failed(&e))?;
    let credentials = Arc::new(match options.credentials {
        Some((access_key_id, secret_access_key, session_token)) => {
            CredentialsProvider::fixed(Credentials {
                access_key_id,
                secret_access_key,
                session_token,
                expires: None,
            })
        }
        None => CredentialsProvider::from_process_env(http.clone()),
    });
    // A receive waits up to 20 s for a message; each call gets that and the webhook's time.
    let timeout = Duration::from_secs(25) + config.webhook_timeout();
    let client = AwsClient::new(http, credentials, Service::Sqs, region, endpoint, timeout);
    Ok(SqsQueue::new(
        SqsClient::new(client, &sqs.queue_url),
        SqsSettings {
            batch_size: sqs.batch_size,
            process_batch: sqs.process_batch,
            polling_wait: Duration::from_millis(sqs.polling_wait_time_ms),
            // Hidden while it runs: as long as the receive's jobs may take, one after another
            // unless `processBatch`, with room to spare. Not much longer: a message received by
            // a process that stopped (its last long poll) comes back only after this.
            visibility: (config.webhook_timeout() + Duration::from_secs(5))
                * if sqs.process_batch { 1 } else { sqs.batch_size },
            retry: config.retry_policy(),
        },
    ))
}

/// The app manager the configuration names, behind a cache when `appManager.cache.enabled`.
fn app_manager(config: &Config) -> Result<Arc<dyn AppManager>, AppStoreError> {
    let pool = config.sql_pool_size();
    let store: Arc<dyn AppManager> = match config.app_manager.driver {
        AppManagerDriver::Postgres => Arc::new(SqlAppManager::new(
            SqlBackend::Postgres,
            &config.postgres_url(),
            &config.app_manager.postgres.table,
            config.limits(),
            pool,
        )?),
        AppManagerDriver::Mysql => Arc::new(SqlAppManager::new(
            SqlBackend::Mysql,
            &config.mysql_url(),
            &config.app_manager.mysql.table,
            config.limits(),
            pool,
        )?),
        AppManagerDriver::Dynamodb => {
            let dynamodb = &config.app_manager.dynamodb;
            Arc::new(DynamoDbAppManager::new(
                &dynamodb.table,
                &dynamodb.region,
                dynamodb.endpoint.as_deref(),
                config.limits(),
            )?)
        }
        AppManagerDriver::Array => return Ok(Arc::new(ArrayAppManager::new(config.apps()))),
    };
    Ok(if config.app_manager.cache.enabled {
        Arc::new(CachedAppManager::new(store, config.app_cache_ttl()))
    } else {
        store
    })
}

/// Checks that the Redis of the webhook queue and of the rate limiter, when they use Redis,
/// accepts them: wrong credentials or a failed TLS handshake stop start-up, as they do for the
/// adapter and the cache, instead of failing every webhook or request later.
async fn check_redis_services(config: &Config) -> Result<(), StartError> {
    if config.queue.driver == QueueDriver::Redis {
        soketi_adapter_redis::check_endpoint(
            &config.redis_endpoint(RedisUser::Queue)?,
            "webhook queue",
        )
        .await
        .map_err(StartError::RedisQueue)?;
    }
    if config.rate_limiter.driver == RateLimiterDriver::Redis {
        soketi_adapter_redis::check_endpoint(
            &config.redis_endpoint(RedisUser::RateLimiter)?,
            "rate limiter",
        )
        .await
        .map_err(StartError::RedisRateLimiter)?;
    }
    Ok(())
}

/// The rate limiter the configuration names.
fn rate_limiter(
    config: &Config,
    horizontal: Option<&Arc<HorizontalAdapter>>,
) -> Result<Arc<dyn RateLimiter>, StartError> {
    match (config.rate_limiter.driver, horizontal) {
        (RateLimiterDriver::Cluster, Some(adapter)) => Ok(ClusterRateLimiter::new(adapter.clone())),
        (RateLimiterDriver::Cluster, None) => Err(ConfigError::RateLimiterWithoutFleet.into()),
        (RateLimiterDriver::Redis, _) => Ok(Arc::new(
            RedisRateLimiter::with_endpoint(
                &config.redis_endpoint(RedisUser::RateLimiter)?,
                &config.redis_key_prefix(RedisUser::RateLimiter)?,
            )
            .map_err(StartError::RedisRateLimiter)?,
        )),
        (RateLimiterDriver::Local, _) => Ok(Arc::new(LocalRateLimiter::new())),
    }
}

/// Binds the main port; with `reuse_port`, several processes of one host may share it and the
/// kernel spreads new connections between them.
async fn bind_main(address: &str, reuse_port: bool) -> std::io::Result<TcpListener> {
    if !reuse_port {
        return TcpListener::bind(address).await;
    }
    let addr = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the host resolves to nothing",
            )
        })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Drops expired cache entries every minute, for as long as the cache lives.
async fn purge_memory_cache(cache: std::sync::Weak<MemoryCache>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    loop {
        ticks.tick().await;
        match cache.upgrade() {
            Some(cache) => cache.purge(),
            None => return,
        }
    }
}

/// The services the configuration names, wired into the state that connections and requests
/// share, and the fleet's transport when there is one; `port` is the main port, which the
/// metrics report.
async fn build_state(
    config: Config,
    port: u16,
) -> Result<(Arc<State>, Option<Arc<dyn Transport>>), StartError> {
    let trusted_proxies = config.trusted_proxies()?;
    let metrics = Arc::new(Metrics::new(&config.metrics, port)?);
    let apps = app_manager(&config)?;
    let Adapters {
        adapter,
        horizontal,
        transport,
        cache,
    } = adapter(&config).await?;
    check_redis_services(&config).await?;
    let rate_limiter = rate_limiter(&config, horizontal.as_ref())?;
    let console = Console::new(
        transport
            .as_ref()
            .map_or_else(|| "local".to_owned(), |t| t.node_id().to_owned()),
    );
    if let Some(fleet) = &horizontal {
        // Ends with the console, which the state holds until the server is gone.
        drop(console.join_fleet(fleet.clone()));
    }
    let webhooks = webhooks(&config, adapter.clone(), apps.clone(), console.clone())?;
    adapter.set_departure_sink(Arc::new(FleetDepartures::new(
        webhooks.clone(),
        apps.clone(),
    )));
    if metrics.is_enabled() {
        adapter.set_request_metrics(metrics.clone());
    }
    tokio::spawn(subscription_count::run(
        Arc::downgrade(&adapter),
        Arc::downgrade(&apps),
        Arc::downgrade(&webhooks),
    ));
    let state = Arc::new(State::new(
        config,
        Services {
            apps,
            adapter,
            rate_limiter,
            cache,
            transport: transport.clone(),
            webhooks,
            metrics,
            console,
            trusted_proxies,
        },
    ));
    Ok((state, transport))
}

/// A server that is accepting connections.
pub struct RunningServer {
    local_addr: SocketAddr,
    metrics_addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    transport: Option<Arc<dyn Transport>>,
}

/// Binds the configured addresses, the main one and the operations server's, and starts
/// serving on the current tokio runtime.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    for notice in config.no_effect_notices() {
        tracing::warn!("{notice}");
    }
    let tls = tls::acceptor(&config.ssl)?;
    let address = config.bind_address();
    let listener = bind_main(&address, config.reuse_port)
        .await
        .map_err(|source| StartError::Bind {
            address: address.clone(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        address: address.clone(),
        source,
    })?;
    let metrics_address = config.metrics_address();
    let metrics_bind = |source| StartError::MetricsBind {
        address: metrics_address.clone(),
        source,
    };
    let ops_listener = TcpListener::bind(&metrics_address)
        .await
        .map_err(metrics_bind)?;
    let metrics_addr = ops_listener.local_addr().map_err(metrics_bind)?;
    let (state, transport) = build_state(config, local_addr.port()).await?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(accept_loop(listener, tls, state.clone(), stopped.clone())),
        tokio::spawn(activity_sweep(state.clone(), stopped)),
        // The operations server ignores `stop`: it answers `/ready` with 503 while connections
        // drain, and ends with the other tasks at the end of shutdown.
        tokio::spawn(ops::serve(ops_listener, state.clone())),
    ];
    tasks.extend(state.flushers.spawn());
    Ok(RunningServer {
        local_addr,
        metrics_addr,
        state,
        stop,
        tasks,
        transport,
    })
}

impl RunningServer {
    /// How many connections were closed because they did not read fast enough.
    pub fn slow_connections_closed(&self) -> u64 {
        self.state
            .counters
            .slow_closes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The address the server listens on; with port 0, the port the system picked.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the operations server (probes, `/usage`, `/metrics`); with port 0, the
    /// port the system picked.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Shuts down gracefully: `/ready` turns 503 and new WebSocket connections are refused with
    /// 4200, every client is asked to reconnect elsewhere (4200), and the server waits up to the
    /// grace period for the connections to close and the HTTP requests in flight to finish.
    pub async fn shutdown(self) {
        self.state.set_closing();
        let connections: Vec<_> = self
            .state
            .connections
            .iter()
            .map(|c| c.value().clone())
            .collect();
        for conn in connections {
            conn.close(
                CloseCode::SERVER_CLOSING,
                "Server is closing. Please reconnect shortly.",
            );
        }
        let grace = Duration::from_millis(self.state.config.shutdown_grace_period);
        let deadline = tokio::time::Instant::now() + grace;
        while (!self.state.connections.is_empty() || self.state.requests_in_flight() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The connections' leaves left `channel_vacated` and `member_removed` waiting out the
        // vacated delay: decided and queued before the node leaves the fleet, which can still
        // be asked whether the channel or user is back elsewhere, so that the process takes
        // none of them with it.
        let decided = self.state.webhooks.drain(WEBHOOK_DRAIN_TIMEOUT).await;
        if decided > 0 {
            tracing::info!(decided, "delayed webhooks decided at shutdown");
        }
        if self.transport.is_some() {
            // The others drop this node's members and connections at once instead of after a
            // timeout.
            if let Err(e) = self.state.adapter.leave_fleet().await {
                tracing::warn!(error = %e, "could not say goodbye to the fleet");
            }
        }
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
        // Once the tasks are gone, so are their listeners: the ports are closed on return.
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Running out of file descriptors must not end the server; wait a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let stopped = stopped.clone();
        match tls.clone() {
            None => {
                tokio::spawn(serve_http(TokioIo::new(stream), peer, state, stopped));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            serve_http(TokioIo::new(stream), peer, state, stopped).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// How long a stopping server waits, beyond the vacated delay, for its last webhooks to reach
/// the queue.
const WEBHOOK_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a client may take to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 with upgrades on one connection, until it closes or the server stops.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    state: Arc<State>,
    mut stopped: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let builder = http::server_builder(&state.config);
    let service = service_fn(move |req| http::handle(state.clone(), peer, req));
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = stopped.changed() => {
            // Let the request in flight finish, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// Pings quiet clients and closes those that do not answer, in one pass over every connection
/// rather than a timer per connection.
async fn activity_sweep(state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let activity_ms = state.config.activity_timeout().as_millis() as u64;
    let pong_ms = state.config.pong_timeout().as_millis() as u64;
    let sign_in_ms = state.config.user_authentication_timeout;
    let shortest = activity_ms.min(pong_ms).min(sign_in_ms.max(1));
    let tick = Duration::from_millis((shortest / 4).clamp(50, 1000));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stopped.changed() => return,
        }
        let now = state.uptime_ms();
        state.ip_limiter.sweep(now / 1000);
        for conn in state.connections.iter() {
            conn.check_activity(now, activity_ms, pong_ms);
            conn.check_sign_in(now);
        }
    }
}
