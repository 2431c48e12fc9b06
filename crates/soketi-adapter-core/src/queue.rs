//! Jobs that must be done outside the request that caused them (webhooks): the [`Queue`]
//! trait, and [`SyncQueue`], which runs them in this process.
//!
//! A job is opaque bytes; a [`JobHandler`] runs it and says whether it must be tried again.
//! Durable drivers (Redis) keep a job until its handler succeeds, across restarts.
//!
//! Batches: items pushed to one group within a window become one job, run by
//! [`JobHandler::run_batch`]. The batching is the queue's, so that a durable queue holds each
//! item from the moment it is pushed, not only once its batch is closed: a process that dies
//! with a batch open loses none of it.

use std::collections::HashMap;
use std::future::Future;
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

    /// Does a batch: the items pushed to `group` with [`Queue::push_to_batch`], in the order
    /// they were pushed. The default runs each item as a job, stopping at the first error (the
    /// whole batch is then tried again).
    async fn run_batch(&self, group: &str, items: &[Bytes]) -> Result<(), JobError> {
        let _ = group;
        for item in items {
            self.run(item).await?;
        }
        Ok(())
    }
}

/// Holds jobs until a handler has done them. Held as `Arc<dyn Queue>`.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Queues a job.
    async fn push(&self, job: Bytes) -> Result<(), AdapterError>;
    /// Adds `item` to the open batch of `group`; `window` after the batch's first item, the
    /// batch is closed and becomes one job for [`JobHandler::run_batch`]. A durable queue holds
    /// the item once this returns.
    async fn push_to_batch(
        &self,
        group: &str,
        item: Bytes,
        window: Duration,
    ) -> Result<(), AdapterError>;
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
    /// Jobs being run or waiting for their next attempt, open batches included.
    running: InFlight,
    /// The open batches, by group.
    batches: MemoryBatches,
}

/// Batches gathered in the memory of a process: the items pushed to a group from its first
/// until its window closes, then handed over together. A queue that is not durable, or that
/// can only hold whole batches (SQS), gathers them this way.
#[derive(Clone, Debug, Default)]
pub struct MemoryBatches(Arc<parking_lot::Mutex<HashMap<String, Vec<Bytes>>>>);

impl MemoryBatches {
    /// Adds `item` to the open batch of `group`. The first item of a batch starts its window;
    /// when it ends, `close` gets the group and its items, counted in `running` until done.
    pub fn add<F, Fut>(
        &self,
        group: &str,
        item: Bytes,
        window: Duration,
        running: &InFlight,
        close: F,
    ) where
        F: FnOnce(String, Vec<Bytes>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let first = {
            let mut batches = self.0.lock();
            let batch = batches.entry(group.to_owned()).or_default();
            batch.push(item);
            batch.len() == 1
        };
        if first {
            let (batches, group) = (self.0.clone(), group.to_owned());
            let running = running.enter();
            tokio::spawn(async move {
                let _running = running;
                tokio::time::sleep(window).await;
                let items = batches.lock().remove(&group).unwrap_or_default();
                close(group, items).await;
            });
        }
    }
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
            batches: MemoryBatches::default(),
        }
    }

    fn handler(&self) -> Result<Arc<dyn JobHandler>, AdapterError> {
        self.handler
            .get()
            .cloned()
            .ok_or_else(|| AdapterError::Transport("the queue has no handler yet".into()))
    }
}

/// Runs `attempt` until it succeeds or `policy` gives up, waiting between attempts.
async fn with_retries<F, Fut>(policy: RetryPolicy, mut attempt_once: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    for attempt in 1..=policy.max_attempts.max(1) {
        match attempt_once().await {
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
}

#[async_trait]
impl Queue for SyncQueue {
    async fn push(&self, job: Bytes) -> Result<(), AdapterError> {
        let handler = self.handler()?;
        let policy = self.policy;
        let running = self.running.enter();
        tokio::spawn(async move {
            let _running = running;
            with_retries(policy, || handler.run(&job)).await;
        });
        Ok(())
    }

    async fn push_to_batch(
        &self,
        group: &str,
        item: Bytes,
        window: Duration,
    ) -> Result<(), AdapterError> {
        let handler = self.handler()?;
        let policy = self.policy;
        self.batches.add(
            group,
            item,
            window,
            &self.running,
            move |group, items| async move {
                with_retries(policy, || handler.run_batch(&group, &items)).await;
            },
        );
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

    /// Records the batches it runs.
    #[derive(Default)]
    struct SeesBatches {
        batches: Mutex<Vec<(String, Vec<Bytes>, Instant)>>,
    }

    #[async_trait]
    impl JobHandler for SeesBatches {
        async fn run(&self, _job: &[u8]) -> Result<(), JobError> {
            Err("only batches here".into())
        }

        async fn run_batch(&self, group: &str, items: &[Bytes]) -> Result<(), JobError> {
            self.batches
                .lock()
                .unwrap()
                .push((group.to_owned(), items.to_vec(), Instant::now()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn batches_close_after_their_window_with_their_items_in_order() {
        let window = Duration::from_millis(40);
        let handler = Arc::new(SeesBatches::default());
        let queue = SyncQueue::new(RetryPolicy {
            max_attempts: 1,
            backoff: window,
        });
        queue.start(handler.clone());
        let first = Instant::now();
        for item in ["a", "b", "c"] {
            queue
                .push_to_batch("g", Bytes::from(item), window)
                .await
                .unwrap();
        }
        queue
            .push_to_batch("h", Bytes::from("x"), window)
            .await
            .unwrap();
        // Settling waits for the open batches: that is how a stopping server sends them.
        queue.settle(Duration::from_secs(10)).await;
        let mut batches = handler.batches.lock().unwrap().clone();
        batches.sort_by(|a, b| a.0.cmp(&b.0));
        let seen: Vec<(&str, Vec<&[u8]>)> = batches
            .iter()
            .map(|(g, items, _)| (g.as_str(), items.iter().map(|i| &i[..]).collect()))
            .collect();
        assert_eq!(
            seen,
            [("g", vec![&b"a"[..], b"b", b"c"]), ("h", vec![&b"x"[..]])]
        );
        assert!(batches.iter().all(|(_, _, at)| *at - first >= window));
        // A new item after the close opens a new batch.
        queue
            .push_to_batch("g", Bytes::from("d"), window)
            .await
            .unwrap();
        queue.settle(Duration::from_secs(10)).await;
        assert_eq!(handler.batches.lock().unwrap().len(), 3);
    }
}
