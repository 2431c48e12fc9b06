//! CORS headers of the HTTP API, as soketi sends them.

use hyper::HeaderMap;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue, VARY,
};

use crate::config::CorsConfig;

/// Adds the CORS headers for a request from `origin`.
pub(crate) fn apply(cors: &CorsConfig, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    let any = cors.origin.iter().any(|o| o == "*");
    let allowed = match origin {
        // Browsers refuse `*` with credentials, so a listed or wildcard origin is echoed.
        Some(origin)
            if any
                || cors
                    .origin
                    .iter()
                    .any(|o| o.as_bytes() == origin.as_bytes()) =>
        {
            Some(origin.clone())
        }
        Some(_) => None,
        None if any => Some(HeaderValue::from_static("*")),
        None => None,
    };
    let Some(allowed) = allowed else {
        return;
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    headers.insert(VARY, HeaderValue::from_static("Origin"));
    if cors.credentials {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Ok(methods) = HeaderValue::from_str(&cors.methods.join(", ")) {
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    if let Ok(allowed_headers) = HeaderValue::from_str(&cors.allowed_headers.join(", ")) {
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(origins: &[&str], origin: Option<&str>, expected: Option<&str>) {
        let cors = CorsConfig {
            origin: origins.iter().map(|s| (*s).to_owned()).collect(),
            ..CorsConfig::default()
        };
        let mut headers = HeaderMap::new();
        let origin = origin.map(|o| HeaderValue::from_str(o).unwrap());
        apply(&cors, origin.as_ref(), &mut headers);
        assert_eq!(
            headers
                .get(ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.to_str().unwrap()),
            expected
        );
    }

    #[test]
    fn origins() {
        check(&["*"], None, Some("*"));
        check(&["*"], Some("https://a.example"), Some("https://a.example"));
        check(
            &["https://a.example"],
            Some("https://a.example"),
            Some("https://a.example"),
        );
        check(&["https://a.example"], Some("https://b.example"), None);
        check(&["https://a.example"], None, None);
    }
}
