//! A [`Transport`] over NATS for [`soketi_adapter_core::HorizontalAdapter`]: the fleet of
//! soketi-server nodes that share NATS servers, with soketi's `ADAPTER_NATS_*` settings.
//!
//! Every node subscribes to the fleet's subject (`<prefix>soketi.nats-adapter`) and to its own
//! (`<prefix>soketi.nats-adapter.<node id>`) for answers. Frames, heartbeats and liveness are
//! the [`Membership`] that the Redis transport uses too; the NATS client reconnects by itself
//! and buffers what is published meanwhile.
//!
//! This crate knows nothing of the Pusher protocol; it carries bytes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use soketi_adapter_core::membership::{Kind, Membership};
use soketi_adapter_core::{AdapterError, Transport, TransportEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How to reach NATS and how the fleet checks its members.
#[derive(Clone, Debug)]
pub struct NatsTransportConfig {
    /// Servers, `host:port` or `nats://` URLs.
    pub servers: Vec<String>,
    /// User and password, if any.
    pub user_password: Option<(String, String)>,
    /// Token, if any.
    pub token: Option<String>,
    /// Subject prefix; nodes with another prefix never meet.
    pub prefix: String,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence after which a node is gone.
    pub node_timeout: Duration,
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {servers}: {message}")]
pub struct NatsTransportError {
    servers: String,
    message: String,
}

/// A node of a fleet that meets in NATS.
pub struct NatsTransport {
    client: async_nats::Client,
    membership: Arc<Membership>,
    fleet_subject: String,
    node_subject_prefix: String,
    events: Mutex<Option<mpsc::UnboundedReceiver<TransportEvent>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl NatsTransport {
    /// Connects and joins the fleet.
    ///
    /// NATS servers that refuse the credentials stop start-up: retrying would not help, and
    /// the node would run alone without a fleet. Servers that cannot be reached within the
    /// connection timeout only delay the fleet: the client keeps trying in the background.
    pub async fn start(config: NatsTransportConfig) -> Result<Arc<Self>, NatsTransportError> {
        let fail = |message: String| NatsTransportError {
            servers: config.servers.join(","),
            message,
        };
        let options = || {
            let mut options =
                async_nats::ConnectOptions::new().connection_timeout(config.connect_timeout);
            if let Some((user, password)) = &config.user_password {
                options = options.user_and_password(user.clone(), password.clone());
            }
            if let Some(token) = &config.token {
                options = options.token(token.clone());
            }
            options
        };
        let servers: Vec<async_nats::ServerAddr> = config
            .servers
            .iter()
            .map(|s| s.parse().map_err(|e| fail(format!("{s}: {e}"))))
            .collect::<Result<_, _>>()?;
        let first =
            tokio::time::timeout(config.connect_timeout, options().connect(servers.clone())).await;
        let client = match first {
            Ok(Ok(client)) => client,
            Ok(Err(e)) if is_refusal(e.kind()) => {
                return Err(fail(format!(
                    "{e} (check ADAPTER_NATS_USER and ADAPTER_NATS_PASSWORD, or ADAPTER_NATS_TOKEN)"
                )));
            }
            away => {
                let why = match away {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no connection within {:?}", config.connect_timeout),
                };
                tracing::warn!(
                    error = why,
                    "cannot reach NATS at start-up; this node works alone until it can"
                );
                options()
                    .retry_on_initial_connect()
                    .connect(servers)
                    .await
                    .map_err(|e| fail(e.to_string()))?
            }
        };
        let node_id = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let fleet_subject = format!("{}soketi.nats-adapter", config.prefix);
        let node_subject_prefix = format!("{fleet_subject}.");
        let (membership, events) = Membership::new(node_id.clone());
        let membership = Arc::new(membership);
        let mut subscriptions = Vec::new();
        for subject in [
            fleet_subject.clone(),
            format!("{node_subject_prefix}{node_id}"),
        ] {
            subscriptions.push(
                client
                    .subscribe(subject)
                    .await
                    .map_err(|e| fail(e.to_string()))?,
            );
        }
        membership.set_listening(true);
        let mut tasks = Vec::new();
        for mut subscription in subscriptions {
            let membership = membership.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(message) = subscription.next().await {
                    membership.receive(&message.payload);
                }
            }));
        }
        tasks.push(tokio::spawn(heartbeat_loop(
            client.clone(),
            membership.clone(),
            fleet_subject.clone(),
            config.heartbeat_interval,
            config.node_timeout,
        )));
        Ok(Arc::new(Self {
            client,
            membership,
            fleet_subject,
            node_subject_prefix,
            events: Mutex::new(Some(events)),
            tasks,
        }))
    }

    async fn send(&self, subject: String, kind: Kind, payload: &[u8]) -> Result<(), AdapterError> {
        self.client
            .publish(subject, self.membership.frame(kind, payload))
            .await
            .map_err(|e| AdapterError::Transport(format!("NATS publish: {e}")))
    }
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Whether a connection error says that the servers refused this node, rather than that they
/// are away.
fn is_refusal(kind: async_nats::ConnectErrorKind) -> bool {
    use async_nats::ConnectErrorKind;
    matches!(
        kind,
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication
    )
}

async fn heartbeat_loop(
    client: async_nats::Client,
    membership: Arc<Membership>,
    subject: String,
    interval: Duration,
    timeout: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        // While NATS is away this node hears nobody: it declares nobody dead.
        membership.set_listening(connected);
        if connected {
            let _ = client
                .publish(subject.clone(), membership.frame(Kind::Heartbeat, &[]))
                .await;
        }
        membership.expire(timeout);
    }
}

#[async_trait]
impl Transport for NatsTransport {
    fn node_id(&self) -> &str {
        self.membership.node_id()
    }

    async fn publish(&self, payload: Bytes) -> Result<(), AdapterError> {
        self.send(self.fleet_subject.clone(), Kind::Message, &payload)
            .await
    }

    async fn send_to(&self, node_id: &str, payload: Bytes) -> Result<(), AdapterError> {
        let subject = format!("{}{node_id}", self.node_subject_prefix);
        self.send(subject, Kind::Message, &payload).await
    }

    fn live_nodes(&self) -> Vec<String> {
        self.membership.live_nodes()
    }

    fn events(&self) -> Option<mpsc::UnboundedReceiver<TransportEvent>> {
        self.events.lock().take()
    }

    async fn leave(&self) -> Result<(), AdapterError> {
        self.send(self.fleet_subject.clone(), Kind::Goodbye, &[])
            .await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
        Ok(())
    }
}
