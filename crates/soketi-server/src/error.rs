//! The server's errors: why it could not start, and the HTTP API's errors, mapped to a status
//! and Pusher's JSON body in one place.

use bytes::Bytes;
use http_body_util::Full;
use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use soketi_adapter_cluster::ClusterError;
use soketi_adapter_core::{AdapterError, Decision};
use soketi_adapter_nats::NatsTransportError;
use soketi_adapter_redis::RedisTransportError;

use crate::apps::AppStoreError;
use crate::config::ConfigError;
use crate::metrics::InvalidPrefix;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot run.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening socket could not be bound.
    #[error("could not listen on {address}")]
    Bind {
        /// The address from the configuration.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The Redis adapter could not join the fleet.
    #[error("could not start the Redis adapter: {0}")]
    RedisTransport(#[from] RedisTransportError),
    /// The NATS adapter could not join the fleet.
    #[error("could not start the NATS adapter: {0}")]
    NatsTransport(#[from] NatsTransportError),
    /// The cluster adapter could not open its sockets.
    #[error("could not start the cluster adapter: {0}")]
    ClusterTransport(#[from] ClusterError),
    /// The Redis cache could not be set up.
    #[error("could not start the Redis cache: {0}")]
    RedisCache(#[source] RedisTransportError),
    /// The Redis webhook queue could not be set up.
    #[error("could not start the Redis webhook queue: {0}")]
    RedisQueue(#[source] RedisTransportError),
    /// The SQS webhook queue could not be set up.
    #[error("could not start the SQS webhook queue: {0}")]
    SqsQueue(String),
    /// The Redis rate limiter could not be set up.
    #[error("could not start the Redis rate limiter: {0}")]
    RedisRateLimiter(#[source] RedisTransportError),
    /// The app manager could not be set up.
    #[error("could not start the app manager: {0}")]
    AppManager(#[from] AppStoreError),
    /// The HTTPS client that sends webhooks could not be set up.
    #[error("could not start the webhook client: {0}")]
    WebhookClient(#[source] tokio_rustls::rustls::Error),
    /// The TLS certificate or key cannot be used.
    #[error("invalid TLS setting {option}: {message}")]
    Tls {
        /// The option at fault.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The operations server (probes and metrics) could not bind its socket.
    #[error(
        "could not listen on {address} for the operations server (metrics.host and \
         metrics.port, SOKETI_METRICS_HOST and SOKETI_METRICS_SERVER_PORT)"
    )]
    MetricsBind {
        /// The address from the configuration.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The metrics cannot be named with the configured prefix.
    #[error(transparent)]
    MetricsPrefix(#[from] InvalidPrefix),
}

/// An HTTP API error: a status and a message, sent as `{"error": message, "code": status}`.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    budget: Option<Decision>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            budget: None,
        }
    }

    /// 429, with the budget's headers, in soketi's words.
    pub(crate) fn too_many_requests(decision: &Decision) -> Self {
        Self {
            budget: Some(*decision),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests.")
        }
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "error": self.message, "code": self.status.as_u16() });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(decision) = &self.budget {
            rate_limit_headers(response.headers_mut(), decision);
        }
        response
    }
}

/// soketi's rate limit headers: the budget, what is left, and when to retry (seconds).
pub(crate) fn rate_limit_headers(headers: &mut HeaderMap, decision: &Decision) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-ratelimit-limit", decision.limit.to_string());
    set("x-ratelimit-remaining", decision.remaining.to_string());
    if !decision.allowed {
        set(
            "retry-after",
            decision
                .retry_after
                .as_secs_f64()
                .ceil()
                .max(1.0)
                .to_string(),
        );
    }
}

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        tracing::warn!(error = %e, "adapter error in the HTTP API");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}
