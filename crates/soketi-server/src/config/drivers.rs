//! The drivers an option may name, with soketi's names and which of them this build runs.

use serde::{Deserialize, Serialize};

/// Declares a driver enum with soketi's names and which of them this build implements.
macro_rules! drivers {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal, $implemented:literal;)+ }) => {
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

            /// Whether this build can run with the driver.
            pub fn is_implemented(self) -> bool {
                match self { $($name::$variant => $implemented,)+ }
            }

            /// The drivers this build can run with.
            pub fn implemented() -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if $implemented { names.push($text); })+
                names
            }
        }
    };
}

drivers!(
    /// Where apps come from.
    AppManagerDriver {
        /// Apps listed in the configuration.
        #[default]
        Array = "array", true;
        /// A MySQL table.
        Mysql = "mysql", true;
        /// A PostgreSQL table.
        Postgres = "postgres", true;
        /// A DynamoDB table.
        Dynamodb = "dynamodb", true;
    }
);

drivers!(
    /// How nodes share channels.
    AdapterDriver {
        /// One node.
        #[default]
        Local = "local", true;
        /// Redis pub/sub.
        Redis = "redis", true;
        /// UDP discovery inside a private network.
        Cluster = "cluster", true;
        /// NATS.
        Nats = "nats", true;
    }
);

drivers!(
    /// Where rate limit budgets are kept.
    RateLimiterDriver {
        /// In this process.
        #[default]
        Local = "local", true;
        /// In Redis.
        Redis = "redis", true;
        /// Shared by the nodes of the cluster adapter.
        Cluster = "cluster", true;
    }
);

drivers!(
    /// Where cache channels and app lookups are cached.
    CacheDriver {
        /// In this process.
        #[default]
        Memory = "memory", true;
        /// In Redis, shared by every node.
        Redis = "redis", true;
    }
);

drivers!(
    /// How webhooks are queued.
    QueueDriver {
        /// Sent from this process at once.
        #[default]
        Sync = "sync", true;
        /// A durable queue in Redis.
        Redis = "redis", true;
        /// Amazon SQS.
        Sqs = "sqs", true;
    }
);

drivers!(
    /// How metrics are exposed.
    MetricsDriver {
        /// Prometheus text.
        #[default]
        Prometheus = "prometheus", true;
    }
);
