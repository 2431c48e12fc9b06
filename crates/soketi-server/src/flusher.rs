//! Writing of queued frames, one pass over the connections that have some.
//!
//! A publish queues its frame on every subscriber and schedules each connection whose queue
//! was empty with one of the flushers (a shard per worker thread). A flusher wakes, lets the
//! tasks that are ready run first, then writes every scheduled connection without waiting on
//! any socket. While the server keeps up, that is right after the publish; when publishes
//! arrive faster than it writes, the frames of several publishes are waiting by the time the
//! pass comes, and they go out in one write per connection instead of one each. A write costs
//! the same kernel work whatever it carries, so that is where the throughput comes from, and
//! it adds no delay when the server is idle.
//!
//! A pass over many connections takes milliseconds of kernel time (a write each), so it goes in
//! slices of [`SLICE`] connections, letting the ready tasks run between them: a publish (or its
//! HTTP answer) never waits behind a whole pass, and its frames join the queues of the
//! connections this pass has not written yet, so that they go out in the same write as the
//! frames already there; the connections already written are scheduled for the next pass. A
//! publisher that waits for each answer thus sees its next publishes coalesce as concurrent
//! publishes do.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What a flusher writes: a connection with queued frames.
pub(crate) trait Flush: Send + Sync + 'static {
    /// Writes what is queued without waiting on the socket.
    fn flush(&self);
}

/// The flushers of one server, of connections of type `C`.
pub(crate) struct Flushers<C> {
    shards: Box<[Arc<Shard<C>>]>,
}

/// One flusher: the connections waiting for its next pass.
pub(crate) struct Shard<C> {
    scheduled: Mutex<Vec<Arc<C>>>,
    wake: Notify,
}

impl<C> Default for Shard<C> {
    fn default() -> Self {
        Self {
            scheduled: Mutex::default(),
            wake: Notify::new(),
        }
    }
}

impl<C: Flush> Flushers<C> {
    /// `count` flushers (at least one), whose tasks [`Flushers::spawn`] starts.
    pub(crate) fn new(count: usize) -> Self {
        Self {
            shards: (0..count.max(1)).map(|_| Arc::default()).collect(),
        }
    }

    /// The flusher of the connection numbered `key`.
    pub(crate) fn shard(&self, key: u64) -> Arc<Shard<C>> {
        let index = (key % self.shards.len() as u64) as usize;
        self.shards[index].clone()
    }

    /// Starts a task per flusher on the current runtime.
    pub(crate) fn spawn(&self) -> Vec<JoinHandle<()>> {
        self.shards
            .iter()
            .map(|shard| tokio::spawn(run(shard.clone())))
            .collect()
    }
}

impl<C> Shard<C> {
    /// Puts `conn` in the next pass; the connection does this once per empty-to-queued change.
    pub(crate) fn schedule(&self, conn: Arc<C>) {
        let mut scheduled = self.scheduled.lock();
        let first = scheduled.is_empty();
        scheduled.push(conn);
        drop(scheduled);
        if first {
            self.wake.notify_one();
        }
    }
}

/// Connections written between two chances for the ready tasks to run.
const SLICE: usize = 64;

async fn run<C: Flush>(shard: Arc<Shard<C>>) {
    let mut pass: Vec<Arc<C>> = Vec::new();
    loop {
        shard.wake.notified().await;
        // The tasks that are ready (more publishes, perhaps) run before the pass.
        tokio::task::yield_now().await;
        std::mem::swap(&mut pass, &mut *shard.scheduled.lock());
        let mut slices = pass.chunks(SLICE).peekable();
        while let Some(slice) = slices.next() {
            // Each socket once without waiting; tokio's budget of I/O per task poll would
            // otherwise refuse writes after the first hundred connections.
            tokio::task::unconstrained(poll_fn(|_| {
                for conn in slice {
                    conn.flush();
                }
                Poll::Ready(())
            }))
            .await;
            if slices.peek().is_some() {
                tokio::task::yield_now().await;
            }
        }
        pass.clear();
    }
}
