//! The sender of queued webhooks: an HTTP client that posts each job as it was signed, and each
//! closed batch signed with its app's secret as the app is now, and says why one was not
//! delivered without putting its URL's secrets in the logs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::Full;
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use soketi_adapter_core::{JobError, JobHandler};
use soketi_aws::lambda::InvocationType;
use soketi_aws::{AwsClient, Credentials, CredentialsProvider, Endpoint, Service};

use super::{Job, LambdaJob, read_batch_group};
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
    /// A Lambda client per function's region, endpoint and credentials.
    lambdas: DashMap<LambdaJob, AwsClient>,
    /// The server's AWS credentials, found at the first Lambda webhook.
    aws_credentials: OnceLock<Arc<CredentialsProvider>>,
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
            lambdas: DashMap::new(),
            aws_credentials: OnceLock::new(),
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
    /// The Lambda function could not be invoked, or failed.
    #[error("Lambda function {function}: {source}")]
    Lambda {
        function: String,
        source: soketi_aws::AwsError,
    },
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
        let outcome = match &job.lambda {
            Some(lambda) => self.invoke(&job, lambda).await,
            None => self.post(&job).await,
        };
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

    /// Invokes the job's Lambda function with `{"payload": body, "headers": headers}`, as
    /// soketi does: the function sees what an HTTP endpoint would have been sent.
    async fn invoke(&self, job: &Job, lambda: &LambdaJob) -> Result<(), DeliveryError> {
        let failed = |source| DeliveryError::Lambda {
            function: lambda.function.clone(),
            source,
        };
        let payload = lambda_payload(job).map_err(DeliveryError::NotAJob)?;
        let client = self.lambda_client(lambda).map_err(failed)?;
        let kind = if lambda.asynchronous {
            InvocationType::Event
        } else {
            InvocationType::RequestResponse
        };
        soketi_aws::lambda::invoke(&client, &lambda.function, kind, payload)
            .await
            .map_err(failed)
    }

    /// The client for `lambda`'s region, endpoint and credentials, made once.
    fn lambda_client(&self, lambda: &LambdaJob) -> Result<AwsClient, soketi_aws::AwsError> {
        if let Some(client) = self.lambdas.get(lambda) {
            return Ok(client.clone());
        }
        // soketi's default region for Lambda webhooks.
        let region = lambda.region.as_deref().unwrap_or("us-east-1");
        let endpoint = Endpoint::resolve(
            Service::Lambda,
            region,
            lambda.endpoint.as_deref(),
            |name| std::env::var(name).ok(),
        )?;
        let credentials = match &lambda.credentials {
            Some((id, secret, token)) => Arc::new(CredentialsProvider::fixed(Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: token.clone(),
                expires: None,
            })),
            None => self
                .aws_credentials
                .get_or_init(|| {
                    Arc::new(CredentialsProvider::from_process_env(self.client.clone()))
                })
                .clone(),
        };
        let client = AwsClient::new(
            self.client.clone(),
            credentials,
            Service::Lambda,
            region,
            endpoint,
            self.timeout,
        );
        self.lambdas.insert(lambda.clone(), client.clone());
        Ok(client)
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

/// The payload a Lambda webhook is invoked with: `{"payload": <the body>, "headers": {...}}`,
/// the body as it was signed, byte for byte (so `JSON.stringify(payload)` in the function
/// gives back what `X-Pusher-Signature` signs).
fn lambda_payload(job: &Job) -> Result<Bytes, serde_json::Error> {
    let body: &serde_json::value::RawValue = serde_json::from_str(&job.body)?;
    let headers: serde_json::Map<String, serde_json::Value> = job
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
        .collect();
    let headers = serde_json::to_string(&headers)?;
    Ok(Bytes::from(format!(
        "{{\"payload\":{},\"headers\":{headers}}}",
        body.get()
    )))
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
    fn a_lambda_payload_carries_the_body_as_signed() {
        let job = Job {
            url: String::new(),
            headers: vec![("X-Pusher-Key".into(), "k".into())],
            body: r#"{"time_ms":1,"events":[{"name":"channel_occupied","channel":"c"}]}"#.into(),
            app_id: "a".into(),
            lambda: None,
        };
        let payload = lambda_payload(&job).unwrap();
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            r#"{"payload":{"time_ms":1,"events":[{"name":"channel_occupied","channel":"c"}]},"headers":{"X-Pusher-Key":"k"}}"#
        );
    }

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
