//! The AWS client options soketi passes to the JavaScript SDK (`QUEUE_SQS_CLIENT_OPTIONS`, a
//! Lambda webhook's `lambda.client_options`), reduced to what this server applies. An option
//! that would change what the server does but is not applied stops start-up rather than being
//! ignored; only `apiVersion` and the SDK's retry counts are ignored (retries are the queue's).

use serde_json::Value;

use super::{Config, ConfigError};

/// The options of one AWS client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AwsClientOptions {
    /// The region, over the driver's own setting.
    pub(crate) region: Option<String>,
    /// An endpoint other than AWS's.
    pub(crate) endpoint: Option<String>,
    /// An access key instead of the server's credentials: id, secret, session token.
    pub(crate) credentials: Option<(String, String, Option<String>)>,
}

/// Reads the options object `value`, named `name` in messages; `null` is no options.
pub(crate) fn client_options(value: &Value, name: &str) -> Result<AwsClientOptions, String> {
    let mut options = AwsClientOptions::default();
    let object = match value {
        Value::Null => return Ok(options),
        Value::Object(object) => object,
        other => return Err(format!("{name} is {other}; use an object")),
    };
    let text = |key: &str, value: &Value| {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{name}.{key} is {value}; use a string"))
    };
    for (key, value) in object {
        match key.as_str() {
            "region" => options.region = Some(text(key, value)?),
            "endpoint" => {
                let url = text(key, value)?;
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(format!(
                        "{name}.endpoint is {url:?}; use an http:// or https:// URL"
                    ));
                }
                options.endpoint = Some(url);
            }
            "credentials" => {
                let field = |field: &str| {
                    value
                        .get(field)
                        .and_then(Value::as_str)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                };
                let (Some(id), Some(secret)) = (field("accessKeyId"), field("secretAccessKey"))
                else {
                    return Err(format!(
                        "{name}.credentials needs accessKeyId and secretAccessKey"
                    ));
                };
                options.credentials = Some((id, secret, field("sessionToken")));
            }
            "apiVersion" | "maxRetries" | "maxAttempts" => {}
            other => {
                return Err(format!(
                    "{name}.{other} is not supported (there are region, endpoint and \
                     credentials)"
                ));
            }
        }
    }
    Ok(options)
}

impl Config {
    /// The SQS queue's client options.
    pub(crate) fn sqs_client_options(&self) -> Result<AwsClientOptions, ConfigError> {
        client_options(&self.queue.sqs.client_options, "clientOptions")
            .map_err(|message| ConfigError::SqsClientOptions { message })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn client_options_apply_or_are_refused_by_name() {
        assert_eq!(
            client_options(&Value::Null, "o"),
            Ok(AwsClientOptions::default())
        );
        let all = json!({
            "region": "eu-west-1",
            "endpoint": "http://127.0.0.1:4566",
            "credentials": { "accessKeyId": "AK", "secretAccessKey": "SK" },
            "apiVersion": "2012-11-05",
            "maxRetries": 3,
        });
        assert_eq!(
            client_options(&all, "o"),
            Ok(AwsClientOptions {
                region: Some("eu-west-1".into()),
                endpoint: Some("http://127.0.0.1:4566".into()),
                credentials: Some(("AK".into(), "SK".into(), None)),
            })
        );
        for (bad, named) in [
            (
                json!({ "httpOptions": {} }),
                "o.httpOptions is not supported",
            ),
            (
                json!({ "endpoint": "localhost:4566" }),
                "o.endpoint is \"localhost:4566\"",
            ),
            (
                json!({ "credentials": { "accessKeyId": "AK" } }),
                "o.credentials needs",
            ),
            (json!({ "region": 5 }), "o.region is 5"),
            (json!([1]), "o is [1]"),
        ] {
            let message = client_options(&bad, "o").unwrap_err();
            assert!(message.starts_with(named), "{bad}: {message}");
        }
    }
}
