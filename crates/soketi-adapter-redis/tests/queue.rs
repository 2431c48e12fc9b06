//! The Redis queue against a real redis-server on a free port: a job runs once and leaves no
//! key behind, a failing one is retried with the policy's backoff and then dropped, jobs
//! outlive the queue instance (and the process) that held them, and a Redis restart is
//! survived.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use soketi_adapter_core::{JobError, JobHandler, Queue, RetryPolicy};
use soketi_adapter_redis::RedisQueue;
use support::{DEADLINE, Redis, poll, raw};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Says whether a job fails this time, given the job and how often it ran before.
type Fails = Box<dyn Fn(&[u8], usize) -> bool + Send + Sync>;

/// Records each run (job, when) and fails the jobs that `fails` says should fail this time.
struct Recorder {
    runs: Mutex<Vec<(Vec<u8>, Instant)>>,
    ran: mpsc::UnboundedSender<Vec<u8>>,
    fails: Fails,
}

impl Recorder {
    /// A handler and the stream of the jobs it runs. `fails(job, runs_of_it_so_far)`.
    fn new(
        fails: impl Fn(&[u8], usize) -> bool + Send + Sync + 'static,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (ran, rx) = mpsc::unbounded_channel();
        let recorder = Self {
            runs: Mutex::default(),
            ran,
            fails: Box::new(fails),
        };
        (Arc::new(recorder), rx)
    }

    fn runs_of(&self, job: &[u8]) -> Vec<Instant> {
        self.runs
            .lock()
            .iter()
            .filter(|(j, _)| j == job)
            .map(|(_, at)| *at)
            .collect()
    }
}

#[async_trait]
impl JobHandler for Recorder {
    async fn run(&self, job: &[u8]) -> Result<(), JobError> {
        let before = {
            let mut runs = self.runs.lock();
            let before = runs.iter().filter(|(j, _)| j == job).count();
            runs.push((job.to_vec(), Instant::now()));
            before
        };
        let _ = self.ran.send(job.to_vec());
        if (self.fails)(job, before) {
            Err("failing as the test asks".into())
        } else {
            Ok(())
        }
    }
}

/// A handler that says when it started a job and then never finishes it, as a process that
/// dies in the middle of one.
struct Hangs(mpsc::UnboundedSender<Vec<u8>>);

