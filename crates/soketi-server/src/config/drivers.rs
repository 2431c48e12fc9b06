//! The drivers an option may name, with soketi's names.

use serde::{Deserialize, Serialize};

/// Declares a driver enum with soketi's names.
macro_rules! drivers {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The name as configured.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }
    };
}

drivers!(
    /// Where apps come from.
    AppManagerDriver {
        /// Apps listed in the configuration.
        #[default]
        Array = "array";
        /// A MySQL table.
        Mysql = "mysql";
        /// A PostgreSQL table.
        Postgres = "postgres";
        /// A DynamoDB table.
        Dynamodb = "dynamodb";
    }
);

drivers!(
    /// How nodes share channels.
    AdapterDriver {
        /// One node.
        #[default]
        Local = "local";
        /// Redis pub/sub.
        Redis = "redis";
        /// UDP discovery inside a private network.
        Cluster = "cluster";
        /// NATS.
        Nats = "nats";
    }
);

drivers!(
    /// Where rate limit budgets are kept.
    RateLimiterDriver {
        /// In this process.
        #[default]
        Local = "local";
        /// In Redis.
        Redis = "redis";
        /// Shared by the nodes of the cluster adapter.
        Cluster = "cluster";
    }
);

drivers!(
    /// Where cache channels and app lookups are cached.
    CacheDriver {
        /// In this process.
        #[default]
        Memory = "memory";
        /// In Redis, shared by every node.
        Redis = "redis";
    }
);

drivers!(
    /// How webhooks are queued.
    QueueDriver {
        /// Sent from this process at once.
        #[default]
        Sync = "sync";
        /// A durable queue in Redis.
        Redis = "redis";
        /// Amazon SQS.
        Sqs = "sqs";
    }
);

drivers!(
    /// How metrics are exposed.
    MetricsDriver {
        /// Prometheus text.
        #[default]
        Prometheus = "prometheus";
    }
);
