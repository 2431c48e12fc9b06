//! SQS: sending, receiving, deleting and hiding messages of one queue, over the AWS JSON 1.0
//! protocol.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{AwsClient, AwsError};

/// One SQS queue.
#[derive(Clone)]
pub struct SqsClient {
    client: AwsClient,
    url: String,
    fifo: bool,
}

/// A received message.
#[derive(Clone, Debug)]
pub struct Message {
    /// The body.
    pub body: String,
    /// What deletes or hides this receipt of the message.
    pub receipt_handle: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

impl SqsClient {
    /// The queue at `url`, reached through `client` (a [`crate::Service::Sqs`] client). A name
    /// ending in `.fifo` is a FIFO queue, whose messages carry a group and a deduplication id.
    pub fn new(client: AwsClient, url: &str) -> Self {
        Self {
            client,
            url: url.to_owned(),
            fifo: url.trim_end_matches('/').ends_with(".fifo"),
        }
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one message. On a FIFO queue, `group` is its message group and `dedup` its
    /// deduplication id.
    pub async fn send(&self, body: &str, group: &str, dedup: &str) -> Result<(), AwsError> {
        let mut input = json!({ "QueueUrl": self.url, "MessageBody": body });
        if self.fifo {
            input["MessageGroupId"] = Value::from(group);
            input["MessageDeduplicationId"] = Value::from(dedup);
        }
        self.client.json("AmazonSQS.SendMessage", &input).await?;
        Ok(())
    }

    /// Receives up to `max` messages (1 to 10), waiting up to `wait` (at most 20 s) for the
    /// first; each is hidden from other receivers for `visibility`.
    pub async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, AwsError> {
        let answer = self
            .client
            .json(
                "AmazonSQS.ReceiveMessage",
                &json!({
                    "QueueUrl": self.url,
                    "MaxNumberOfMessages": max.clamp(1, 10),
                    "WaitTimeSeconds": wait.as_secs().min(20),
                    "VisibilityTimeout": visibility.as_secs(),
                    "AttributeNames": ["ApproximateReceiveCount"],
                    "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
                }),
            )
            .await?;
        let messages = answer
            .get("Messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(messages
            .iter()
            .filter_map(|m| {
                Some(Message {
                    body: m.get("Body")?.as_str()?.to_owned(),
                    receipt_handle: m.get("ReceiptHandle")?.as_str()?.to_owned(),
                    receive_count: m
                        .pointer("/Attributes/ApproximateReceiveCount")
                        .and_then(Value::as_str)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    /// Deletes a received message: it is done.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), AwsError> {
        self.client
            .json(
                "AmazonSQS.DeleteMessage",
                &json!({ "QueueUrl": self.url, "ReceiptHandle": receipt_handle }),
            )
            .await?;
        Ok(())
    }

    /// Hides a received message for `hidden` more (at most 12 hours), after which any receiver
    /// gets it again.
    pub async fn hide(&self, receipt_handle: &str, hidden: Duration) -> Result<(), AwsError> {
        self.client
            .json(
                "AmazonSQS.ChangeMessageVisibility",
                &json!({
                    "QueueUrl": self.url,
                    "ReceiptHandle": receipt_handle,
                    "VisibilityTimeout": hidden.as_secs().min(43_200),
                }),
            )
            .await?;
        Ok(())
    }
}
