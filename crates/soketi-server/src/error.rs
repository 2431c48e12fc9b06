//! Errors of the HTTP API, mapped to a status and Pusher's JSON body in one place.

use bytes::Bytes;
use http_body_util::Full;
use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use soketi_adapter_core::{AdapterError, Decision};

/// An HTTP API error: a status and a message, sent as `{"error": message, "code": status}`.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    budget: Option<Decision>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            budget: None,
        }
    }

    /// 429, with the budget's headers, in soketi's words.
    pub(crate) fn too_many_requests(decision: &Decision) -> Self {
        Self {
            budget: Some(*decision),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests.")
        }
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "error": self.message, "code": self.status.as_u16() });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(decision) = &self.budget {
            rate_limit_headers(response.headers_mut(), decision);
        }
        response
    }
}

/// soketi's rate limit headers: the budget, what is left, and when to retry (seconds).
pub(crate) fn rate_limit_headers(headers: &mut HeaderMap, decision: &Decision) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-ratelimit-limit", decision.limit.to_string());
    set("x-ratelimit-remaining", decision.remaining.to_string());
    if !decision.allowed {
        set(
            "retry-after",
            decision
                .retry_after
                .as_secs_f64()
                .ceil()
                .max(1.0)
                .to_string(),
        );
    }
}

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        tracing::warn!(error = %e, "adapter error in the HTTP API");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}
