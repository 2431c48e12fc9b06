//! The sender of queued webhooks: an HTTP client that posts each job as it was signed, and each
//! closed batch signed with its app's secret as the app is now, and says why one was not
//! delivered without putting its URL's secrets in the logs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use soketi_adapter_core::{JobError, JobHandler};

use super::{Job, read_batch_group};
use crate::apps::AppManager;
use crate::console::Console;

/// Posts queued webhooks.
pub(crate) struct Sender {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    user_agent: HeaderValue,
    /// Where a closed batch finds its app's secret and webhook.
    apps: Arc<dyn AppManager>,
    /// Told of every attempt, for the consoles open on the app.
    console: Arc<Console>,
}

impl Sender {
    pub(crate) fn new(
        timeout: Duration,
        apps: Arc<dyn AppManager>,
        console: Arc<Console>,
    ) -> Result<Self, tokio_rustls::rustls::Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))?
            .https_or_http()
            .enable_http1()
            .build();
        let user_agent = HeaderValue::from_str(&format!(
            "SoketiWebhooksClient/{} (Process: {})",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("SoketiWebhooksClient"));
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
            user_agent,
            apps,
            console,
        })
    }
}

/// Why a webhook was not delivered; the queue tries it again. The logs show it, so its URLs
/// are [`loggable_url`]s.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    /// The queued bytes are not a webhook job.
    #[error("not a webhook job: {0}")]
    NotAJob(#[from] serde_json::Error),
    /// The job's URL or headers make no request.
    #[error("bad webhook request for {url}: {source}")]
    BadRequest {
        url: String,
        source: hyper::http::Error,
    },
    /// The endpoint did not answer in time.
    #[error("{url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// The endpoint could not be reached.
    #[error("{url} failed: {source}")]
    Unreachable {
        url: String,
        source: hyper_util::client::legacy::Error,
    },
    /// The endpoint answered with an error status.
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    /// The app of a closed batch could not be read.
    #[error("the app of a webhook batch could not be read: {0}")]
    App(String),
}

#[async_trait]
impl JobHandler for Sender {
    async fn run(&self, job: &[u8]) -> Result<(), JobError> {
        let job: Job = serde_json::from_slice(job).map_err(DeliveryError::from)?;
        Ok(self.deliver(job).await?)
    }

    async fn run_batch(&self, group: &str, items: &[Bytes]) -> Result<(), JobError> {
        let Some((app_id, index)) = read_batch_group(group) else {
            tracing::warn!(group, "a webhook batch of no app and webhook; dropped");
            return Ok(());
        };
        let app = match self.apps.find_by_id(app_id).await {
            Ok(Some(app)) => app,
            Ok(None) => {
                tracing::warn!(app_id, "a webhook batch for an app that is gone; dropped");
                return Ok(());
            }
            Err(e) => return Err(DeliveryError::App(e.to_string()).into()),
        };
        // Events are JSON objects as this server wrote them; anything else in the queue is
        // left out rather than sent as a body that does not parse.
        let events: Vec<&str> = items
            .iter()
            .filter_map(|item| {
                let text = std::str::from_utf8(item).ok()?;
                serde_json::from_str::<&serde_json::value::RawValue>(text)
                    .ok()
                    .map(|_| text)
            })
            .collect();
        if events.len() < items.len() {
            tracing::warn!(
                app_id,
                left_out = items.len() - events.len(),
                "webhook batch items that are not JSON were left out"
            );
        }
        if events.is_empty() {
            return Ok(());
        }
        let Some(job) = Job::signed(&app, index, &events) else {
            tracing::warn!(
                app_id,
                index,
                "a webhook batch for a webhook the app no longer has; dropped"
            );
            return Ok(());
        };
        Ok(self.deliver(job).await?)
    }
}

impl Sender {
    /// Posts `job` once, and tells the consoles open on its app how it went.
    async fn deliver(&self, job: Job) -> Result<(), DeliveryError> {
        let outcome = self.post(&job).await;
        if self.console.watches(&job.app_id) {
            let status = match &outcome {
                Ok(()) => "200".to_owned(),
                Err(DeliveryError::Status { status, .. }) => status.as_u16().to_string(),
                Err(e) => format!("error: {e}"),
            };
            for (name, channel) in webhook_events(&job.body) {
                self.console.emit(
                    &job.app_id,
                    "webhook",
                    || serde_json::json!({ "name": name, "channel": channel, "status": status }),
                );
            }
        }
        outcome
    }

    async fn post(&self, job: &Job) -> Result<(), DeliveryError> {
        let mut request = hyper::Request::post(&job.url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, self.user_agent.clone());
        for (name, value) in &job.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(name, value);
            }
        }
        let url = loggable_url(&job.url);
        let request = request
            .body(Full::new(Bytes::from(job.body.clone())))
            .map_err(|source| DeliveryError::BadRequest {
                url: url.clone(),
                source,
            })?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| DeliveryError::Timeout {
                url: url.clone(),
                after: self.timeout,
            })?
            .map_err(|source| DeliveryError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status { url, status })
        }
    }
}

/// The name and channel of each event in a webhook body, for the console.
fn webhook_events(body: &str) -> Vec<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Body {
        events: Vec<Event>,
    }
    #[derive(serde::Deserialize)]
    struct Event {
        name: String,
        channel: Option<String>,
    }
    serde_json::from_str::<Body>(body)
        .map(|body| {
            body.events
                .into_iter()
                .map(|event| (event.name, event.channel))
                .collect()
        })
        .unwrap_or_default()
}

/// A URL as the logs show it: scheme, host, port and path. Users put tokens in the query and
/// credentials before the host, and logs travel further than configuration.
fn loggable_url(url: &str) -> String {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return "(a URL that does not parse)".into();
    };
    let port = uri.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.host().unwrap_or_default(),
        uri.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_keep_no_query_nor_credentials() {
        let url = "https://user:secret@hooks.example.com:8443/pusher/in?token=abc#x";
        let shown = loggable_url(url);
        assert_eq!(shown, "https://hooks.example.com:8443/pusher/in");
        let failed = DeliveryError::Status {
            url: shown,
            status: StatusCode::BAD_GATEWAY,
        };
        let line = failed.to_string();
        assert!(!line.contains("abc") && !line.contains("secret"), "{line}");
        assert_eq!(loggable_url("http://h/p?q=1"), "http://h/p");
    }
}
