//! DynamoDB: reading one item by its hash key, or the first item of an index query, as plain
//! JSON.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::{AwsClient, AwsError};

/// One DynamoDB table.
#[derive(Clone)]
pub struct Table {
    client: AwsClient,
    name: String,
}

impl Table {
    /// The table `name`, reached through `client` (a [`crate::Service::DynamoDb`] client).
    pub fn new(client: AwsClient, name: &str) -> Self {
        Self {
            client,
            name: name.to_owned(),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The item whose string attribute `key` is `value`, the table's hash key (`GetItem`,
    /// strongly consistent).
    pub async fn get(&self, key: &str, value: &str) -> Result<Option<Value>, AwsError> {
        let answer = self
            .client
            .json(
                "DynamoDB_20120810.GetItem",
                &json!({
                    "TableName": self.name,
                    "Key": { key: { "S": value } },
                    "ConsistentRead": true,
                }),
            )
            .await?;
        Ok(answer
            .get("Item")
            .and_then(Value::as_object)
            .map(item_to_json))
    }

    /// The first item of `index` whose string attribute `key` is `value` (`Query`, `Limit 1`).
    pub async fn first_in_index(
        &self,
        index: &str,
        key: &str,
        value: &str,
    ) -> Result<Option<Value>, AwsError> {
        let answer = self
            .client
            .json(
                "DynamoDB_20120810.Query",
                &json!({
                    "TableName": self.name,
                    "IndexName": index,
                    "KeyConditionExpression": "#k = :v",
                    "ExpressionAttributeNames": { "#k": key },
                    "ExpressionAttributeValues": { ":v": { "S": value } },
                    "Limit": 1,
                }),
            )
            .await?;
        Ok(answer
            .get("Items")
            .and_then(Value::as_array)
            .and_then(|items| items.first())
            .and_then(Value::as_object)
            .map(item_to_json))
    }
}

/// An item's attributes as plain JSON: strings, numbers, booleans, lists and maps as
/// themselves; binary values as their UTF-8 text (soketi stores booleans as the binary text
/// `"true"`), or as base64 when they are not text.
pub fn item_to_json(item: &Map<String, Value>) -> Value {
    Value::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), attribute_to_json(value)))
            .collect(),
    )
}

fn attribute_to_json(value: &Value) -> Value {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    let list = |f: fn(&Value) -> Value| {
        Value::Array(
            inner
                .as_array()
                .map_or_else(Vec::new, |items| items.iter().map(f).collect()),
        )
    };
    match kind.as_str() {
        "S" => inner.clone(),
        "N" => number(inner),
        "BOOL" => Value::Bool(inner.as_bool().unwrap_or(false)),
        "NULL" => Value::Null,
        "B" => binary(inner),
        "SS" => inner.clone(),
        "NS" => list(number),
        "BS" => list(binary),
        "L" => list(attribute_to_json),
        "M" => inner.as_object().map_or(Value::Null, item_to_json),
        _ => Value::Null,
    }
}

/// A DynamoDB number (sent as text) as a JSON number, or as the text when JSON cannot hold it.
fn number(text: &Value) -> Value {
    let Some(text) = text.as_str() else {
        return Value::Null;
    };
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or_else(|| Value::String(text.to_owned()), Value::Number)
}

fn binary(encoded: &Value) -> Value {
    let text = encoded.as_str().unwrap_or_default();
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Value::String(text),
            Err(_) => Value::String(text.to_owned()),
        },
        Err(_) => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_read_as_plain_json() {
        let item = json!({
            "AppId": { "S": "app-1" },
            "MaxConnections": { "N": "10" },
            "Ratio": { "N": "0.5" },
            "Huge": { "N": "1e400" },
            "EnableClientMessages": { "B": "dHJ1ZQ==" },
            "Enabled": { "BOOL": false },
            "Raw": { "B": "/w==" },
            "Nothing": { "NULL": true },
            "Tags": { "SS": ["a", "b"] },
            "Counts": { "NS": ["1", "2"] },
            "Nested": { "M": { "x": { "L": [{ "S": "y" }, { "N": "3" }] } } },
            "Odd": { "XYZ": "?" },
        });
        let plain = item_to_json(item.as_object().unwrap());
        assert_eq!(
            plain,
            json!({
                "AppId": "app-1",
                "MaxConnections": 10,
                "Ratio": 0.5,
                "Huge": "1e400",
                "EnableClientMessages": "true",
                "Enabled": false,
                "Raw": "/w==",
                "Nothing": null,
                "Tags": ["a", "b"],
                "Counts": [1, 2],
                "Nested": { "x": ["y", 3] },
                "Odd": null,
            })
        );
    }
}
