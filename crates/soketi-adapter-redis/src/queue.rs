//! A durable [`Queue`] in Redis: a job stays in Redis until its handler succeeds, through
//! failures and restarts.
//!
//! Jobs wait in a list; a worker moves one to the processing list (`BLMOVE`), runs it, and
//! removes it on success. A failed job goes to a sorted set of delayed jobs, scored by when it
//! may run again, with its attempt count; past the last attempt it is dropped with a log line.
//! At start-up, jobs left in the processing list by a process that stopped are queued again, so
//! delivery is at least once: a job whose success was not recorded before a crash runs twice.
//!
//! Batches live in Redis from their first item: an item is appended to its group's list and the
//! group is entered in a sorted set scored by when the batch closes, in one script; the
//! promoting loop of any process closes due batches into one job each (the group and its items,
//! with the attempts word's top bit set), again in one script. A process killed with a batch
//! open loses nothing: the batch is closed by whichever process promotes next.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use soketi_adapter_core::{AdapterError, JobHandler, Queue, RetryPolicy};

use crate::connect::{Conn, Connector, RedisEndpoint};
use crate::lazy::LazyConnection;

/// Moves up to 100 jobs of the delayed set (`KEYS[1]`) whose time (`ARGV[1]`, ms) has come to the
/// waiting list (`KEYS[2]`), atomically.
const PROMOTE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  redis.call('LPUSH', KEYS[2], job)
end
return #due
";

/// Appends an item (`ARGV[1]`) to a batch list (`KEYS[1]`) and enters its group (`ARGV[3]`) in
/// the set of open batches (`KEYS[2]`), due at `ARGV[2]` unless it is there already; a batch of
/// [`BATCH_MAX_ITEMS`] items is due at once.
const PUSH_TO_BATCH: &str = r"
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
if n >= tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
else
  redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[3])
end
return n
";

