//! Where apps come from. The server asks an [`AppManager`] by id (HTTP API) or by key
//! (WebSocket): [`ArrayAppManager`] serves the configured apps, [`SqlAppManager`] reads
//! soketi's `apps` table in PostgreSQL or MySQL, [`DynamoDbAppManager`] its DynamoDB table, and [`CachedAppManager`] keeps lookups for a
//! while so that a connection storm does not become a query storm.

mod dynamodb;
mod sql;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use soketi_protocol::{App, AppLimits};

pub use self::dynamodb::DynamoDbAppManager;
pub use self::sql::{SqlAppManager, SqlBackend};

/// The store of apps could not answer (a database that is down or misconfigured).
#[derive(Debug, thiserror::Error)]
pub enum AppStoreError {
    /// The database settings (the URL, say) cannot be used.
    #[error("the app store is unavailable: invalid database settings: {0}")]
    Settings(#[source] sqlx::Error),
    /// The database did not answer within the lookup's time.
    #[error("the app store is unavailable: the app lookup took over {0:?}")]
    Timeout(Duration),
    /// The database answered with an error, or could not be reached.
    #[error("the app store is unavailable: {0}")]
    Database(#[from] sqlx::Error),
    /// A row of the apps table could not be read as an app.
    #[error("the app store is unavailable: a row of {table} is not an app: {source}")]
    NotAnApp {
        /// The apps table.
        table: String,
        /// What did not fit.
        source: serde_json::Error,
    },
    /// A row of the apps table has no id, key or secret.
    #[error("the app store is unavailable: a row of {table} lacks an id, key or secret")]
    Incomplete {
        /// The apps table.
        table: String,
    },
    /// Another store, not one of this crate's, failed.
    #[error("the app store is unavailable: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The app a store holds as `row` (a table's row or item, as JSON with soketi's field names),
/// with `limits` where it sets none; an error when it is not an app or lacks its credentials.
fn stored_app(
    row: serde_json::Value,
    table: &str,
    limits: &AppLimits,
) -> Result<Arc<App>, AppStoreError> {
    let config: crate::config::AppConfig =
        serde_json::from_value(row).map_err(|source| AppStoreError::NotAnApp {
            table: table.to_owned(),
            source,
        })?;
    if config.id.as_deref().is_none_or(str::is_empty)
        || config.key.as_deref().is_none_or(str::is_empty)
        || config.secret.as_deref().is_none_or(str::is_empty)
    {
        return Err(AppStoreError::Incomplete {
            table: table.to_owned(),
        });
    }
    Ok(Arc::new(config.to_app(0, limits)))
}

/// Finds apps by id or key. `Ok(None)` means there is no such app.
#[async_trait]
pub trait AppManager: Send + Sync {
    /// The app with this id.
    async fn find_by_id(&self, id: &str) -> Result<Option<Arc<App>>, AppStoreError>;
    /// The app with this key.
    async fn find_by_key(&self, key: &str) -> Result<Option<Arc<App>>, AppStoreError>;
}

/// Apps from the configuration, held in memory.
pub struct ArrayAppManager {
    by_id: HashMap<String, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
}

impl ArrayAppManager {
    /// A manager serving `apps`.
    pub fn new(apps: impl IntoIterator<Item = App>) -> Self {
        let mut by_id = HashMap::new();
        let mut by_key = HashMap::new();
        for app in apps {
            let app = Arc::new(app);
            by_id.insert(app.id.clone(), app.clone());
            by_key.insert(app.key.clone(), app);
        }
        Self { by_id, by_key }
    }
}

#[async_trait]
impl AppManager for ArrayAppManager {
    async fn find_by_id(&self, id: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        Ok(self.by_id.get(id).cloned())
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        Ok(self.by_key.get(key).cloned())
    }
}

type Entry = (Option<Arc<App>>, Instant);

/// Keeps the answers of another manager, found or not found, for `ttl` (or for the life of the
/// process); errors are never kept, so a store that comes back is asked again at once.
pub struct CachedAppManager {
    inner: Arc<dyn AppManager>,
    ttl: Option<Duration>,
    by_id: DashMap<String, Entry>,
    by_key: DashMap<String, Entry>,
}

impl CachedAppManager {
    /// Caches `inner` for `ttl`; `None` keeps answers as long as the process runs.
    pub fn new(inner: Arc<dyn AppManager>, ttl: Option<Duration>) -> Self {
        Self {
            inner,
            ttl,
            by_id: DashMap::new(),
            by_key: DashMap::new(),
        }
    }

    fn fresh(&self, map: &DashMap<String, Entry>, name: &str) -> Option<Option<Arc<App>>> {
        let entry = map.get(name)?;
        let fresh = self.ttl.is_none_or(|ttl| entry.1.elapsed() < ttl);
        fresh.then(|| entry.0.clone())
    }

    fn keep(&self, app: &Option<Arc<App>>, by: &DashMap<String, Entry>, name: &str) {
        let now = Instant::now();
        by.insert(name.to_owned(), (app.clone(), now));
        // An app found one way is found the other way too.
        if let Some(app) = app {
            self.by_id.insert(app.id.clone(), (Some(app.clone()), now));
            self.by_key
                .insert(app.key.clone(), (Some(app.clone()), now));
        }
    }
}

#[async_trait]
impl AppManager for CachedAppManager {
    async fn find_by_id(&self, id: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        if let Some(hit) = self.fresh(&self.by_id, id) {
            return Ok(hit);
        }
        let app = self.inner.find_by_id(id).await?;
        self.keep(&app, &self.by_id, id);
        Ok(app)
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        if let Some(hit) = self.fresh(&self.by_key, key) {
            return Ok(hit);
        }
        let app = self.inner.find_by_key(key).await?;
        self.keep(&app, &self.by_key, key);
        Ok(app)
    }
}

#[cfg(test)]
mod tests;
