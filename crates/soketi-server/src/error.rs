//! Errors of the HTTP API, mapped to a status and Pusher's JSON body in one place.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use soketi_adapter_core::AdapterError;

/// An HTTP API error: a status and a message, sent as `{"error": message, "code": status}`.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "error": self.message, "code": self.status.as_u16() });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        tracing::warn!(error = %e, "adapter error in the HTTP API");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}
