//! Jobs that must be done outside the request that caused them (webhooks): the [`Queue`]
//! trait, and [`SyncQueue`], which runs them in this process.
//!
//! A job is opaque bytes; a [`JobHandler`] runs it and says whether it must be tried again.
//! Durable drivers (Redis) keep a job until its handler succeeds, across restarts.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::AdapterError;

/// Runs one job.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Does the job; an error means "try again later", with the reason for the log.
    async fn run(&self, job: &[u8]) -> Result<(), String>;
}

/// Holds jobs until a handler has done them. Held as `Arc<dyn Queue>`.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Queues a job.
    async fn push(&self, job: Bytes) -> Result<(), AdapterError>;
    /// Starts running queued jobs with `handler`; jobs pushed before this wait for it.
    fn start(&self, handler: Arc<dyn JobHandler>);
}

/// How failed jobs are tried again: up to `max_attempts` in all, waiting `backoff`, then
/// twice that, and so on.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt.
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, after `attempt` failures.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(Duration::from_secs(600))
    }
}

/// Runs each job at once in a task of this process, trying again in memory on failure. Jobs
/// are lost if the process stops; use a durable queue where that matters.
pub struct SyncQueue {
    handler: OnceLock<Arc<dyn JobHandler>>,
    policy: RetryPolicy,
}

impl SyncQueue {
    /// A queue that tries each job as `policy` says.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            handler: OnceLock::new(),
            policy,
        }
    }
}

#[async_trait]
impl Queue for SyncQueue {
    async fn push(&self, job: Bytes) -> Result<(), AdapterError> {
        let handler = self
            .handler
            .get()
            .cloned()
            .ok_or_else(|| AdapterError::Transport("the queue has no handler yet".into()))?;
        let policy = self.policy;
        tokio::spawn(async move {
            for attempt in 1..=policy.max_attempts.max(1) {
                match handler.run(&job).await {
                    Ok(()) => return,
                    Err(why) if attempt < policy.max_attempts => {
                        tracing::debug!(attempt, why, "a job failed; trying again");
                        tokio::time::sleep(policy.delay(attempt)).await;
                    }
                    Err(why) => {
                        tracing::warn!(attempt, why, "a job failed for the last time; dropped");
                    }
                }
            }
        });
        Ok(())
    }

    fn start(&self, handler: Arc<dyn JobHandler>) {
        let _ = self.handler.set(handler);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    struct FailsTwice(AtomicU32);

    #[async_trait]
    impl JobHandler for FailsTwice {
        async fn run(&self, _job: &[u8]) -> Result<(), String> {
            if self.0.fetch_add(1, Ordering::SeqCst) < 2 {
                Err("not yet".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn retries_until_done() {
        let handler = Arc::new(FailsTwice(AtomicU32::new(0)));
        let queue = SyncQueue::new(RetryPolicy {
            max_attempts: 5,
            backoff: Duration::from_millis(5),
        });
        queue.start(handler.clone());
        queue.push(Bytes::from_static(b"job")).await.unwrap();
        for _ in 0..200 {
            if handler.0.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            handler.0.load(Ordering::SeqCst),
            3,
            "two failures, one success, no more"
        );
        assert_eq!(
            RetryPolicy {
                max_attempts: 6,
                backoff: Duration::from_secs(1)
            }
            .delay(3),
            Duration::from_secs(4)
        );
    }
}
