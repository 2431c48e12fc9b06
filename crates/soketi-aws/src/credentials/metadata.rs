//! EC2 instance metadata (IMDSv2): the credentials of the role attached to the instance.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};

use super::http::{METADATA_TIMEOUT, json_credentials, parse_url, reason, send, text_start};
use super::{CredentialsError, CredentialsSource, Env, Step};
use crate::HttpClient;

/// Credentials of the role attached to this EC2 instance, from instance metadata (IMDSv2: a
/// session token first, then the role's name, then its credentials).
pub(super) async fn instance_metadata(
    http: &HttpClient,
    env: &Env,
) -> Result<Step, CredentialsError> {
    const DISABLED: &str = "AWS_EC2_METADATA_DISABLED";
    const ENDPOINT: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
    const MODE: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE";
    let from = CredentialsSource::InstanceMetadata;
    if env
        .get(DISABLED)
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
    {
        return Ok(Step::Skipped(format!("{DISABLED} is true")));
    }
    let (setting, base) = match env.get(ENDPOINT) {
        Some(url) => (ENDPOINT, url.trim_end_matches('/')),
        None if env
            .get(MODE)
            .is_some_and(|mode| mode.eq_ignore_ascii_case("ipv6")) =>
        {
            (MODE, "http://[fd00:ec2::254]")
        }
        None => (ENDPOINT, "http://169.254.169.254"),
    };
    let invalid_setting = |why| CredentialsError::InvalidSetting { name: setting, why };

    // Off EC2 nothing answers: that only means this source has nothing.
    let url = format!("{base}/latest/api/token");
    let request = Request::builder()
        .method(Method::PUT)
        .uri(parse_url(&url).map_err(invalid_setting)?)
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .body(Full::new(Bytes::new()));
    let token = match send(http, from, &url, request, METADATA_TIMEOUT).await {
        Ok((status, answer)) if status.is_success() => answer,
        Ok((status, answer)) => {
            let message = text_start(&answer);
            return Ok(Step::Skipped(format!("{url} answered {status}: {message}")));
        }
        Err(error) => return Ok(Step::Skipped(reason(error))),
    };
    let mut token = HeaderValue::from_bytes(token.trim_ascii()).map_err(|_| {
        CredentialsError::InvalidAnswer {
            from,
            url: url.clone(),
            why: "the session token is not a valid HTTP header value".to_owned(),
        }
    })?;
    token.set_sensitive(true);

    let get = |url: String| {
        let token = token.clone();
        async move {
            let request = Request::builder()
                .method(Method::GET)
                .uri(
                    parse_url(&url).map_err(|why| CredentialsError::InvalidAnswer {
                        from,
                        url: url.clone(),
                        why,
                    })?,
                )
                .header("x-aws-ec2-metadata-token", token)
                .body(Full::new(Bytes::new()));
            let (status, answer) = send(http, from, &url, request, METADATA_TIMEOUT).await?;
            Ok::<_, CredentialsError>((url, status, answer))
        }
    };
    let (url, status, answer) =
        get(format!("{base}/latest/meta-data/iam/security-credentials/")).await?;
    let role = String::from_utf8_lossy(&answer);
    let role = role.lines().map(str::trim).find(|line| !line.is_empty());
    let role = match role {
        Some(role) if status.is_success() => role.to_owned(),
        None if status.is_success() => {
            return Ok(Step::Skipped(format!(
                "no IAM role is attached to this instance ({url} lists none)"
            )));
        }
        _ if status == StatusCode::NOT_FOUND => {
            return Ok(Step::Skipped(format!(
                "no IAM role is attached to this instance ({url} answered {status})"
            )));
        }
        _ => {
            return Err(CredentialsError::Status {
                from,
                url,
                status: status.as_u16(),
                message: text_start(&answer),
            });
        }
    };
    let (url, status, answer) = get(format!(
        "{base}/latest/meta-data/iam/security-credentials/{role}"
    ))
    .await?;
    if !status.is_success() {
        return Err(CredentialsError::Status {
            from,
            url,
            status: status.as_u16(),
            message: text_start(&answer),
        });
    }
    json_credentials(from, &url, &answer).map(Step::Found)
}
