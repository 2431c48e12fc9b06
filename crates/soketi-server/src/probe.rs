//! The client side of the readiness probe, behind `soketi-server health`: it asks the operations
//! server's `GET /ready` and says whether the answer was 200.
//!
//! A container's health check runs inside its image, and a slim runtime image has no curl; the
//! binary that serves `/ready` can ask it itself.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::Config;

/// Why the server did not answer ready.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL cannot be requested.
    #[error("invalid URL {url:?}: {message}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// No connection, or the connection broke before an answer.
    #[error("{url} is unreachable: {message}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The cause.
        message: String,
    },
    /// No answer within the deadline.
    #[error("{url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// An answer other than 200: 503 while the server drains at shutdown.
    #[error("{url} answered {status}")]
    NotReady {
        /// The URL asked.
        url: String,
        /// The status of the answer.
        status: StatusCode,
    },
}

/// The `/ready` URL of the operations server that `config` describes, as seen from the same
/// host: a server bound to every interface (`0.0.0.0`, `::`) is asked on loopback.
pub fn ready_url(config: &Config) -> String {
    let host = config.metrics.host.trim();
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => "[::1]".to_owned(),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        Ok(IpAddr::V4(ip)) => ip.to_string(),
        Err(_) if host.is_empty() => "127.0.0.1".to_owned(),
        Err(_) => host.to_owned(),
    };
    format!("http://{host}:{}/ready", config.metrics.port)
}

/// Asks `url` (plain `http://`, as the operations server speaks) and succeeds on 200 within
/// `timeout`.
pub async fn ready(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let invalid = |message: String| ProbeError::InvalidUrl {
        url: url.to_owned(),
        message,
    };
    let uri: Uri = url.parse().map_err(|e| invalid(format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid("the operations server speaks http://".to_owned()));
    }
    let request = Request::get(uri)
        .body(Empty::<Bytes>::new())
        .map_err(|e| invalid(e.to_string()))?;
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| ProbeError::Timeout {
            url: url.to_owned(),
            timeout,
        })?
        .map_err(|e| ProbeError::Unreachable {
            url: url.to_owned(),
            message: error_chain(&e),
        })?;
    match response.status() {
        StatusCode::OK => Ok(()),
        status => Err(ProbeError::NotReady {
            url: url.to_owned(),
            status,
        }),
    }
}

/// The error and its causes on one line: hyper-util's own message alone ("client error
/// (Connect)") does not say what happened.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
