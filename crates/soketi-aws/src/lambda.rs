//! Lambda: invoking a function with a JSON payload.

use bytes::Bytes;
use hyper::Method;

use crate::{AwsClient, AwsError};

/// How a function is invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvocationType {
    /// Wait for the function's result (`RequestResponse`).
    RequestResponse,
    /// Queue the invocation in Lambda and return at once (`Event`).
    Event,
}

impl InvocationType {
    fn as_str(self) -> &'static str {
        match self {
            InvocationType::RequestResponse => "RequestResponse",
            InvocationType::Event => "Event",
        }
    }
}

/// Invokes `function` (a name, a partial or a full ARN) with `payload` through `client` (a
/// [`crate::Service::Lambda`] client). A function that failed (the `X-Amz-Function-Error`
/// header) is an error, as is any status other than 2xx.
pub async fn invoke(
    client: &AwsClient,
    function: &str,
    kind: InvocationType,
    payload: Bytes,
) -> Result<(), AwsError> {
    let path = format!(
        "/2015-03-31/functions/{}/invocations",
        percent_encode(function)
    );
    let response = client
        .send(
            Method::POST,
            &path,
            &[
                ("content-type", "application/json"),
                ("x-amz-invocation-type", kind.as_str()),
            ],
            payload,
        )
        .await?;
    if !response.status.is_success() {
        return Err(client.error_of(&response));
    }
    if let Some(kind) = response.headers.get("x-amz-function-error") {
        let body = String::from_utf8_lossy(&response.body[..response.body.len().min(300)]);
        return Err(AwsError::Service {
            service: "lambda",
            status: response.status.as_u16(),
            kind: format!("function error ({})", kind.to_str().unwrap_or("unreadable")),
            message: body.into_owned(),
        });
    }
    Ok(())
}

/// Every byte but the unreserved ones of RFC 3986 percent-encoded, as a path segment.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_and_arns_are_one_path_segment() {
        assert_eq!(percent_encode("my-fn_1.v2"), "my-fn_1.v2");
        assert_eq!(
            percent_encode("arn:aws:lambda:eu-west-1:123456789012:function:hooks/x"),
            "arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Ahooks%2Fx"
        );
    }
}
