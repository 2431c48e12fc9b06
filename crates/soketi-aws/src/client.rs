//! One signed request to one AWS service: where it goes, how it is signed, and what its
//! errors mean.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HOST, HeaderMap};
use hyper::{Method, StatusCode, Uri};
use serde_json::Value;

use crate::{CredentialsError, CredentialsProvider, HttpClient};

/// The services this crate calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Amazon DynamoDB.
    DynamoDb,
    /// Amazon SQS.
    Sqs,
    /// AWS Lambda.
    Lambda,
}

impl Service {
    /// The name requests are signed for, and the first label of the service's host.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::DynamoDb => "dynamodb",
            Service::Sqs => "sqs",
            Service::Lambda => "lambda",
        }
    }

    /// The suffix of `AWS_ENDPOINT_URL_<SERVICE>`, the service's own endpoint override.
    fn env_suffix(self) -> &'static str {
        match self {
            Service::DynamoDb => "DYNAMODB",
            Service::Sqs => "SQS",
            Service::Lambda => "LAMBDA",
        }
    }
}

/// Where a service's requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL without a trailing slash: `https://dynamodb.us-east-1.amazonaws.com` or an
    /// override such as `http://127.0.0.1:4566`.
    pub url: String,
}

impl Endpoint {
    /// The endpoint of `service` in `region`: `configured` when set, else the variable
    /// `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL` of `env`, else AWS's own.
    pub fn resolve(
        service: Service,
        region: &str,
        configured: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, AwsError> {
        let chosen = configured
            .map(str::to_owned)
            .filter(|url| !url.is_empty())
            .or_else(|| env(&format!("AWS_ENDPOINT_URL_{}", service.env_suffix())))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .filter(|url| !url.is_empty());
        let url = match chosen {
            Some(url) => url,
            None => {
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://{}.{region}.{suffix}", service.signing_name())
            }
        };
        let url = url.trim_end_matches('/').to_owned();
        let uri: Uri = url
            .parse()
            .map_err(|_| AwsError::Endpoint(format!("{url:?} is not a URL")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(AwsError::Endpoint(format!(
                "{url:?} is not an http:// or https:// URL with a host"
            )));
        }
        Ok(Self { url })
    }
}

/// A failed AWS call.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The endpoint setting is not a URL.
    #[error("bad AWS endpoint: {0}")]
    Endpoint(String),
    /// No credentials to sign with.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The request could not be signed or built.
    #[error("the request to {service} could not be built: {why}")]
    Request {
        /// The service.
        service: &'static str,
        /// Why.
        why: String,
    },
    /// The service could not be reached.
    #[error("{service} at {url} could not be reached: {why}")]
    Unreachable {
        /// The service.
        service: &'static str,
        /// Its endpoint.
        url: String,
        /// Why.
        why: String,
    },
    /// The service did not answer in time.
    #[error("{service} at {url} did not answer within {after:?}")]
    Timeout {
        /// The service.
        service: &'static str,
        /// Its endpoint.
        url: String,
        /// The time allowed.
        after: Duration,
    },
    /// The service answered with an error.
    #[error("{service} answered {status}: {kind}: {message}")]
    Service {
        /// The service.
        service: &'static str,
        /// The HTTP status.
        status: u16,
        /// The error's type, such as `ResourceNotFoundException`.
        kind: String,
        /// The service's message.
        message: String,
    },
    /// The answer is not what the operation returns.
    #[error("{service} answered something that is not its operation's answer: {why}")]
    Answer {
        /// The service.
        service: &'static str,
        /// What did not fit.
        why: String,
    },
}

impl AwsError {
    /// The error's type when the service answered with one (`ResourceNotFoundException`, ...).
    pub fn kind(&self) -> Option<&str> {
        match self {
            AwsError::Service { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// An answer of a service, whatever its status.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// The largest answer read (a Lambda's result is at most 6 MB).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Signs and sends requests to one service in one region.
#[derive(Clone)]
pub struct AwsClient {
    http: HttpClient,
    credentials: Arc<CredentialsProvider>,
    service: Service,
    region: String,
    endpoint: Endpoint,
    timeout: Duration,
}

impl AwsClient {
    /// A client of `service` in `region` at `endpoint`; each call may take `timeout`.
    pub fn new(
        http: HttpClient,
        credentials: Arc<CredentialsProvider>,
        service: Service,
        region: &str,
        endpoint: Endpoint,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            credentials,
            service,
            region: region.to_owned(),
            endpoint,
            timeout,
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Calls an operation of the AWS JSON 1.0 protocol (DynamoDB's and SQS's): `target` is
    /// the `X-Amz-Target`, such as `DynamoDB_20120810.GetItem`. An error answer becomes
    /// [`AwsError::Service`].
    pub async fn json(&self, target: &str, input: &Value) -> Result<Value, AwsError> {
        let body = Bytes::from(input.to_string());
        let response = self
            .send(
                Method::POST,
                "/",
                &[
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amz-target", target),
                ],
                body,
            )
            .await?;
        if !response.status.is_success() {
            return Err(self.error_of(&response));
        }
        if response.body.is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&response.body).map_err(|e| AwsError::Answer {
            service: self.service.signing_name(),
            why: e.to_string(),
        })
    }

    /// The [`AwsError::Service`] of an error answer: AWS's JSON error (`__type` and
    /// `message`), or the status alone.
    pub fn error_of(&self, response: &Response) -> AwsError {
        let parsed: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let header = |name: &str| {
            response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let kind = parsed
            .get("__type")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| header("x-amzn-errortype"))
            .unwrap_or_else(|| "UnknownError".to_owned());
        // `com.amazonaws.dynamodb.v20120810#ResourceNotFoundException`, and the error-type
        // header's `Name:http://...` form, both name the error last.
        let kind = kind
            .rsplit('#')
            .next()
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let message = ["message", "Message", "errorMessage"]
            .iter()
            .find_map(|k| parsed.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&response.body[..response.body.len().min(300)]).into_owned()
            });
        AwsError::Service {
            service: self.service.signing_name(),
            status: response.status.as_u16(),
            kind,
            message,
        }
    }

    /// Sends one signed request to `path` of the endpoint; any status is returned. Finding the
    /// credentials counts in the client's time, so a call never takes longer than that, even
    /// when a credential source hangs.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, AwsError> {
        let service = self.service.signing_name();
        let sent = tokio::time::timeout(self.timeout, async {
            let credentials = self.credentials.credentials().await?;
            let request = self.request(method, path, headers, body, &credentials)?;
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| AwsError::Unreachable {
                    service,
                    url: self.endpoint.url.clone(),
                    why: error_chain(&e),
                })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| AwsError::Unreachable {
                    service,
                    url: self.endpoint.url.clone(),
                    why: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            Ok::<_, AwsError>(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        })
        .await;
        sent.unwrap_or_else(|_| {
            Err(AwsError::Timeout {
                service,
                url: self.endpoint.url.clone(),
                after: self.timeout,
            })
        })
    }

    /// The request to `path` of the endpoint, signed with `credentials`.
    fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        credentials: &crate::Credentials,
    ) -> Result<hyper::Request<Full<Bytes>>, AwsError> {
        let service = self.service.signing_name();
        let url = format!("{}{path}", self.endpoint.url);
        let uri: Uri = url.parse().map_err(|_| AwsError::Request {
            service,
            why: format!("{url:?} is not a URL"),
        })?;
        let host = match (uri.host(), uri.port_u16()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => {
                return Err(AwsError::Request {
                    service,
                    why: format!("{url:?} has no host"),
                });
            }
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, &host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request
            .body(Full::new(body.clone()))
            .map_err(|e| AwsError::Request {
                service,
                why: e.to_string(),
            })?;
        self.sign(&mut request, credentials, &body)?;
        Ok(request)
    }

    /// Adds the SigV4 headers (`Authorization`, `X-Amz-Date`, the session token) to `request`.
    fn sign(
        &self,
        request: &mut hyper::Request<Full<Bytes>>,
        credentials: &crate::Credentials,
        body: &[u8],
    ) -> Result<(), AwsError> {
        let service = self.service.signing_name();
        let failed = |why: String| AwsError::Request { service, why };
        let identity = aws_credential_types::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
            credentials.session_token.clone(),
            credentials.expires,
            "soketi",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(e.to_string()))?
            .into();
        let uri = request.uri().to_string();
        let header_values: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let signable = SignableRequest::new(
            request.method().as_str(),
            &uri,
            header_values.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| failed(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| failed(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

/// An error with its causes, for the logs, which hyper's client keeps apart (`client error
/// (Connect): tcp connect error: Connection refused`).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
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
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[tokio::test]
    async fn a_credential_source_that_hangs_counts_in_the_call_s_time() {
        // A container credentials endpoint that accepts and never answers: the chain alone
        // would wait its own 5 s for it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let env = [(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_owned(),
            format!("http://127.0.0.1:{port}/creds"),
        )];
        let http = crate::http_client().unwrap();
        let credentials = Arc::new(CredentialsProvider::chain(
            env.into_iter().collect(),
            http.clone(),
        ));
        let endpoint = Endpoint::resolve(
            Service::DynamoDb,
            "us-east-1",
            Some("http://127.0.0.1:1"),
            no_env,
        )
        .unwrap();
        let timeout = Duration::from_millis(300);
        let client = AwsClient::new(
            http,
            credentials,
            Service::DynamoDb,
            "us-east-1",
            endpoint,
            timeout,
        );
        let started = std::time::Instant::now();
        let error = client
            .json("DynamoDB_20120810.GetItem", &Value::Null)
            .await
            .unwrap_err();
        assert!(matches!(error, AwsError::Timeout { .. }), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn endpoints_come_from_the_setting_then_the_environment_then_aws() {
        let aws = Endpoint::resolve(Service::DynamoDb, "eu-west-1", None, no_env).unwrap();
        assert_eq!(aws.url, "https://dynamodb.eu-west-1.amazonaws.com");
        let china = Endpoint::resolve(Service::Sqs, "cn-north-1", None, no_env).unwrap();
        assert_eq!(china.url, "https://sqs.cn-north-1.amazonaws.com.cn");
        let env = |name: &str| match name {
            "AWS_ENDPOINT_URL_LAMBDA" => Some("http://127.0.0.1:9001/".to_owned()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000".to_owned()),
            _ => None,
        };
        let lambda = Endpoint::resolve(Service::Lambda, "us-east-1", None, env).unwrap();
        assert_eq!(lambda.url, "http://127.0.0.1:9001");
        let sqs = Endpoint::resolve(Service::Sqs, "us-east-1", None, env).unwrap();
        assert_eq!(sqs.url, "http://127.0.0.1:9000");
        let set = Endpoint::resolve(Service::Sqs, "us-east-1", Some("http://h:1"), env).unwrap();
        assert_eq!(set.url, "http://h:1");
        let bad = Endpoint::resolve(Service::Sqs, "us-east-1", Some("ftp://h"), no_env);
        assert!(bad.unwrap_err().to_string().contains("ftp://h"));
    }
}
