//! Signing of HTTP API requests, as Pusher's server SDKs do it, and its verification.
//!
//! The signed string is `METHOD\nPATH\nQUERY`, where QUERY is every query parameter except
//! `auth_signature`, keys lowercased, sorted by key and joined as `key=value` with `&`, values
//! unescaped. A request with a body carries `body_md5`, the hex MD5 of the raw body.

use md5::{Digest, Md5};

use crate::auth::{hmac_sha256_hex, verify_hex};

/// How far `auth_timestamp` may be from the server's clock, in seconds (Pusher's window).
pub const TIMESTAMP_WINDOW_SECS: u64 = 600;

/// Why a signed HTTP request was refused. Every variant is answered with 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpAuthError {
    /// A required query parameter is absent.
    #[error("missing query parameter {0}")]
    MissingParameter(&'static str),
    /// `auth_key` names another app's key.
    #[error("auth_key does not match the app")]
    WrongKey,
    /// `auth_version` is not `1.0`.
    #[error("unsupported auth_version {0}")]
    UnsupportedVersion(String),
    /// `auth_timestamp` is not a number of seconds.
    #[error("auth_timestamp is not a number")]
    InvalidTimestamp,
    /// `auth_timestamp` is more than [`TIMESTAMP_WINDOW_SECS`] away from now.
    #[error("auth_timestamp is more than {TIMESTAMP_WINDOW_SECS} seconds from the server time")]
    ExpiredTimestamp,
    /// `body_md5` is absent for a non-empty body, or does not match it.
    #[error("body_md5 does not match the body")]
    BodyMd5Mismatch,
    /// The signature does not match.
    #[error("invalid signature")]
    InvalidSignature,
}

/// An HTTP request as the signature sees it. `query` holds the decoded query parameters.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The HTTP method, in any case.
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The decoded query parameters, in any order.
    pub query: &'a [(String, String)],
    /// The raw body.
    pub body: &'a [u8],
}

/// Hex MD5 of `body`.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The string the signature covers.
pub fn string_to_sign(method: &str, path: &str, query: &[(String, String)]) -> String {
    let mut params: Vec<(String, &str)> = query
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    params.sort();
    let mut out = format!("{}\n{}\n", method.to_ascii_uppercase(), path);
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Checks a request's signature for the app `key`/`secret`, with `now` in Unix seconds: the
/// query with [`verify_query`], then the body with [`verify_body`].
pub fn verify(
    req: &SignedRequest<'_>,
    key: &str,
    secret: &str,
    now: u64,
) -> Result<(), HttpAuthError> {
    verify_query(req.method, req.path, req.query, key, secret, now)?;
    verify_body(req.query, req.body)
}

/// Checks everything the signature covers but the body: the key, version, timestamp and the
/// signature over the method, path and query (which holds `body_md5`). A server calls it before
/// it reads a body byte, so an unsigned request costs it nothing, and then [`verify_body`].
pub fn verify_query(
    method: &str,
    path: &str,
    query: &[(String, String)],
    key: &str,
    secret: &str,
    now: u64,
) -> Result<(), HttpAuthError> {
    let required =
        |name: &'static str| param(query, name).ok_or(HttpAuthError::MissingParameter(name));
    if required("auth_key")? != key {
        return Err(HttpAuthError::WrongKey);
    }
    let version = required("auth_version")?;
    if version != "1.0" {
        return Err(HttpAuthError::UnsupportedVersion(version.to_owned()));
    }
    verify_secret_only(method, path, query, secret, now)
}

/// Checks a request signed with an app's secret alone: `auth_timestamp` within
/// [`TIMESTAMP_WINDOW_SECS`] of `now` and `auth_signature` over the method, path and the rest of
/// the query: what [`verify_query`] checks after the key and the version. The live
/// console's key lookup uses it: its page knows an app's id and secret, not yet its key.
pub fn verify_secret_only(
    method: &str,
    path: &str,
    query: &[(String, String)],
    secret: &str,
    now: u64,
) -> Result<(), HttpAuthError> {
    let required =
        |name: &'static str| param(query, name).ok_or(HttpAuthError::MissingParameter(name));
    let timestamp: u64 = required("auth_timestamp")?
        .parse()
        .map_err(|_| HttpAuthError::InvalidTimestamp)?;
    if timestamp.abs_diff(now) > TIMESTAMP_WINDOW_SECS {
        return Err(HttpAuthError::ExpiredTimestamp);
    }
    let signature = required("auth_signature")?;
    let to_sign = string_to_sign(method, path, query);
    verify_hex(signature, secret, to_sign.as_bytes()).map_err(|_| HttpAuthError::InvalidSignature)
}

/// Checks that `body` is the one the signed query's `body_md5` names (an empty body needs none).
pub fn verify_body(query: &[(String, String)], body: &[u8]) -> Result<(), HttpAuthError> {
    match param(query, "body_md5") {
        Some(md5) if md5 != body_md5(body) => Err(HttpAuthError::BodyMd5Mismatch),
        None if !body.is_empty() => Err(HttpAuthError::BodyMd5Mismatch),
        _ => Ok(()),
    }
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Signs a request as Pusher's SDKs do: adds `auth_key`, `auth_timestamp`, `auth_version`,
/// `body_md5` (for a non-empty body) and `auth_signature` to `params`, and returns them all.
pub fn sign(
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    key: &str,
    secret: &str,
    timestamp: u64,
) -> Vec<(String, String)> {
    let mut query = params.to_vec();
    query.push(("auth_key".into(), key.into()));
    query.push(("auth_timestamp".into(), timestamp.to_string()));
    query.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        query.push(("body_md5".into(), body_md5(body)));
    }
    let signature = hmac_sha256_hex(secret, string_to_sign(method, path, &query).as_bytes());
    query.push(("auth_signature".into(), signature));
    query
}

#[cfg(test)]
mod tests;
