use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A store that counts its lookups and can be made to fail.
struct Counting {
    inner: ArrayAppManager,
    lookups: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl AppManager for Counting {
    async fn find_by_id(&self, id: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(AppStoreError::Other("down".into()));
        }
        self.inner.find_by_id(id).await
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(AppStoreError::Other("down".into()));
        }
        self.inner.find_by_key(key).await
    }
}

#[tokio::test]
async fn the_cache_answers_hits_and_misses_until_the_ttl() {
    let store = Arc::new(Counting {
        inner: ArrayAppManager::new([App::new("1", "k1", "s1")]),
        lookups: AtomicUsize::new(0),
        down: Default::default(),
    });
    let cache = CachedAppManager::new(store.clone(), Some(Duration::from_millis(100)));
    for _ in 0..5 {
        assert_eq!(cache.find_by_key("k1").await.unwrap().unwrap().id, "1");
        assert!(cache.find_by_key("nope").await.unwrap().is_none());
    }
    assert_eq!(cache.find_by_id("1").await.unwrap().unwrap().key, "k1");
    assert_eq!(
        store.lookups.load(Ordering::SeqCst),
        2,
        "one query per name"
    );

    // Errors are not kept: a store that comes back answers at once.
    tokio::time::sleep(Duration::from_millis(120)).await;
    store.down.store(true, Ordering::SeqCst);
    assert!(cache.find_by_key("k1").await.is_err());
    store.down.store(false, Ordering::SeqCst);
    assert!(cache.find_by_key("k1").await.unwrap().is_some());
}
