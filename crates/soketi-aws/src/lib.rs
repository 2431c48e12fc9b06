//! AWS for soketi-server: the calls its drivers make to DynamoDB (apps), SQS (the webhook
//! queue) and Lambda (webhooks that invoke a function), signed with Signature Version 4.
//!
//! Only the signer of the AWS SDK for Rust is used (`aws-sigv4`), over the same hyper and rustls
//! client as the rest of the server: the SDK's service crates would add a second HTTP and TLS
//! stack and hundreds of thousands of lines of generated code for the handful of operations
//! used here (a release build of the three service crates with aws-config took six times the
//! CPU time of the signer over hyper, for a binary five times as large: docs/configuration.md,
//! "AWS"). Each service speaks JSON: DynamoDB and SQS the AWS JSON 1.0
//! protocol, Lambda its REST API.
//!
//! Credentials are found the way the AWS tools find them ([`credentials`]).

pub mod credentials;
pub mod dynamodb;
pub mod lambda;
pub mod sqs;

mod client;
mod queue;

pub use self::client::{AwsClient, AwsError, Endpoint, Response, Service};
pub use self::credentials::{Credentials, CredentialsError, CredentialsProvider};
pub use self::queue::{SqsQueue, SqsSettings};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// The HTTP client every AWS call goes through: HTTPS with the webpki roots, or plain HTTP for
/// local endpoints.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A new [`HttpClient`].
pub fn http_client() -> Result<HttpClient, tokio_rustls::rustls::Error> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
}
