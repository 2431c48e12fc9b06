//! The Redis cache against a real redis-server on a free port: entries are shared by every
//! instance, live under the key prefix in the chosen database, and expire with Redis.

mod support;

use std::time::Duration;

use bytes::Bytes;
use soketi_adapter_core::Cache;
use soketi_adapter_redis::RedisCache;
use support::{DEADLINE, Redis, poll, raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_shared_prefixed_and_expire() {
    // An ACL user that may only touch keys under the prefix: a key anywhere else is refused.
    let Some(redis) = Redis::start(
        "entries_are_shared_prefixed_and_expire",
        &[
            "--user",
            "cache",
            "on",
            ">cache-password",
            "~pfx:*",
            "+@all",
        ],
    ) else {
        return;
    };
    let url = redis.url("cache:cache-password@", 7);
    let writer = RedisCache::new(&url, "pfx:").unwrap();
    let reader = RedisCache::new(&url, "pfx:").unwrap();
    assert!(writer.is_shared());

    let ttl = Duration::from_millis(500);
    writer
        .set("app:1:channel:cache-x:cache_miss", Bytes::from("last"), ttl)
        .await
        .unwrap();
    assert_eq!(
        reader
            .get("app:1:channel:cache-x:cache_miss")
            .await
            .unwrap(),
        Some(Bytes::from("last")),
        "another instance, as another node, reads it"
    );

    let mut conn = raw(&url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["pfx:app:1:channel:cache-x:cache_miss"]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= ttl.as_millis() as i64,
        "Redis expires it after the TTL: {pttl} ms left"
    );
    let mut default_db = raw(&redis.url("cache:cache-password@", 0)).await;
    let size: i64 = redis::cmd("DBSIZE")
        .query_async(&mut default_db)
        .await
        .unwrap();
    assert_eq!(size, 0, "nothing lands in database 0");

    poll("the entry to expire", DEADLINE, || async {
        reader
            .get("app:1:channel:cache-x:cache_miss")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // Without the prefix, the ACL refuses the key: the cache said where its keys go.
    let unprefixed = RedisCache::new(&url, "").unwrap();
    assert!(
        unprefixed.get("elsewhere").await.is_err(),
        "the ACL allows only pfx:*"
    );
}
