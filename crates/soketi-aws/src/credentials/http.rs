//! What the sources that ask a service share: one request with a deadline, the JSON answer of
//! the container endpoint and instance metadata, and error messages that say what answered.

use std::time::{Duration, SystemTime};

use aws_smithy_types::date_time::{DateTime, Format};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, Uri};

use super::{Credentials, CredentialsError, CredentialsSource};
use crate::HttpClient;

/// The time allowed for STS and the container endpoint, each a call within the region or host.
pub(super) const SERVICE_TIMEOUT: Duration = Duration::from_secs(5);

/// The time allowed for each request to instance metadata: the service answers in
/// milliseconds on EC2, and off EC2 its address usually swallows packets, so a longer wait
/// would only delay the error of a machine that has no credentials.
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest answer read; credentials take a few kilobytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The answer of the container endpoint and of instance metadata.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonAnswer {
    code: Option<String>,
    message: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    expiration: Option<String>,
}

/// The credentials in a JSON answer.
pub(super) fn json_credentials(
    from: CredentialsSource,
    url: &str,
    answer: &[u8],
) -> Result<Credentials, CredentialsError> {
    let invalid = |why: String| CredentialsError::InvalidAnswer {
        from,
        url: url.to_owned(),
        why,
    };
    let answer: JsonAnswer = serde_json::from_slice(answer)
        .map_err(|e| invalid(format!("not the expected JSON: {e}")))?;
    if let Some(code) = answer.code.filter(|code| code != "Success") {
        let message = answer.message.unwrap_or_default();
        return Err(invalid(format!("its Code is {code}: {message}")));
    }
    let required = |value: Option<String>, name: &str| {
        value
            .filter(|value| !value.is_empty())
            .ok_or_else(|| invalid(format!("it has no {name}")))
    };
    Ok(Credentials {
        access_key_id: required(answer.access_key_id, "AccessKeyId")?,
        secret_access_key: required(answer.secret_access_key, "SecretAccessKey")?,
        session_token: answer.token.filter(|token| !token.is_empty()),
        expires: answer
            .expiration
            .map(|text| parse_time(&text))
            .transpose()
            .map_err(invalid)?,
    })
}

/// Sends `request` to `url` and reads the answer, within `timeout`.
pub(super) async fn send(
    http: &HttpClient,
    from: CredentialsSource,
    url: &str,
    request: Result<Request<Full<Bytes>>, hyper::http::Error>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), CredentialsError> {
    let unreachable = |why: String| CredentialsError::Unreachable {
        from,
        url: url.to_owned(),
        why,
    };
    let request =
        request.map_err(|e| unreachable(format!("the request could not be built: {e}")))?;
    let exchange = async {
        let response = http
            .request(request)
            .await
            .map_err(|e| unreachable(crate::client::error_chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(CredentialsError::Timeout {
                from,
                url: url.to_owned(),
                after: timeout,
            })
        })
}

/// Why a request failed, without the source's name, for the list of [`CredentialsError::NotFound`].
pub(super) fn reason(error: CredentialsError) -> String {
    match error {
        CredentialsError::Unreachable { url, why, .. } => {
            format!("{url} could not be reached: {why}")
        }
        CredentialsError::Timeout { url, after, .. } => {
            format!("{url} did not answer within {after:?}")
        }
        other => other.to_string(),
    }
}

/// `url` as a URI, if it is an http or https URL with a host.
pub(super) fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "{url:?} is not an http:// or https:// URL with a host"
        ));
    }
    Ok(uri)
}

/// An ISO 8601 time such as `2026-01-02T03:04:05Z`.
pub(super) fn parse_time(text: &str) -> Result<SystemTime, String> {
    let time = DateTime::from_str(text.trim(), Format::DateTimeWithOffset)
        .map_err(|e| format!("its Expiration {text:?} is not a time: {e}"))?;
    SystemTime::try_from(time).map_err(|e| format!("its Expiration {text:?} is out of range: {e}"))
}

/// The start of an answer, for error messages.
pub(super) fn text_start(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let text = text.trim();
    let mut start: String = text.chars().take(300).collect();
    if start.len() < text.len() {
        start.push('…');
    }
    if start.is_empty() {
        start.push_str("(empty answer)");
    }
    start
}

/// The message of a JSON error answer (`{"code": …, "message": …}`), else the answer's start.
pub(super) fn json_error(answer: &[u8]) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(answer) else {
        return text_start(answer);
    };
    let find = |keys: [&str; 2]| keys.iter().find_map(|key| fields.get(*key)?.as_str());
    match (find(["code", "Code"]), find(["message", "Message"])) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) => message.to_owned(),
        _ => text_start(answer),
    }
}