#[async_trait]
impl JobHandler for Hangs {
    async fn run(&self, job: &[u8]) -> Result<(), JobError> {
        let _ = self.0.send(job.to_vec());
        std::future::pending().await
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    backoff: Duration::from_millis(100),
};

async fn next_run(runs: &mut mpsc::UnboundedReceiver<Vec<u8>>, what: &str) -> Vec<u8> {
    tokio::time::timeout(DEADLINE, runs.recv())
        .await
        .unwrap_or_else(|_| panic!("{what} did not run within {DEADLINE:?}"))
        .expect("the handler is alive")
}

/// The keys of database `db` that match `pattern`, sorted.
async fn keys(url: &str, pattern: &str) -> Vec<String> {
    let mut conn = raw(url).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Waits until no key matches `pattern`: the queue holds nothing.
async fn drained(url: &str, pattern: &str) {
    poll(&format!("no key matching {pattern}"), DEADLINE, || async {
        keys(url, pattern).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_once_in_order_and_leave_nothing_behind() {
    let Some(redis) = Redis::start("jobs_run_once_in_order_and_leave_nothing_behind", &[]) else {
        return;
    };
    // A database other than 0 and a key prefix: the queue's keys are there and only there.
    let url = redis.url("", 3);
    let queue = RedisQueue::new(&url, "pfx:", "jobs", POLICY, 1).unwrap();
    for job in ["one", "two", "three"] {
        queue.push(Bytes::from(job)).await.unwrap();
    }
    assert_eq!(
        keys(&url, "*").await,
        ["pfx:queue:jobs:waiting"],
        "jobs wait in the chosen database under the key prefix"
    );
    assert!(
        keys(&redis.url("", 0), "*").await.is_empty(),
        "database 0 stays empty"
    );

    let (recorder, mut runs) = Recorder::new(|_, _| false);
    queue.start(recorder.clone());
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(String::from_utf8(next_run(&mut runs, "a pushed job").await).unwrap());
    }
    assert_eq!(
        order,
        ["one", "two", "three"],
        "one worker runs them in order"
    );
    drained(&url, "pfx:queue:jobs:*").await;
    queue.push(Bytes::from("sentinel")).await.unwrap();
    assert_eq!(next_run(&mut runs, "the sentinel").await, b"sentinel");
    for job in ["one", "two", "three"] {
        assert_eq!(recorder.runs_of(job.as_bytes()).len(), 1, "{job} ran once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_retried_with_backoff_then_dropped() {
    let Some(redis) = Redis::start("a_failing_job_is_retried_with_backoff_then_dropped", &[])
    else {
        return;
    };
    let url = redis.url("", 0);
    let queue = RedisQueue::new(&url, "retry:", "jobs", POLICY, 1).unwrap();
    // "flaky" fails twice and then succeeds; "doomed" always fails.
    let (recorder, mut runs) = Recorder::new(|job, before| job == b"doomed" || before < 2);
    queue.start(recorder.clone());
    queue.push(Bytes::from("flaky")).await.unwrap();
    queue.push(Bytes::from("doomed")).await.unwrap();

    // Each is tried max_attempts times in all; once a job's last attempt has run and the queue
    // holds no key, no further attempt can come.
    poll("3 attempts of each job", DEADLINE, || {
        let done = recorder.runs_of(b"flaky").len() >= 3 && recorder.runs_of(b"doomed").len() >= 3;
        async move { done.then_some(()) }
    })
    .await;
    drained(&url, "retry:queue:jobs:*").await;
    queue.push(Bytes::from("sentinel")).await.unwrap();
    loop {
        if next_run(&mut runs, "the sentinel").await == b"sentinel" {
            break;
        }
    }
    for job in [&b"flaky"[..], b"doomed"] {
        let at = recorder.runs_of(job);
        assert_eq!(at.len(), 3, "{} ran 3 times", String::from_utf8_lossy(job));
        // A retry never comes before its delay (a busy machine only makes it later): the
        // policy's backoff, then twice that. The queue schedules in whole milliseconds of the
        // wall clock, so a retry may come up to that much before the delay measured here.
        let early = Duration::from_millis(2);
        assert!(
            at[1] - at[0] + early >= POLICY.delay(1),
            "first retry after {:?}",
            at[1] - at[0]
        );
        assert!(
            at[2] - at[1] + early >= POLICY.delay(2),
            "second retry after {:?}",
            at[2] - at[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_outlive_the_queue_and_the_process_that_held_them() {
    let Some(redis) = Redis::start("jobs_outlive_the_queue_and_the_process_that_held_them", &[])
    else {
        return;
    };
    let url = redis.url("", 0);

    // Pushed by a queue that never ran them, then dropped.
    let pusher = RedisQueue::new(&url, "outlive:", "jobs", POLICY, 1).unwrap();
    pusher.push(Bytes::from("waiting")).await.unwrap();
    drop(pusher);

    // Taken by a worker of another runtime, which is then shut down in the middle of the job,
    // as a process that dies: the job stays in Redis's processing list.
    let (started, mut started_rx) = mpsc::unbounded_channel();
    let (shutdown, shutdown_rx) = std::sync::mpsc::channel::<()>();
    let dying = {
        let url = url.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let queue = RedisQueue::new(&url, "outlive:", "jobs", POLICY, 1).unwrap();
                queue.start(Arc::new(Hangs(started)));
                // Keep the queue alive until the test says the process dies.
                tokio::task::spawn_blocking(move || shutdown_rx.recv())
                    .await
                    .unwrap()
                    .unwrap();
            });
            runtime.shutdown_background();
        })
    };
    assert_eq!(
        next_run(&mut started_rx, "the job in the dying process").await,
        b"waiting"
    );
    assert_eq!(
        keys(&url, "outlive:*").await,
        ["outlive:queue:jobs:processing"]
    );
    shutdown.send(()).unwrap();
    dying.join().unwrap();

    // A new queue queues it again and runs it.
    let queue = RedisQueue::new(&url, "outlive:", "jobs", POLICY, 1).unwrap();
    let (recorder, mut runs) = Recorder::new(|_, _| false);
    queue.start(recorder.clone());
    assert_eq!(
        next_run(&mut runs, "the job left half done").await,
        b"waiting"
    );
    drained(&url, "outlive:queue:jobs:*").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_works_again_after_a_redis_restart() {
    let Some(mut redis) = Redis::start("the_queue_works_again_after_a_redis_restart", &[]) else {
        return;
    };
    let url = redis.url("", 0);
    let queue = RedisQueue::new(&url, "restart:", "jobs", POLICY, 1).unwrap();
    let (recorder, mut runs) = Recorder::new(|_, _| false);
    queue.start(recorder.clone());
    queue.push(Bytes::from("before")).await.unwrap();
    assert_eq!(
        next_run(&mut runs, "the job before the restart").await,
        b"before"
    );

    redis.restart();
    // A push may fail while the connection is made again (the caller hears it); one succeeds
    // within the deadline, and the worker takes it.
    poll("a push to the new Redis", DEADLINE, || {
        let queue = &queue;
        async move { queue.push(Bytes::from("after")).await.ok() }
    })
    .await;
    assert_eq!(
        next_run(&mut runs, "the job after the restart").await,
        b"after"
    );
}

/// An idle worker blocks in `BLMOVE` again and again, each pop ending with nothing; jobs pushed
/// at every moment of several such pops all run, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_pushed_to_an_idle_queue_at_any_moment_all_run() {
    let Some(redis) = Redis::start("jobs_pushed_to_an_idle_queue_at_any_moment_all_run", &[])
    else {
        return;
    };
    let url = redis.url("", 0);
    let queue = RedisQueue::new(&url, "", "idle", POLICY, 1).unwrap();
    let (recorder, mut runs) = Recorder::new(|_, _| false);
    queue.start(recorder);
    // Idle for a few pops first.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let jobs: Vec<String> = (0..24).map(|i| format!("idle-{i}")).collect();
    for job in &jobs {
        queue.push(Bytes::from(job.clone())).await.unwrap();
        // 24 pushes over 3 s: some land in every part of a one-second pop.
        tokio::time::sleep(Duration::from_millis(125)).await;
    }
    let mut ran = Vec::new();
    for _ in &jobs {
        ran.push(String::from_utf8(next_run(&mut runs, "an idle queue's job").await).unwrap());
    }
    ran.sort();
    let mut want = jobs.clone();
    want.sort();
    assert_eq!(ran, want, "every job ran once");
    drained(&url, "queue:idle:*").await;
}

/// One closed batch as a handler saw it.
type SeenBatch = (String, Vec<Vec<u8>>);

/// Records each batch it runs and fails the first `failures` of them.
struct Batches {
    ran: mpsc::UnboundedSender<SeenBatch>,
    failures: Mutex<usize>,
}

#[async_trait]
impl JobHandler for Batches {
    async fn run(&self, _job: &[u8]) -> Result<(), JobError> {
        Err("only batches are pushed here".into())
    }

    async fn run_batch(&self, group: &str, items: &[Bytes]) -> Result<(), JobError> {
        let items = items.iter().map(|i| i.to_vec()).collect();
        let _ = self.ran.send((group.to_owned(), items));
        let mut failures = self.failures.lock();
        if *failures > 0 {
            *failures -= 1;
            return Err("failing as the test asks".into());
        }
        Ok(())
    }
}

async fn next_batch(batches: &mut mpsc::UnboundedReceiver<SeenBatch>) -> SeenBatch {
    tokio::time::timeout(DEADLINE, batches.recv())
        .await
        .unwrap_or_else(|_| panic!("no batch ran within {DEADLINE:?}"))
        .expect("the handler is alive")
}

/// Items pushed to a batch are in Redis at once: a process that pushed them and died before the
/// batch closed loses none; any other process closes the batch when its window ends and runs it
/// once, the items in order (bytes of any kind), and a failed batch runs again whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_batches_outlive_the_process_and_run_whole_in_order() {
    let Some(redis) = Redis::start(
        "open_batches_outlive_the_process_and_run_whole_in_order",
        &[],
    ) else {
        return;
    };
    let url = redis.url("", 0);
    let window = Duration::from_millis(400);
    let items: Vec<Vec<u8>> = vec![
        b"{\"name\":\"one\"}".to_vec(),
        b"12:with,colons:and,commas,".to_vec(),
        Vec::new(),
        vec![0, 255, b':', b',', 7],
    ];
    let pushed_at = Instant::now();
    {
        // A process that pushes and dies without ever starting its queue.
        let dying = RedisQueue::new(&url, "batch:", "hooks", POLICY, 1).unwrap();
        for item in &items {
            dying
                .push_to_batch("0:app-1", Bytes::from(item.clone()), window)
                .await
                .unwrap();
        }
        dying
            .push_to_batch("1:app:2", Bytes::from_static(b"other"), window)
            .await
            .unwrap();
    }
    assert_eq!(
        keys(&url, "batch:*").await,
        [
            "batch:queue:hooks:batch:0:app-1",
            "batch:queue:hooks:batch:1:app:2",
            "batch:queue:hooks:batches"
        ],
        "the open batches are in Redis"
    );

    let (ran, mut batches) = mpsc::unbounded_channel();
    let queue = RedisQueue::new(&url, "batch:", "hooks", POLICY, 1).unwrap();
    // The first batch run fails: it runs again, whole.
    queue.start(Arc::new(Batches {
        ran,
        failures: Mutex::new(1),
    }));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_batch(&mut batches).await);
    }
    assert!(
        pushed_at.elapsed() >= window,
        "no batch closes before its window"
    );
    let by_group = |group: &str| -> Vec<&Vec<Vec<u8>>> {
        seen.iter()
            .filter(|(g, _)| g == group)
            .map(|(_, items)| items)
            .collect()
    };
    let first = by_group("0:app-1");
    let other = by_group("1:app:2");
    assert_eq!(
        first.len() + other.len(),
        3,
        "one batch failed once and ran again: {seen:?}"
    );
    for batch in first {
        assert_eq!(batch, &items, "the items of a batch, in order, whole");
    }
    for batch in other {
        assert_eq!(batch, &vec![b"other".to_vec()]);
    }
    drained(&url, "batch:queue:hooks:*").await;
}

/// A batch that reaches its size limit closes at once, long before its window; the items beyond
/// the limit follow at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_closes_at_once() {
    let Some(redis) = Redis::start("a_full_batch_closes_at_once", &[]) else {
        return;
    };
    let url = redis.url("", 0);
    let (ran, mut batches) = mpsc::unbounded_channel();
    let queue = RedisQueue::new(&url, "full:", "hooks", POLICY, 1).unwrap();
    queue.start(Arc::new(Batches {
        ran,
        failures: Mutex::new(0),
    }));
    let hour = Duration::from_secs(3600);
    for i in 0..1001 {
        queue
            .push_to_batch("g", Bytes::from(format!("{i}")), hour)
            .await
            .unwrap();
    }
    let (group, items) = next_batch(&mut batches).await;
    assert_eq!(group, "g");
    assert_eq!(items.len(), 1000, "a batch holds at most 1000 items");
    assert_eq!(items[999], b"999");
    let (_, rest) = next_batch(&mut batches).await;
    assert_eq!(rest, [b"1000"], "the item beyond the limit follows at once");
    drained(&url, "full:queue:hooks:*").await;
}
