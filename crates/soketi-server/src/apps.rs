//! Where apps come from. The server asks an [`AppManager`] by id (HTTP API) or by key
//! (WebSocket); drivers for databases plug in behind the same trait.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use soketi_protocol::App;

/// Finds apps by id or key.
#[async_trait]
pub trait AppManager: Send + Sync {
    /// The app with this id.
    async fn find_by_id(&self, id: &str) -> Option<Arc<App>>;
    /// The app with this key.
    async fn find_by_key(&self, key: &str) -> Option<Arc<App>>;
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
    async fn find_by_id(&self, id: &str) -> Option<Arc<App>> {
        self.by_id.get(id).cloned()
    }

    async fn find_by_key(&self, key: &str) -> Option<Arc<App>> {
        self.by_key.get(key).cloned()
    }
}
