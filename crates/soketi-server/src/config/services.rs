//! The settings of the services beside the transports (the webhook queue, the webhooks, the
//! SQL app managers' pools and the caches), built from the configuration in one place.

use std::time::Duration;

use soketi_adapter_core::RetryPolicy;

use super::Config;
use crate::webhooks::WebhookSettings;

impl Config {
    /// How the webhook queue retries a job.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.queue.max_attempts.max(1),
            backoff: Duration::from_millis(self.queue.backoff),
        }
    }

    /// Batching and delays of webhooks.
    pub(crate) fn webhook_settings(&self) -> WebhookSettings {
        WebhookSettings {
            batching: self
                .webhooks
                .batching
                .enabled
                .then(|| Duration::from_millis(self.webhooks.batching.duration.max(1))),
            vacated_delay: Duration::from_millis(self.webhooks.vacated_delay),
        }
    }

    /// How long a webhook's receiver has to answer.
    pub fn webhook_timeout(&self) -> Duration {
        Duration::from_millis(self.webhooks.timeout)
    }

    /// The smallest and largest pool of a SQL app manager.
    pub fn sql_pool_size(&self) -> (u32, u32) {
        let pooling = &self.database_pooling;
        if pooling.enabled {
            (pooling.min, pooling.max)
        } else {
            (0, 4)
        }
    }

    /// How long an app lookup is cached when `appManager.cache.enabled`; `None` for as long as
    /// the process runs.
    pub fn app_cache_ttl(&self) -> Option<Duration> {
        u64::try_from(self.app_manager.cache.ttl)
            .ok()
            .map(Duration::from_secs)
    }

    /// How long a cache channel keeps its last event.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.channel_limits.cache_ttl)
    }
}
