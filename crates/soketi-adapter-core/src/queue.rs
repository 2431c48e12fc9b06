//! Jobs that must be done outside the request that caused them (webhooks): the [`Queue`]
//! trait, and [`SyncQueue`], which runs them in this process.
//!
//! A job is opaque bytes; a [`JobHandler`] runs it and says whether it must be tried again.
//! Durable drivers (Redis) keep a job until its handler succeeds, across restarts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::AdapterError;

/// Why a job failed: the handler's own error, for the log. The queue only needs to know that
/// the job must be tried again.
pub type JobError = Box<dyn std::error::Error + Send + Sync>;

/// Runs one job.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Does the job; an error means "try again later", with the reason for the log.
    async fn run(&self, job: &[u8]) -> Result<(), JobError>;
}

/// Holds jobs until a handler has done them. Held as `Arc<dyn Queue>`.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Queues a job.
    async fn push(&self, job: Bytes) -> Result<(), AdapterError>;
    /// Starts running queued jobs with `handler`; jobs pushed before this wait for it.
    fn start(&self, handler: Arc<dyn JobHandler>);

    /// Waits, for at most `within`, until the jobs this process holds in memory are done: what
    /// a stopping server calls before it exits. A durable queue holds none and returns at once.
    async fn settle(&self, within: Duration) {
        let _ = within;
    }
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
    /// Jobs being run or waiting for their next attempt.
    running: InFlight,
}

/// Tasks a process has started and not finished, which it waits for before it stops.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// One task counted by an [`InFlight`], until it drops.
#[derive(Debug)]
pub struct InFlightTask(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a task until the returned guard drops.
    pub fn enter(&self) -> InFlightTask {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightTask(self.0.clone())
    }

    /// Waits until no task is left, or `deadline` has passed.
    pub async fn settled(&self, deadline: tokio::time::Instant) {
        while self.0.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for InFlightTask {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SyncQueue {
    /// A queue that tries each job as `policy` says.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            handler: OnceLock::new(),
            policy,
            running: InFlight::default(),
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
        let running = self.running.enter();
        tokio::spawn(async move {
            let _running = running;
            for attempt in 1..=policy.max_attempts.max(1) {
                match handler.run(&job).await {
                    Ok(()) => return,
                    Err(why) if attempt < policy.max_attempts => {
                        tracing::debug!(attempt, why = %why, "a job failed; trying again");
                        tokio::time::sleep(policy.delay(attempt)).await;
                    }
                    Err(why) => {
                        tracing::warn!(attempt, why = %why, "a job failed for the last time; dropped");
                    }
                }
            }
        });
        Ok(())
    }

    fn start(&self, handler: Arc<dyn JobHandler>) {
        let _ = self.handler.set(handler);
    }

    async fn settle(&self, within: Duration) {
        self.running
            .settled(tokio::time::Instant::now() + within)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    /// Fails its first two runs, then succeeds; remembers when each run began.
    #[derive(Default)]
    struct FailsTwice {
        runs: Mutex<Vec<Instant>>,
    }

    #[async_trait]
    impl JobHandler for FailsTwice {
        async fn run(&self, _job: &[u8]) -> Result<(), JobError> {
            let mut runs = self.runs.lock().expect("the runs lock is never poisoned");
            runs.push(Instant::now());
            if runs.len() <= 2 {
                Err("not yet".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn in_flight_tasks_are_waited_for_until_the_deadline() {
        let in_flight = InFlight::default();
        let task = in_flight.enter();
        let soon = tokio::time::Instant::now() + Duration::from_millis(30);
        in_flight.settled(soon).await;
        assert!(
            tokio::time::Instant::now() >= soon,
            "a task left: waited to the deadline"
        );
        drop(task);
        let later = tokio::time::Instant::now() + Duration::from_secs(60);
        tokio::time::timeout(Duration::from_secs(5), in_flight.settled(later))
            .await
            .expect("none left: settled at once");
    }

    #[tokio::test]
    async fn retries_until_done() {
        let backoff = Duration::from_millis(5);
        let handler = Arc::new(FailsTwice::default());
        let queue = SyncQueue::new(RetryPolicy {
            max_attempts: 5,
            backoff,
        });
        queue.start(handler.clone());
        queue.push(Bytes::from_static(b"job")).await.unwrap();

        // The job's task holds a clone of the handler until it ends (the test and the queue hold
        // the two others): once it is gone, no attempt can follow, so the count below is final.
        tokio::time::timeout(Duration::from_secs(10), async {
            while Arc::strong_count(&handler) > 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the job's task ends within 10 s");
        let runs = handler.runs.lock().unwrap().clone();
        assert_eq!(runs.len(), 3, "two failures, one success, no more");
        // Lower bounds only: a busy machine makes the waits longer, never shorter.
        assert!(
            runs[1] - runs[0] >= backoff,
            "the first retry waits the backoff"
        );
        assert!(
            runs[2] - runs[1] >= backoff * 2,
            "the second retry waits twice the backoff"
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
