//! The webhook queue in SQS: each job is a message, deleted once its handler succeeds, hidden
//! for the retry's wait when it fails, and dropped after the last attempt. Any number of
//! processes may share the queue; a job a process was running when it died comes back once its
//! visibility timeout ends.
//!
//! Batches are gathered in memory for their window (50 ms by default), as soketi does, and sent
//! as one message when it closes; a process killed within a window loses that window's events.
//! A graceful stop sends the open batches first ([`Queue::settle`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use soketi_adapter_core::{AdapterError, InFlight, JobHandler, MemoryBatches, Queue, RetryPolicy};

use crate::sqs::{Message, SqsClient};

/// How the queue polls and retries.
#[derive(Clone, Copy, Debug)]
pub struct SqsSettings {
    /// Messages asked for by each receive (1 to 10).
    pub batch_size: u32,
    /// Whether the messages of one receive run at once (`true`) or one after another.
    pub process_batch: bool,
    /// The pause after each receive.
    pub polling_wait: Duration,
    /// How long a received message stays hidden while it runs: longer than a job can take.
    pub visibility: Duration,
    /// Attempts and the waits between them.
    pub retry: RetryPolicy,
}

/// The largest message SQS takes is 256 KiB; batches are split below it.
const MAX_MESSAGE: usize = 250 * 1024;

/// How long one receive waits for a message (SQS's longest long poll).
const LONG_POLL: Duration = Duration::from_secs(20);

/// What one message holds: a job, or a closed batch of a group.
#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    items: Vec<String>,
}

/// The webhook queue in SQS.
pub struct SqsQueue {
    sqs: SqsClient,
    settings: SqsSettings,
    handler: OnceLock<Arc<dyn JobHandler>>,
    /// Open batches waiting for their window, and batches being sent.
    pending: InFlight,
    batches: MemoryBatches,
}

impl SqsQueue {
    /// A queue over `sqs`.
    pub fn new(sqs: SqsClient, settings: SqsSettings) -> Self {
        Self {
            sqs,
            settings,
            handler: OnceLock::new(),
            pending: InFlight::default(),
            batches: MemoryBatches::default(),
        }
    }
}

/// A random id for a FIFO message's deduplication (each message is sent once).
fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The text of a job: jobs are the server's JSON, so always UTF-8.
fn text(job: &[u8]) -> String {
    String::from_utf8_lossy(job).into_owned()
}

/// Sends the items of `group` as as few messages as fit SQS's size limit.
async fn send_batch(sqs: &SqsClient, group: &str, items: &[Bytes]) -> Result<(), AdapterError> {
    let mut chunk: Vec<String> = Vec::new();
    let mut size = 0;
    for item in items {
        let item = text(item);
        // A JSON string of the item is at most twice its length plus quotes (escapes).
        let cost = item.len() + 16;
        if !chunk.is_empty() && size + cost > MAX_MESSAGE {
            send_envelope(sqs, group, std::mem::take(&mut chunk)).await?;
            size = 0;
        }
        size += cost;
        chunk.push(item);
    }
    if !chunk.is_empty() {
        send_envelope(sqs, group, chunk).await?;
    }
    Ok(())
}

async fn send_envelope(
    sqs: &SqsClient,
    group: &str,
    items: Vec<String>,
) -> Result<(), AdapterError> {
    let envelope = Envelope {
        group: Some(group.to_owned()),
        items,
        ..Envelope::default()
    };
    let body =
        serde_json::to_string(&envelope).map_err(|e| AdapterError::Transport(e.to_string()))?;
    sqs.send(&body, group, &random_id())
        .await
        .map_err(|e| AdapterError::Transport(e.to_string()))
}

#[async_trait]
impl Queue for SqsQueue {
    async fn push(&self, job: Bytes) -> Result<(), AdapterError> {
        let envelope = Envelope {
            job: Some(text(&job)),
            ..Envelope::default()
        };
        let body =
            serde_json::to_string(&envelope).map_err(|e| AdapterError::Transport(e.to_string()))?;
        let id = random_id();
        self.sqs
            .send(&body, &id, &id)
            .await
            .map_err(|e| AdapterError::Transport(e.to_string()))
    }

