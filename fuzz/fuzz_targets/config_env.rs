//! Configuration from the environment: any value for a handful of options of every kind
//! (numbers, booleans, lists, JSON apps), loaded as the server loads it. A bad value is an
//! error naming the option; nothing panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use soketi_server::Config;

/// Options of each shape the loader reads.
const NAMES: &[&str] = &[
    "SOKETI_PORT",
    "SOKETI_DEBUG",
    "SOKETI_ADAPTER_DRIVER",
    "SOKETI_CLUSTER_UNICAST_ADDRESSES",
    "SOKETI_CLUSTER_MULTICAST_ADDRESS",
    "SOKETI_ADAPTER_NATS_SERVERS",
    "SOKETI_DB_REDIS_SENTINELS",
    "SOKETI_TRUSTED_PROXIES",
    "SOKETI_DEFAULT_APP_WEBHOOKS",
    "SOKETI_DEFAULT_APP_ALLOWED_ORIGINS",
    "SOKETI_DEFAULT_APP_MAX_CONNS",
    "SOKETI_EVENT_MAX_SIZE_IN_KB",
    "SOKETI_WEBSOCKET_MAX_MESSAGE_SIZE",
    "SOKETI_HTTP_HEADERS_TIMEOUT",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let name = NAMES[usize::from(which) % NAMES.len()];
    let loaded = Config::load_from(None, |wanted| (wanted == name).then(|| value.to_owned()));
    if let Ok(config) = loaded {
        let _ = config.check_runnable();
        let _ = config.apps();
    }
});
