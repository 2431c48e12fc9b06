//! The WebSocket upgrade of `GET /app/{key}`: the handshake checked as RFC 6455 (section 4.2.1)
//! requires, so that nothing but a WebSocket client gets a 101, the client's address counted
//! against the per-address caps, then the connection handed to [`websocket::run`].

use hyper::header::{CONNECTION, HeaderName, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use std::net::SocketAddr;

use hyper::{HeaderMap, Version};

use super::*;
use crate::client_ip::client_ip;
use crate::websocket::Handshake;

/// The one WebSocket version there is (RFC 6455).
const VERSION: &str = "13";

/// Answers an upgrade request: 101 and the connection run, or why not.
pub(super) fn upgrade(
    state: &Arc<State>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    app_key: String,
) -> Result<Response<Body>, ApiError> {
    if let Some(refusal) = check_handshake(req.version(), req.headers()) {
        return Ok(refusal);
    }
    let ip = client_ip(peer, req.headers(), &state.trusted_proxies);
    let slot = state
        .ip_limiter
        .admit(ip, state.uptime_ms() / 1000)
        .map_err(|refusal| {
            tracing::debug!(%ip, %refusal, "connection refused by the per-address caps");
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, refusal.to_string())
        })?;
    let handshake = Handshake {
        app_key,
        protocol: query_pairs(req.uri().query())
            .into_iter()
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v),
        origin: req
            .headers()
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ip,
        ip_slot: slot,
    };
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("WebSocket upgrade failed: {e}"),
        )
    })?;
    let state = state.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(ws) => websocket::run(state, ws.into_inner().into_inner(), handshake).await,
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade did not complete"),
        }
    });
    let (parts, _) = response.into_parts();
    Ok(Response::from_parts(parts, Full::new(Bytes::new())))
}

/// The answer to a request that is not a WebSocket handshake: 400 with what is wrong, or 426
/// naming the version this server speaks. `None` for a valid handshake.
fn check_handshake(version: Version, headers: &HeaderMap) -> Option<Response<Body>> {
    let refuse = |why: &str| Some(ApiError::new(StatusCode::BAD_REQUEST, why).into_response());
    if version < Version::HTTP_11 {
        return refuse("A WebSocket handshake needs HTTP/1.1.");
    }
    if !has_token(headers, &UPGRADE, "websocket") {
        return refuse("A WebSocket handshake needs the header Upgrade: websocket.");
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return refuse("A WebSocket handshake needs the header Connection: Upgrade.");
    }
    let key = headers.get(SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes);
    if !key.is_some_and(is_websocket_key) {
        return refuse("A WebSocket handshake needs a Sec-WebSocket-Key of 16 bytes in base64.");
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(VERSION.as_bytes())
    {
        let mut response = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "This server speaks WebSocket version 13.",
        )
        .into_response();
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(VERSION));
        return Some(response);
    }
    None
}

/// Whether a header of the comma-separated list `name` holds `token`, in any case.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Whether `key` is 16 bytes in base64: 22 characters of the alphabet and `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24 && key[..22].iter().all(alphabet) && &key[22..] == b"=="
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    fn status(version: Version, pairs: &[(&'static str, &'static str)]) -> Option<u16> {
        check_handshake(version, &headers(pairs)).map(|r| r.status().as_u16())
    }

    #[test]
    fn a_valid_handshake_passes() {
        assert_eq!(status(Version::HTTP_11, &GOOD), None);
        let upper = [
            ("upgrade", "WebSocket"),
            ("connection", "UPGRADE"),
            GOOD[2],
            GOOD[3],
        ];
        assert_eq!(status(Version::HTTP_11, &upper), None);
    }

    #[test]
    fn what_is_not_a_handshake_gets_400_and_a_wrong_version_426() {
        let without = |name: &str| -> Vec<(&'static str, &'static str)> {
            GOOD.iter().copied().filter(|(n, _)| *n != name).collect()
        };
        assert_eq!(status(Version::HTTP_10, &GOOD), Some(400));
        assert_eq!(status(Version::HTTP_11, &without("upgrade")), Some(400));
        let h2c = [("upgrade", "h2c"), GOOD[1], GOOD[2], GOOD[3]];
        assert_eq!(status(Version::HTTP_11, &h2c), Some(400));
        assert_eq!(status(Version::HTTP_11, &without("connection")), Some(400));
        assert_eq!(
            status(Version::HTTP_11, &without("sec-websocket-key")),
            Some(400)
        );
        let short_key = [GOOD[0], GOOD[1], ("sec-websocket-key", "abc"), GOOD[3]];
        assert_eq!(status(Version::HTTP_11, &short_key), Some(400));
        let old = [GOOD[0], GOOD[1], GOOD[2], ("sec-websocket-version", "8")];
        assert_eq!(status(Version::HTTP_11, &old), Some(426));
        assert_eq!(
            status(Version::HTTP_11, &without("sec-websocket-version")),
            Some(426)
        );
    }
}