/// Closes up to 100 batches of the set of open batches (`KEYS[1]`) that are due (`ARGV[1]`, ms):
/// the first `ARGV[3]` items of each batch list (`ARGV[2]` followed by the group) become one job
/// on the waiting list (`KEYS[2]`): four bytes of attempts with the top bit set, then the group
/// and each item as netstrings (`<length>:<bytes>,`); items beyond them stay, due at once. The
/// lists share the queue's hash slot on a Cluster.
const CLOSE_DUE_BATCHES: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
local max = tonumber(ARGV[3])
for _, group in ipairs(due) do
  local list = ARGV[2] .. group
  local items = redis.call('LRANGE', list, 0, max - 1)
  redis.call('LTRIM', list, max, -1)
  if redis.call('LLEN', list) == 0 then
    redis.call('ZREM', KEYS[1], group)
  end
  if #items > 0 then
    local parts = { string.char(128, 0, 0, 0), #group, ':', group, ',' }
    for _, item in ipairs(items) do
      parts[#parts + 1] = #item
      parts[#parts + 1] = ':'
      parts[#parts + 1] = item
      parts[#parts + 1] = ','
    end
    redis.call('LPUSH', KEYS[2], table.concat(parts))
  end
end
return #due
";

/// A batch holds at most this many items; a full one closes at once.
const BATCH_MAX_ITEMS: usize = 1000;

/// The attempts word's top bit: the job is a closed batch.
const BATCH_FLAG: u32 = 0x8000_0000;

/// Moves a failed job out of the processing list (`KEYS[1]`, the job as stored in `ARGV[1]`)
/// and into the delayed set (`KEYS[2]`, as `ARGV[3]`, due at `ARGV[2]`), atomically: a script
/// rather than a transaction, so that it runs the same on one server and on a Redis Cluster
/// (where both keys share one hash slot).
const RETRY_LATER: &str = r"
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('LREM', KEYS[1], 1, ARGV[1])
return 1
";

/// A queue in Redis under `<key prefix>queue:<name>:` (on a Redis Cluster,
/// `<key prefix>{queue:<name>}:`, so that its keys share one hash slot: `BLMOVE` and the scripts
/// use two at once).
pub struct RedisQueue {
    connection: LazyConnection,
    waiting: String,
    processing: String,
    delayed: String,
    /// The open batches, scored by when each closes.
    batches: String,
    /// The prefix of each open batch's list, followed by its group.
    batch: String,
    policy: RetryPolicy,
    concurrency: usize,
    /// [`PUSH_TO_BATCH`], its hash computed once rather than for every event.
    push_script: redis::Script,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A job as stored: its attempts so far (4 bytes, the top bit set for a closed batch) and its
/// bytes.
fn wrap(attempts: u32, batch: bool, job: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + job.len());
    out.put_u32(if batch {
        attempts | BATCH_FLAG
    } else {
        attempts
    });
    out.put_slice(job);
    out.freeze()
}

/// A stored job: its attempts so far, whether it is a closed batch, and its bytes.
fn unwrap(stored: &[u8]) -> Option<(u32, bool, &[u8])> {
    let (head, job) = stored.split_at_checked(4)?;
    let word = u32::from_be_bytes(head.try_into().ok()?);
    Some((word & !BATCH_FLAG, word & BATCH_FLAG != 0, job))
}

/// The next netstring (`<length>:<bytes>,`) of `job`, or `Some(None)` at its end; `None` when
/// it does not read.
fn netstring<'a>(job: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    if job.is_empty() {
        return Some(None);
    }
    let colon = job.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&job[..colon]).ok()?.parse().ok()?;
    let (part, rest) = job[colon + 1..].split_at_checked(len)?;
    *job = rest.strip_prefix(b",")?;
    Some(Some(part))
}

/// A closed batch's group and items, read from the netstrings [`CLOSE_DUE_BATCHES`] wrote.
fn batch_parts(mut job: &[u8]) -> Option<(String, Vec<Bytes>)> {
    let group = String::from_utf8(netstring(&mut job)??.to_vec()).ok()?;
    let mut items = Vec::new();
    while let Some(item) = netstring(&mut job)? {
        items.push(Bytes::copy_from_slice(item));
    }
    Some((group, items))
}

impl RedisQueue {
    /// A queue named `name` at `url` (one plain server); `concurrency` workers run jobs at
    /// once.
    pub fn new(
        url: &str,
        key_prefix: &str,
        name: &str,
        policy: RetryPolicy,
        concurrency: usize,
    ) -> Result<Self, crate::RedisTransportError> {
        Self::with_endpoint(
            &RedisEndpoint::from_url(url)?,
            key_prefix,
            name,
            policy,
            concurrency,
        )
    }

    /// A queue named `name` at `endpoint`; `concurrency` workers run jobs at once.
    pub fn with_endpoint(
        endpoint: &RedisEndpoint,
        key_prefix: &str,
        name: &str,
        policy: RetryPolicy,
        concurrency: usize,
    ) -> Result<Self, crate::RedisTransportError> {
        // The hash tag only on a Cluster: a queue on one server keeps the names its jobs were
        // stored under before.
        let base = if endpoint.is_cluster() {
            format!("{key_prefix}{{queue:{name}}}:")
        } else {
            format!("{key_prefix}queue:{name}:")
        };
        Ok(Self {
            connection: LazyConnection::new(endpoint, "queue")?,
            waiting: format!("{base}waiting"),
            processing: format!("{base}processing"),
            delayed: format!("{base}delayed"),
            batches: format!("{base}batches"),
            batch: format!("{base}batch:"),
            policy,
            concurrency: concurrency.max(1),
            push_script: redis::Script::new(PUSH_TO_BATCH),
        })
    }
}

fn failed(e: redis::RedisError) -> String {
    format!("Redis queue: {e}")
}

#[async_trait]
impl Queue for RedisQueue {
    async fn push(&self, job: Bytes) -> Result<(), AdapterError> {
        let mut conn = self.connection.get().await?;
        redis::cmd("LPUSH")
            .arg(&self.waiting)
            .arg(&wrap(0, false, &job)[..])
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| AdapterError::Transport(failed(e)))
    }

    async fn push_to_batch(
        &self,
        group: &str,
        item: Bytes,
        window: Duration,
    ) -> Result<(), AdapterError> {
        let mut conn = self.connection.get().await?;
        let due = now_ms() + window.as_millis() as u64;
        self.push_script
            .key(format!("{}{group}", self.batch))
            .key(&self.batches)
            .arg(&item[..])
            .arg(due)
            .arg(group)
            .arg(BATCH_MAX_ITEMS)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| AdapterError::Transport(failed(e)))
    }

    fn start(&self, handler: Arc<dyn JobHandler>) {
        let keys = Keys {
            connector: self.connection.connector().clone(),
            waiting: self.waiting.clone(),
            processing: self.processing.clone(),
            delayed: self.delayed.clone(),
            batches: self.batches.clone(),
            batch: self.batch.clone(),
            policy: self.policy,
        };
        let keys = Arc::new(keys);
        tokio::spawn({
            let keys = keys.clone();
            let concurrency = self.concurrency;
            async move {
                keys.recover().await;
                for _ in 0..concurrency {
                    tokio::spawn(keys.clone().work(handler.clone()));
                }
                keys.promote_delayed().await;
            }
        });
    }
}

struct Keys {
    connector: Arc<Connector>,
    waiting: String,
    processing: String,
    delayed: String,
    batches: String,
    batch: String,
    policy: RetryPolicy,
}

/// How long a worker's `BLMOVE` blocks waiting for a job.
const BLOCK: Duration = Duration::from_secs(1);

