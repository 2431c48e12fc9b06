//! Apps in soketi's DynamoDB table (`apps` by default): hash key `AppId`, lookups by key
//! through the global secondary index `AppKeyIndex` on `AppKey`, attributes in soketi's
//! PascalCase (`MaxConnections`, `EnableClientMessages`, ...). Values go through the same
//! [`AppConfig`](crate::config::AppConfig) as configured apps: booleans stored as soketi stores them (binary `"true"` /
//! `"false"`), as DynamoDB booleans or as numbers; `Webhooks` as a JSON string or a list.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use soketi_aws::dynamodb::Table;
use soketi_aws::{AwsClient, AwsError, CredentialsProvider, Endpoint, Service};
use soketi_protocol::{App, AppLimits};

use super::{AppManager, AppStoreError, stored_app};

/// How long one lookup may take before the store counts as unavailable.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The index soketi's table is queried through by key.
const KEY_INDEX: &str = "AppKeyIndex";

/// Looks apps up in a DynamoDB table.
pub struct DynamoDbAppManager {
    table: Table,
    limits: AppLimits,
}

impl DynamoDbAppManager {
    /// A manager for `table` in `region`, at `endpoint` when set (else the environment's
    /// `AWS_ENDPOINT_URL_DYNAMODB` or AWS's). Nothing is asked until the first lookup.
    pub fn new(
        table: &str,
        region: &str,
        endpoint: Option<&str>,
        limits: AppLimits,
    ) -> Result<Self, AppStoreError> {
        let http = soketi_aws::http_client().map_err(|e| AppStoreError::Other(Box::new(e)))?;
        let endpoint = Endpoint::resolve(Service::DynamoDb, region, endpoint, |name| {
            std::env::var(name).ok()
        })
        .map_err(|e| AppStoreError::Other(Box::new(e)))?;
        let credentials = Arc::new(CredentialsProvider::from_process_env(http.clone()));
        let client = AwsClient::new(
            http,
            credentials,
            Service::DynamoDb,
            region,
            endpoint,
            LOOKUP_TIMEOUT,
        );
        Ok(Self {
            table: Table::new(client, table),
            limits,
        })
    }

    fn app(&self, item: Option<serde_json::Value>) -> Result<Option<Arc<App>>, AppStoreError> {
        item.map(|item| stored_app(item, self.table.name(), &self.limits))
            .transpose()
    }
}

fn unavailable(error: AwsError) -> AppStoreError {
    match error {
        AwsError::Timeout { after, .. } => AppStoreError::Timeout(after),
        other => AppStoreError::Other(Box::new(other)),
    }
}

#[async_trait]
impl AppManager for DynamoDbAppManager {
    async fn find_by_id(&self, id: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        let item = self.table.get("AppId", id).await.map_err(unavailable)?;
        self.app(item)
    }

    async fn find_by_key(&self, key: &str) -> Result<Option<Arc<App>>, AppStoreError> {
        let item = self
            .table
            .first_in_index(KEY_INDEX, "AppKey", key)
            .await
            .map_err(unavailable)?;
        self.app(item)
    }
}
