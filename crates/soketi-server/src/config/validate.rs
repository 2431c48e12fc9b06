//! Checks of a loaded configuration: values that parse but make no sense, and settings this
//! build cannot run with.

use super::drivers::{
    AdapterDriver, AppManagerDriver, CacheDriver, QueueDriver, RateLimiterDriver,
};
use super::env::{self, ENV_OPTIONS, OptionKind};
use super::{Config, ConfigError, RedisUser};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "activityTimeout (ACTIVITY_TIMEOUT)",
                self.activity_timeout as f64,
            ),
            ("pongTimeout (PONG_TIMEOUT)", self.pong_timeout as f64),
            (
                "eventLimits.maxPayloadInKb (EVENT_MAX_SIZE_IN_KB)",
                self.event_limits.max_payload_in_kb,
            ),
            (
                "presence.maxMemberSizeInKb (PRESENCE_MAX_MEMBER_SIZE)",
                self.presence.max_member_size_in_kb,
            ),
            (
                "httpApi.requestLimitInMb (HTTP_MAX_REQUEST_SIZE)",
                self.http_api.request_limit_in_mb,
            ),
            (
                "maxBackpressure (MAX_BACKPRESSURE)",
                self.max_backpressure as f64,
            ),
            (
                "httpApi.headersTimeout (HTTP_HEADERS_TIMEOUT)",
                self.http_api.headers_timeout as f64,
            ),
            (
                "httpApi.bodyTimeout (HTTP_BODY_TIMEOUT)",
                self.http_api.body_timeout as f64,
            ),
            (
                "websocket.messageTimeout (WEBSOCKET_MESSAGE_TIMEOUT)",
                self.websocket.message_timeout as f64,
            ),
            (
                "channelLimits.maxSubscriptionsPerConnection (CHANNEL_LIMITS_MAX_SUBSCRIPTIONS_PER_CONNECTION)",
                self.channel_limits.max_subscriptions_per_connection as f64,
            ),
            (
                "presence.maxUserIdLength (PRESENCE_MAX_USER_ID_LENGTH)",
                self.presence.max_user_id_length as f64,
            ),
        ];
        for (name, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return Err(ConfigError::NotPositive {
                    option: name,
                    value,
                });
            }
        }
        let message_kb = self.websocket.max_message_size_in_kb;
        if !(message_kb >= 0.0 && message_kb.is_finite()) {
            return Err(ConfigError::Negative {
                option: "websocket.maxMessageSizeInKb (WEBSOCKET_MAX_MESSAGE_SIZE)",
                value: message_kb,
            });
        }
        self.trusted_proxies()?;
        if self.apps().is_empty() {
            return Err(ConfigError::NoApps);
        }
        for (i, app) in self.app_manager.array.apps.iter().enumerate() {
            app.check(i)?;
        }
        Ok(())
    }

    /// Checks that this build can run with the configuration: settings that each parse but
    /// cannot run, alone or together. `config` prints a configuration that fails this;
    /// `start` refuses it.
    pub fn check_runnable(&self) -> Result<(), ConfigError> {
        self.check_sqs()?;
        self.check_dynamodb()?;
        self.check_redis_options()?;
        if self.adapter.driver == AdapterDriver::Redis {
            self.check_redis_adapter()?;
        }
        if self.rate_limiter.driver == RateLimiterDriver::Cluster
            && self.adapter.driver == AdapterDriver::Local
        {
            return Err(ConfigError::RateLimiterWithoutFleet);
        }
        if self.adapter.driver == AdapterDriver::Cluster {
            self.check_cluster()?;
        }
        for user in self.redis_users() {
            self.redis_endpoint(user)?;
        }
        self.check_sql_tables()?;
        Ok(())
    }

    /// The options whose kind `wanted` picks (giving its text) and whose value differs from the
    /// default, with that text.
    fn set_options(
        &self,
        wanted: fn(OptionKind) -> Option<&'static str>,
    ) -> Vec<(&'static env::EnvOption, &'static str)> {
        let (Ok(current), Ok(default)) = (
            serde_json::to_value(self),
            serde_json::to_value(Config::default()),
        ) else {
            return Vec::new();
        };
        ENV_OPTIONS
            .iter()
            .filter_map(|option| Some((option, wanted(option.kind)?)))
            .filter(|(option, _)| {
                env::value_at(&current, option.path) != env::value_at(&default, option.path)
            })
            .collect()
    }

    /// Checks the SQS queue's settings when it is the queue: a queue URL, and client options
    /// this build applies.
    fn check_sqs(&self) -> Result<(), ConfigError> {
        if self.queue.driver != QueueDriver::Sqs {
            return Ok(());
        }
        let url = &self.queue.sqs.queue_url;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::SqsQueueUrl { url: url.clone() });
        }
        let batch_size = self.queue.sqs.batch_size;
        if !(1..=10).contains(&batch_size) {
            return Err(ConfigError::SqsBatchSize { value: batch_size });
        }
        self.sqs_client_options()?;
        Ok(())
    }

    /// Checks that the DynamoDB app manager names its table.
    fn check_dynamodb(&self) -> Result<(), ConfigError> {
        if self.app_manager.driver == AppManagerDriver::Dynamodb
            && self.app_manager.dynamodb.table.trim().is_empty()
        {
            return Err(ConfigError::DynamoDbTable);
        }
        Ok(())
    }

    /// One line for each option that is set but has no effect here (soketi gave it none
    /// either), and for each key of the config file that names no option, to be logged once
    /// at start.
    pub fn no_effect_notices(&self) -> Vec<String> {
        let no_effect = |kind| match kind {
            OptionKind::NoEffect(reason) => Some(reason),
            _ => None,
        };
        let options = self
            .set_options(no_effect)
            .into_iter()
            .map(|(option, reason)| {
                format!(
                    "{} ({}) is set but has no effect here: {reason}",
                    option.path,
                    env::env_names_for(option.path)
                )
            });
        let keys = self.unknown_file_keys.iter().map(|key| {
            format!(
                "{key} in the config file names no option and is ignored (misspelt? \
                 docs/configuration.md lists every option)"
            )
        });
        options.chain(keys).collect()
    }

    /// The users of Redis that the configuration turns on.
    pub fn redis_users(&self) -> Vec<RedisUser> {
        let mut users = Vec::new();
        if self.adapter.driver == AdapterDriver::Redis {
            users.push(RedisUser::Adapter);
        }
        if self.cache.driver == CacheDriver::Redis {
            users.push(RedisUser::Cache);
        }
        if self.queue.driver == QueueDriver::Redis {
            users.push(RedisUser::Queue);
        }
        if self.rate_limiter.driver == RateLimiterDriver::Redis {
            users.push(RedisUser::RateLimiter);
        }
        users
    }

    /// Checks the Redis adapter's timers.
    fn check_redis_adapter(&self) -> Result<(), ConfigError> {
        if self.adapter.redis.heartbeat_interval == 0
            || self.adapter.redis.node_timeout <= self.adapter.redis.heartbeat_interval
        {
            return Err(ConfigError::RedisAdapterTimers {
                node_timeout: self.adapter.redis.node_timeout,
                heartbeat_interval: self.adapter.redis.heartbeat_interval,
            });
        }
        Ok(())
    }

    /// Checks that the cluster's addresses parse and its timers agree with each other.
    fn check_cluster(&self) -> Result<(), ConfigError> {
        self.cluster_mode()?;
        self.cluster_host()?;
        let c = &self.cluster;
        if c.hello_interval == 0 || c.check_interval == 0 {
            return Err(ConfigError::ClusterIntervals);
        }
        if c.node_timeout < c.check_interval || c.node_timeout <= c.hello_interval {
            return Err(ConfigError::ClusterNodeTimeout {
                node_timeout: c.node_timeout,
                check_interval: c.check_interval,
                hello_interval: c.hello_interval,
            });
        }
        if c.master_timeout < c.node_timeout {
            return Err(ConfigError::ClusterMasterTimeout {
                master_timeout: c.master_timeout,
                node_timeout: c.node_timeout,
            });
        }
        Ok(())
    }

    /// Checks that the table of the SQL app manager in use is a plain identifier.
    fn check_sql_tables(&self) -> Result<(), ConfigError> {
        for (driver, option, table) in [
            (
                AppManagerDriver::Postgres,
                "appManager.postgres.table (APP_MANAGER_POSTGRES_TABLE)",
                &self.app_manager.postgres.table,
            ),
            (
                AppManagerDriver::Mysql,
                "appManager.mysql.table (APP_MANAGER_MYSQL_TABLE)",
                &self.app_manager.mysql.table,
            ),
        ] {
            let identifier = !table.is_empty()
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if self.app_manager.driver == driver && !identifier {
                return Err(ConfigError::SqlTable {
                    option,
                    table: table.clone(),
                });
            }
        }
        Ok(())
    }
}
