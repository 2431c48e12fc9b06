//! The container credentials endpoint: the ECS agent for task roles, the EKS Pod Identity agent
//! and others that follow the same protocol.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use hyper::{Method, Request};

use super::http::{SERVICE_TIMEOUT, json_credentials, json_error, parse_url, send};
use super::{CredentialsError, CredentialsSource, Env, Step};
use crate::HttpClient;

/// Credentials from the container endpoint: ECS task roles (`…_RELATIVE_URI`) or EKS Pod
/// Identity and other agents (`…_FULL_URI`, with an authorization token).
pub(super) async fn container(http: &HttpClient, env: &Env) -> Result<Step, CredentialsError> {
    const RELATIVE: &str = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
    const FULL: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    let from = CredentialsSource::Container;
    let (setting, url) = match (env.get(RELATIVE), env.get(FULL)) {
        (Some(relative), _) => (RELATIVE, format!("http://169.254.170.2{relative}")),
        (None, Some(full)) => (FULL, full.to_owned()),
        (None, None) => {
            return Ok(Step::Skipped(format!("{RELATIVE} and {FULL} are not set")));
        }
    };
    let uri =
        parse_url(&url).map_err(|why| CredentialsError::InvalidSetting { name: setting, why })?;
    if setting == FULL
        && uri.scheme_str() == Some("http")
        && !allowed_plain_http(uri.host().unwrap_or_default())
    {
        return Err(CredentialsError::InvalidSetting {
            name: FULL,
            why: format!(
                "{url:?} is plain http to a host that is not a loopback address nor 169.254.170.2, \
                 169.254.170.23 or fd00:ec2::23, where credentials would cross the network in \
                 clear; use https"
            ),
        });
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(ACCEPT, "application/json");
    if let Some(token) = container_authorization(env).await? {
        request = request.header(AUTHORIZATION, token);
    }
    let request = request.body(Full::new(Bytes::new()));
    let (status, answer) = send(http, from, &url, request, SERVICE_TIMEOUT).await?;
    if !status.is_success() {
        return Err(CredentialsError::Status {
            from,
            url,
            status: status.as_u16(),
            message: json_error(&answer),
        });
    }
    json_credentials(from, &url, &answer).map(Step::Found)
}

/// The `Authorization` header for the container endpoint: the content of
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read at each call because the token is rotated,
/// else `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
async fn container_authorization(env: &Env) -> Result<Option<HeaderValue>, CredentialsError> {
    const TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
    const TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
    let (setting, token, whence) = if let Some(path) = env.get(TOKEN_FILE) {
        let token =
            tokio::fs::read_to_string(path)
                .await
                .map_err(|source| CredentialsError::ReadFile {
                    what: "container authorization token file",
                    path: PathBuf::from(path),
                    source,
                })?;
        (TOKEN_FILE, token, format!("the token in {path}"))
    } else if let Some(token) = env.get(TOKEN) {
        (TOKEN, token.to_owned(), "the token".to_owned())
    } else {
        return Ok(None);
    };
    let mut value =
        HeaderValue::from_str(token.trim()).map_err(|_| CredentialsError::InvalidSetting {
            name: setting,
            why: format!("{whence} is not a valid HTTP header value"),
        })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Whether the container endpoint may be reached over plain http at `host`, as the SDKs allow:
/// the machine itself, the ECS agent and the EKS Pod Identity agent.
pub(super) fn allowed_plain_http(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            ip.is_loopback()
                || ip == Ipv4Addr::new(169, 254, 170, 2)
                || ip == Ipv4Addr::new(169, 254, 170, 23)
                || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)
        }
        Err(_) => false,
    }
}