    async fn push_to_batch(
        &self,
        group: &str,
        item: Bytes,
        window: Duration,
    ) -> Result<(), AdapterError> {
        let sqs = self.sqs.clone();
        self.batches.add(
            group,
            item,
            window,
            &self.pending,
            move |group, items| async move {
                if let Err(e) = send_batch(&sqs, &group, &items).await {
                    tracing::error!(
                        group,
                        events = items.len(),
                        error = %e,
                        "a webhook batch could not be sent to SQS; lost"
                    );
                }
            },
        );
        Ok(())
    }

    fn start(&self, handler: Arc<dyn JobHandler>) {
        if self.handler.set(handler.clone()).is_err() {
            return;
        }
        let (sqs, settings) = (self.sqs.clone(), self.settings);
        tokio::spawn(poll(sqs, settings, handler));
    }

    async fn settle(&self, within: Duration) {
        self.pending
            .settled(tokio::time::Instant::now() + within)
            .await;
    }
}

/// Receives and runs messages for as long as the process runs.
async fn poll(sqs: SqsClient, settings: SqsSettings, handler: Arc<dyn JobHandler>) {
    let mut failures = 0u32;
    loop {
        match sqs
            .receive(settings.batch_size, LONG_POLL, settings.visibility)
            .await
        {
            Ok(messages) => {
                failures = 0;
                if settings.process_batch {
                    let runs = messages.into_iter().map(|message| {
                        let (sqs, handler) = (sqs.clone(), handler.clone());
                        tokio::spawn(async move { run(&sqs, &settings, &*handler, message).await })
                    });
                    for run in runs.collect::<Vec<_>>() {
                        let _ = run.await;
                    }
                } else {
                    for message in messages {
                        run(&sqs, &settings, &*handler, message).await;
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_secs(1 << failures.min(5));
                tracing::warn!(queue = sqs.url(), error = %e, retry_in = ?wait, "receiving webhook jobs from SQS failed");
                tokio::time::sleep(wait).await;
            }
        }
        if !settings.polling_wait.is_zero() {
            tokio::time::sleep(settings.polling_wait).await;
        }
    }
}

/// Runs one message's job; deletes it when done or given up, hides it until its retry else.
async fn run(sqs: &SqsClient, settings: &SqsSettings, handler: &dyn JobHandler, message: Message) {
    let outcome = match serde_json::from_str::<Envelope>(&message.body) {
        Ok(Envelope { job: Some(job), .. }) => handler.run(job.as_bytes()).await,
        Ok(Envelope {
            group: Some(group),
            items,
            ..
        }) => {
            let items: Vec<Bytes> = items.into_iter().map(Bytes::from).collect();
            handler.run_batch(&group, &items).await
        }
        _ => {
            tracing::warn!(
                queue = sqs.url(),
                "an SQS message that is not a webhook job; deleted"
            );
            Ok(())
        }
    };
    let attempts = settings.retry.max_attempts.max(1);
    let done = match outcome {
        Ok(()) => true,
        Err(why) if message.receive_count >= attempts => {
            tracing::warn!(attempt = message.receive_count, why = %why, "a job failed for the last time; dropped");
            true
        }
        Err(why) => {
            let wait = settings
                .retry
                .delay(message.receive_count)
                .max(Duration::from_secs(1));
            tracing::debug!(attempt = message.receive_count, why = %why, retry_in = ?wait, "a job failed; trying again");
            if let Err(e) = sqs.hide(&message.receipt_handle, wait).await {
                tracing::warn!(error = %e, "could not set the retry's wait of an SQS message; it comes back after its visibility timeout");
            }
            false
        }
    };
    if done && let Err(e) = sqs.delete(&message.receipt_handle).await {
        tracing::warn!(error = %e, "a done SQS message could not be deleted; it may run again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_keep_jobs_and_batches_apart() {
        let job = Envelope {
            job: Some(r#"{"url":"http://x"}"#.into()),
            ..Envelope::default()
        };
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(text, r#"{"job":"{\"url\":\"http://x\"}"}"#);
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), job);
        let batch = Envelope {
            group: Some("0:app".into()),
            items: vec!["{}".into(), "[1]".into()],
            ..Envelope::default()
        };
        let text = serde_json::to_string(&batch).unwrap();
        assert_eq!(text, r#"{"group":"0:app","items":["{}","[1]"]}"#);
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), batch);
    }
}