/// How long the queue's connections wait for an answer: longer than [`BLOCK`], so that an idle
/// worker's pop is never cut short on the client side (with redis-rs's default of 500 ms, every
/// idle second was a timeout, a reconnection, an error in the logs and a half-second pause).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Keys {
    async fn connect(&self) -> Conn {
        let mut attempt = 0u32;
        loop {
            match self.connector.managed(Some(RESPONSE_TIMEOUT)).await {
                Ok(conn) => return conn,
                Err(e) => {
                    if attempt == 0 {
                        tracing::warn!(error = %e, "cannot reach the Redis queue; retrying");
                    }
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10))))
                        .await;
                }
            }
        }
    }

    /// Queues again the jobs a stopped process left half done.
    async fn recover(&self) {
        let mut conn = self.connect().await;
        loop {
            let moved: Result<Option<Vec<u8>>, _> = redis::cmd("LMOVE")
                .arg(&self.processing)
                .arg(&self.waiting)
                .arg("RIGHT")
                .arg("RIGHT")
                .query_async(&mut conn)
                .await;
            match moved {
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "could not recover the Redis queue's jobs");
                    return;
                }
            }
        }
    }

    async fn work(self: Arc<Self>, handler: Arc<dyn JobHandler>) {
        let mut conn = self.connect().await;
        // Whether the last pop failed: an outage is logged once when it starts and once when
        // it ends, and an idle queue not at all.
        let mut down = false;
        loop {
            let taken: Result<Option<Vec<u8>>, _> = redis::cmd("BLMOVE")
                .arg(&self.waiting)
                .arg(&self.processing)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(BLOCK.as_secs_f64())
                .query_async(&mut conn)
                .await;
            if taken.is_ok() && down {
                down = false;
                tracing::info!("the Redis queue is reachable again");
            }
            let stored = match taken {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(e) => {
                    if !down {
                        down = true;
                        tracing::warn!(error = %e, "the Redis queue is unreachable; retrying every 500 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let Some((attempts, batch, job)) = unwrap(&stored) else {
                let _ = self.remove_processing(&mut conn, &stored).await;
                continue;
            };
            let outcome = if batch {
                match batch_parts(job) {
                    Some((group, items)) => handler.run_batch(&group, &items).await,
                    None => Err("a closed batch that does not read".into()),
                }
            } else {
                handler.run(job).await
            };
            if let Err(why) = &outcome {
                let attempts = attempts + 1;
                if attempts < self.policy.max_attempts {
                    let due = now_ms() + self.policy.delay(attempts).as_millis() as u64;
                    tracing::debug!(attempts, why = %why, "a queued job failed; it will run again");
                    // Into the delayed set and out of the processing list in one script: if it
                    // fails, the job stays in the processing list, where the next start finds
                    // it, rather than being lost.
                    let moved: Result<i64, _> = redis::Script::new(RETRY_LATER)
                        .key(&self.processing)
                        .key(&self.delayed)
                        .arg(&stored[..])
                        .arg(due)
                        .arg(&wrap(attempts, batch, job)[..])
                        .invoke_async(&mut conn)
                        .await;
                    if let Err(e) = moved {
                        tracing::warn!(
                            error = %e,
                            "could not schedule a failed job again; it stays in the processing list until the next start"
                        );
                    }
                    continue;
                }
                tracing::warn!(
                    attempts,
                    why = %why,
                    "a queued job failed for the last time; dropped"
                );
            }
            if let Err(e) = self.remove_processing(&mut conn, &stored).await {
                tracing::warn!(
                    error = %e,
                    "could not remove a finished job from the Redis queue"
                );
            }
        }
    }

    async fn remove_processing(&self, conn: &mut Conn, stored: &[u8]) -> redis::RedisResult<()> {
        redis::cmd("LREM")
            .arg(&self.processing)
            .arg(1)
            .arg(stored)
            .query_async::<()>(conn)
            .await
    }

    /// Moves delayed jobs whose time has come back to the waiting list: the removal from the
    /// set and the push are one script, so no crash, shutdown or lost connection between the two
    /// can drop a job, and only one process moves each.
    async fn promote_delayed(self: Arc<Self>) {
        let (promote, close) = (
            redis::Script::new(PROMOTE_DUE),
            redis::Script::new(CLOSE_DUE_BATCHES),
        );
        let mut conn = self.connect().await;
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticks.tick().await;
            let now = now_ms();
            let moved: Result<i64, _> = promote
                .key(&self.delayed)
                .key(&self.waiting)
                .arg(now)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = moved {
                tracing::debug!(error = %e, "could not move the due webhook jobs; trying again");
            }
            let closed: Result<i64, _> = close
                .key(&self.batches)
                .key(&self.waiting)
                .arg(now)
                .arg(&self.batch)
                .arg(BATCH_MAX_ITEMS)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = closed {
                tracing::debug!(error = %e, "could not close the due batches; trying again");
            }
        }
    }
}
