//! Web identity: a role assumed with STS `AssumeRoleWithWebIdentity` and a token from a file,
//! as EKS sets up for service accounts with an IAM role.

use std::fmt::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request};

use super::http::{SERVICE_TIMEOUT, parse_time, parse_url, send, text_start};
use super::{Credentials, CredentialsError, CredentialsSource, Env, Step};
use crate::HttpClient;

/// A role to assume with a web identity token.
#[derive(Debug)]
pub(super) struct WebIdentity {
    /// The role's ARN.
    pub(super) role_arn: String,
    /// The file holding the token, read at each call because the token is rotated.
    pub(super) token_file: PathBuf,
    /// The session name; a random one when unset.
    pub(super) session_name: Option<String>,
    /// The profile's region, used when the environment names none.
    pub(super) region: Option<String>,
}

impl WebIdentity {
    /// The role the environment names (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`,
    /// `AWS_ROLE_SESSION_NAME`), as EKS sets it for a service account with a role.
    pub(super) fn from_env(env: &Env) -> Result<Step<WebIdentity>, CredentialsError> {
        const TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
        const ROLE: &str = "AWS_ROLE_ARN";
        match (env.get(TOKEN_FILE), env.get(ROLE)) {
            (Some(token_file), Some(role_arn)) => Ok(Step::Found(WebIdentity {
                role_arn: role_arn.to_owned(),
                token_file: PathBuf::from(token_file),
                session_name: env.get("AWS_ROLE_SESSION_NAME").map(str::to_owned),
                region: None,
            })),
            (Some(_), None) => Err(CredentialsError::MissingVariable {
                present: TOKEN_FILE,
                missing: ROLE,
            }),
            (None, _) => Ok(Step::Skipped(format!("{TOKEN_FILE} is not set"))),
        }
    }
}

/// Temporary credentials of `identity`'s role, from STS `AssumeRoleWithWebIdentity`, a call that
/// needs no signature: the token is the proof.
pub(super) async fn web_identity(
    http: &HttpClient,
    env: &Env,
    identity: &WebIdentity,
) -> Result<Credentials, CredentialsError> {
    let from = CredentialsSource::WebIdentity;
    let read_failed = |source| CredentialsError::ReadFile {
        what: "web identity token file",
        path: identity.token_file.clone(),
        source,
    };
    let token = tokio::fs::read_to_string(&identity.token_file)
        .await
        .map_err(read_failed)?;
    let token = token.trim();
    if token.is_empty() {
        return Err(read_failed(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        )));
    }
    let region = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .or(identity.region.as_deref())
        .unwrap_or("us-east-1");
    let (setting, endpoint) = match (env.get("AWS_ENDPOINT_URL_STS"), env.get("AWS_ENDPOINT_URL")) {
        (Some(url), _) => ("AWS_ENDPOINT_URL_STS", url.to_owned()),
        (None, Some(url)) => ("AWS_ENDPOINT_URL", url.to_owned()),
        (None, None) => {
            let suffix = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            ("AWS_REGION", format!("https://sts.{region}.{suffix}"))
        }
    };
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let uri =
        parse_url(&url).map_err(|why| CredentialsError::InvalidSetting { name: setting, why })?;
    let session_name = identity
        .session_name
        .clone()
        .unwrap_or_else(|| format!("soketi-{:016x}", rand::random::<u64>()));
    let body = form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", &identity.role_arn),
        ("RoleSessionName", &session_name),
        ("WebIdentityToken", token),
    ]);
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(Full::new(Bytes::from(body)));
    let (status, answer) = send(http, from, &url, request, SERVICE_TIMEOUT).await?;
    let answer = String::from_utf8_lossy(&answer);
    if !status.is_success() {
        return Err(CredentialsError::Status {
            from,
            url,
            status: status.as_u16(),
            message: sts_error(&answer),
        });
    }
    let invalid = |why: String| CredentialsError::InvalidAnswer {
        from,
        url: url.clone(),
        why,
    };
    let credentials = element(&answer, "Credentials")
        .ok_or_else(|| invalid("it has no Credentials".to_owned()))?;
    let field = |name: &str| {
        element(credentials, name)
            .map(|text| unescape(text.trim()))
            .filter(|text| !text.is_empty())
    };
    let required = |name: &str| field(name).ok_or_else(|| invalid(format!("it has no {name}")));
    let expires = field("Expiration")
        .map(|text| parse_time(&text))
        .transpose()
        .map_err(invalid)?;
    tracing::debug!(role = %identity.role_arn, %session_name, "assumed a role with a web identity");
    Ok(Credentials {
        access_key_id: required("AccessKeyId")?,
        secret_access_key: required("SecretAccessKey")?,
        session_token: Some(required("SessionToken")?),
        expires,
    })
}

/// The code and message of an STS error answer (`<Error><Code>…</Code><Message>…</Message>`),
/// else the answer's start.
fn sts_error(answer: &str) -> String {
    let error = element(answer, "Error").unwrap_or(answer);
    let find = |name| element(error, name).map(|text| unescape(text.trim()));
    match (find("Code"), find("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text_start(answer.as_bytes()),
    }
}

/// The text between the first `<name>` and the `</name>` after it: enough for the flat, known
/// answers of STS, without an XML parser.
pub(super) fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let length = xml[start..].find(&close)?;
    Some(&xml[start..start + length])
}

/// `text` with XML's entities and character references replaced; a broken one is kept as it is.
pub(super) fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let c = match &rest[1..end] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                entity => {
                    let number = entity.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)?
                }
            };
            Some((c, end + 1))
        });
        match decoded {
            Some((c, length)) => {
                out.push(c);
                rest = &rest[length..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `pairs` as an `application/x-www-form-urlencoded` body.
pub(super) fn form(pairs: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            body.push('&');
        }
        percent_encode(&mut body, name);
        body.push('=');
        percent_encode(&mut body, value);
    }
    body
}

/// Appends `text` to `out` with every byte but the unreserved ones of RFC 3986 percent-encoded.
fn percent_encode(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}
