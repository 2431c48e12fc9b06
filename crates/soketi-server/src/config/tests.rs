use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use soketi_protocol::AppLimits;

use super::env;
use super::*;

fn load(file: Option<&Path>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let config = load_only(file, env)?;
    config.check_runnable()?;
    Ok(config)
}

fn load_only(file: Option<&Path>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load_from(file, |name| env.get(name).cloned())
}

fn file(extension: &str, text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(&format!(".{extension}"))
        .tempfile()
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_are_soketis() {
    let c = load(None, &[]).unwrap();
    assert_eq!(c.bind_address(), "0.0.0.0:6001");
    assert_eq!(c.metrics_address(), "0.0.0.0:9601");
    let apps = c.apps();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        (
            apps[0].id.as_str(),
            apps[0].key.as_str(),
            apps[0].secret.as_str()
        ),
        ("app-id", "app-key", "app-secret")
    );
    assert_eq!(apps[0].max_connections, None);
    assert_eq!(apps[0].limits, AppLimits::default());
    assert_eq!(c.cluster.port, 11002);
    assert_eq!(c.adapter.driver, AdapterDriver::Local);
}

#[test]
fn precedence_defaults_file_unprefixed_prefixed() {
    let f = file("json", r#"{"eventLimits": {"maxNameLength": 50}}"#);
    assert_eq!(load(None, &[]).unwrap().event_limits.max_name_length, 200);
    assert_eq!(
        load(Some(f.path()), &[])
            .unwrap()
            .event_limits
            .max_name_length,
        50
    );
    let c = load(Some(f.path()), &[("EVENT_MAX_NAME_LENGTH", "60")]).unwrap();
    assert_eq!(c.event_limits.max_name_length, 60);
    let c = load(
        Some(f.path()),
        &[
            ("EVENT_MAX_NAME_LENGTH", "60"),
            ("SOKETI_EVENT_MAX_NAME_LENGTH", "70"),
        ],
    )
    .unwrap();
    assert_eq!(c.event_limits.max_name_length, 70);
}

#[test]
fn generic_names_need_the_prefix() {
    let c = load(None, &[("PORT", "1234"), ("HOST", "x"), ("DEBUG", "*")]).unwrap();
    assert_eq!(c.port, 6001);
    assert_eq!(c.host, "0.0.0.0");
    assert!(!c.debug);
    assert_eq!(load(None, &[("SOKETI_PORT", "1234")]).unwrap().port, 1234);
}

#[test]
fn seed_variables_in_both_spellings() {
    for prefix in ["", "SOKETI_"] {
        let driver = format!("{prefix}ADAPTER_DRIVER");
        let port = format!("{prefix}CLUSTER_PORT");
        let limiter = format!("{prefix}RATE_LIMITER_DRIVER");
        // Both cluster drivers run; the cluster rate limiter alone, without a horizontal
        // adapter to share its budgets through, is refused.
        load(
            None,
            &[
                (&driver, "cluster"),
                (&port, "11005"),
                (&limiter, "cluster"),
            ],
        )
        .expect("the cluster adapter and rate limiter run together");
        let e = load(None, &[(&limiter, "cluster")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("RATE_LIMITER_DRIVER") && e.contains("ADAPTER_DRIVER"),
            "{e}"
        );
        let c = load_only(
            None,
            &[
                (&driver, "cluster"),
                (&port, "11005"),
                (&limiter, "cluster"),
            ],
        )
        .unwrap();
        assert_eq!(c.adapter.driver, AdapterDriver::Cluster);
        assert_eq!(c.rate_limiter.driver, RateLimiterDriver::Cluster);
        assert_eq!(c.cluster.port, 11005);
    }
}

#[test]
fn values_are_read_as_json_first() {
    let c = load(
        None,
        &[
            ("SOKETI_DEFAULT_APP_ID", "123"),
            ("SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "true"),
            ("SOKETI_DEFAULT_APP_MAX_CONNS", "2"),
            (
                "SOKETI_CLUSTER_UNICAST_ADDRESSES",
                r#"["10.0.0.1","10.0.0.2:11002"]"#,
            ),
            (
                "SOKETI_DEFAULT_APP_WEBHOOKS",
                r#"[{"url":"http://x/h","event_types":["channel_occupied"]}]"#,
            ),
            ("SOKETI_CLUSTER_PREFIX", "tenant-a"),
        ],
    )
    .unwrap();
    let app = &c.apps()[0];
    assert_eq!(app.id, "123");
    assert_eq!(app.key, "app-key", "unset fields keep the default app's");
    assert!(app.enable_client_messages);
    assert_eq!(app.max_connections, Some(2));
    assert_eq!(c.cluster.prefix, "tenant-a");
    assert_eq!(
        c.cluster.unicast,
        Some(serde_json::json!(["10.0.0.1", "10.0.0.2:11002"]))
    );
    let hooks = c.app_manager.array.apps[0].webhooks.as_ref().unwrap();
    assert_eq!(hooks[0].url.as_deref(), Some("http://x/h"));
}

#[test]
fn apps_from_files_in_every_format_and_spelling() {
    let json = file(
        "json",
        r#"{"appManager.array.apps": [
            {"id": "a", "key": "ka", "secret": "sa"},
            {"id": 2, "key": "kb", "secret": "sb", "max_connections": 5, "maxEventBatchSize": "3"}
        ]}"#,
    );
    let toml = file(
        "toml",
        r#"
        [[appManager.array.apps]]
        id = "a"
        key = "ka"
        secret = "sa"
        [[appManager.array.apps]]
        id = "2"
        key = "kb"
        secret = "sb"
        max_connections = 5
        maxEventBatchSize = 3
        "#,
    );
    let yaml = file(
        "yaml",
        "appManager:\n  array:\n    apps:\n      - {id: a, key: ka, secret: sa}\n      - {id: '2', key: kb, secret: sb, max_connections: 5, maxEventBatchSize: 3}\n",
    );
    for f in [&json, &toml, &yaml] {
        let loaded = load(Some(f.path()), &[]).unwrap();
        assert!(
            loaded.unknown_file_keys.is_empty(),
            "{:?}",
            loaded.unknown_file_keys
        );
        let apps = loaded.apps();
        assert_eq!(apps.len(), 2, "{}", f.path().display());
        assert_eq!(apps[1].id, "2");
        assert_eq!(apps[1].max_connections, Some(5));
        assert_eq!(apps[1].limits.max_event_batch_size, 3);
        assert_eq!(apps[1].limits.max_event_name_length, 200);
    }
    // The default app's names change the first app of the file, not the list.
    let apps = load(Some(json.path()), &[("DEFAULT_APP_KEY", "override")])
        .unwrap()
        .apps();
    assert_eq!(
        (apps.len(), apps[0].key.as_str(), apps[0].id.as_str()),
        (2, "override", "a")
    );
}

#[test]
fn bad_values_name_the_option_and_source() {
    let check = |env: &[(&str, &str)], needles: &[&str]| {
        let e = load(None, env).unwrap_err().to_string();
        for needle in needles {
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
        assert!(!e.contains('\n'), "one line: {e:?}");
    };
    check(&[("SOKETI_PORT", "abc")], &["port", "SOKETI_PORT"]);
    check(&[("ADAPTER_DRIVER", "bogus")], &["ADAPTER_DRIVER", "local"]);
    check(&[("SOKETI_ACTIVITY_TIMEOUT", "0")], &["ACTIVITY_TIMEOUT"]);
    check(
        &[("APP_MANAGER_DRIVER", "mongodb")],
        &["APP_MANAGER_DRIVER", "array", "dynamodb"],
    );
    check(&[("QUEUE_DRIVER", "sqs")], &["QUEUE_SQS_URL"]);
    check(
        &[
            ("QUEUE_DRIVER", "sqs"),
            (
                "QUEUE_SQS_URL",
                "https://sqs.eu-west-1.amazonaws.com/1/hooks",
            ),
            ("QUEUE_SQS_BATCH_SIZE", "11"),
        ],
        &["QUEUE_SQS_BATCH_SIZE", "1 to 10"],
    );
    check(
        &[
            ("APP_MANAGER_DRIVER", "dynamodb"),
            ("APP_MANAGER_DYNAMODB_TABLE", " "),
        ],
        &["APP_MANAGER_DYNAMODB_TABLE"],
    );
    check(
        &[
            ("QUEUE_DRIVER", "sqs"),
            (
                "QUEUE_SQS_URL",
                "https://sqs.eu-west-1.amazonaws.com/1/hooks",
            ),
            (
                "QUEUE_SQS_CLIENT_OPTIONS",
                r#"{"httpOptions":{"timeout":1}}"#,
            ),
        ],
        &["QUEUE_SQS_CLIENT_OPTIONS", "clientOptions.httpOptions"],
    );
    check(
        &[(
            "DEFAULT_APP_WEBHOOKS",
            r#"[{"event_types":["channel_occupied"]}]"#,
        )],
        &[
            "webhooks.0",
            "\"app-id\"",
            "neither a url nor a lambda_function",
        ],
    );
    check(
        &[(
            "DEFAULT_APP_WEBHOOKS",
            r#"[{"lambda_function":"f","lambda":{"client_options":{"logger":1}}}]"#,
        )],
        &["webhooks.0", "lambda.client_options.logger"],
    );
    check(
        &[("SOKETI_DEFAULT_APP_MAX_CONNS", "lots")],
        &["maxConnections", "SOKETI_DEFAULT_APP_MAX_CONNS"],
    );

    let bad = file("json", r#"{"port": "abc"}"#);
    let e = load(Some(bad.path()), &[]).unwrap_err().to_string();
    assert!(
        e.contains("port") && e.contains(&bad.path().display().to_string()),
        "{e}"
    );
    let broken = file("json", "{");
    let e = load(Some(broken.path()), &[]).unwrap_err().to_string();
    assert!(e.contains(&broken.path().display().to_string()), "{e}");
    let e = load(Some(Path::new("/nonexistent/soketi.json")), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/soketi.json"), "{e}");
    let missing_secret = file(
        "json",
        r#"{"appManager": {"array": {"apps": [{"id": "a", "key": "k"}, {"id": "b", "key": "kb"}]}}}"#,
    );
    let e = load(Some(missing_secret.path()), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("apps.1 has no secret"), "{e}");
}

#[test]
fn secrets_are_masked() {
    let c = load(None, &[("SOKETI_DB_REDIS_PASSWORD", "hunter2")]).unwrap();
    let shown = c.masked_json().to_string();
    assert!(!shown.contains("app-secret"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("********"));
    assert!(shown.contains("app-key"));
}

/// Every environment name and option path in the code is documented.
#[test]
fn every_option_is_documented() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .expect("docs/configuration.md exists");
    let missing: Vec<String> = ENV_OPTIONS
        .iter()
        .flat_map(|o| {
            let name = format!("`SOKETI_{}`", o.name);
            let path = format!("`{}`", o.path);
            [name, path]
        })
        .filter(|needle| !page.contains(needle.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from docs/configuration.md: {missing:?}"
    );
    let json = serde_json::to_value(Config::default()).unwrap();
    let mut leaves = Vec::new();
    collect_leaves("", &json, &mut leaves);
    let undocumented: Vec<&String> = leaves
        .iter()
        .filter(|path| !page.contains(&format!("`{path}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "options missing from docs/configuration.md: {undocumented:?}"
    );
}

fn collect_leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() && prefix != "cors" => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                if path == "appManager.array.apps" {
                    out.push(path);
                } else {
                    collect_leaves(&path, v, out);
                }
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn hostile_client_settings_read_from_the_environment() {
    let c = load(
        None,
        &[
            ("SOKETI_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8"),
            ("IP_MAX_CONNECTIONS", "20"),
            ("SOKETI_IP_MAX_CONNECTS_PER_SEC", "5"),
            (
                "SOKETI_DEFAULT_APP_ALLOWED_ORIGINS",
                r#"["https://*.example.com","http://localhost:3000"]"#,
            ),
            ("WEBSOCKET_MAX_MESSAGE_SIZE", "64"),
            ("SOKETI_HTTP_HEADERS_TIMEOUT", "5000"),
        ],
    )
    .unwrap();
    assert_eq!(c.trusted_proxies().unwrap().len(), 2);
    assert_eq!(
        (
            c.ip_limits.max_connections,
            c.ip_limits.max_connects_per_sec
        ),
        (20, 5)
    );
    assert_eq!(
        c.apps()[0].allowed_origins,
        ["https://*.example.com", "http://localhost:3000"]
    );
    assert_eq!(c.max_message_bytes(&c.apps()[0].limits), 64 * 1024);
    assert_eq!(c.headers_timeout(), std::time::Duration::from_secs(5));
    // The defaults: a message sized for the app's largest event and its envelope.
    let d = load(None, &[]).unwrap();
    assert_eq!(d.max_message_bytes(&d.apps()[0].limits), 128 * 1024);

    let bad = load(None, &[("TRUSTED_PROXIES", "10.0.0.0/8,not-an-address")]);
    let error = bad.expect_err("refused").to_string();
    assert!(error.contains("not-an-address"), "{error}");
    let negative = load(None, &[("WEBSOCKET_MAX_MESSAGE_SIZE", "-1")]);
    assert!(negative.is_err());
}

/// A value other than the default for each option, as the environment would hold it: the
/// default changed by kind (a boolean flipped, a number raised, a string replaced), or one
/// picked here where the default gives no hint (enums, unset values, lists).
fn sample(option: &EnvOption, default: &serde_json::Value) -> String {
    use serde_json::Value;
    let picked = match option.name {
        "MODE" => "worker",
        "LOG_FORMAT" => "json",
        "APP_MANAGER_DRIVER" => "postgres",
        "ADAPTER_DRIVER" => "redis",
        "RATE_LIMITER_DRIVER" => "redis",
        "CACHE_DRIVER" => "redis",
        "QUEUE_DRIVER" => "redis",
        "METRICS_DRIVER" => return String::new(),
        "TRUSTED_PROXIES" => "10.0.0.0/8",
        "CLUSTER_MULTICAST_ADDRESS" => "239.1.2.3",
        "CLUSTER_UNICAST_ADDRESSES" => r#"["10.0.0.2"]"#,
        "DB_REDIS_SENTINELS" | "DB_REDIS_CLUSTER_NODES" => r#"[{"host":"10.0.0.3","port":1}]"#,
        "DEFAULT_APP_WEBHOOKS" => r#"[{"url":"http://127.0.0.1:1/","event_types":[]}]"#,
        "DEFAULT_APP_ALLOWED_ORIGINS" => r#"["https://example.com"]"#,
        "ADAPTER_REDIS_PUB_OPTIONS"
        | "ADAPTER_REDIS_SUB_OPTIONS"
        | "CACHE_REDIS_OPTIONS"
        | "QUEUE_REDIS_OPTIONS"
        | "RATE_LIMITER_REDIS_OPTIONS" => r#"{"db":2}"#,
        "QUEUE_SQS_CLIENT_OPTIONS" => r#"{"maxAttempts":2}"#,
        "ADAPTER_NATS_SERVERS" => r#"["10.0.0.4:4222"]"#,
        "ADAPTER_NATS_NODES_NUMBER" => "3",
        // A version reads as a number, as soketi's JSON-first reading makes it.
        "APP_MANAGER_MYSQL_VERSION" | "APP_MANAGER_POSTGRES_VERSION" => "5.7",
        _ => "",
    };
    if !picked.is_empty() {
        return picked.to_owned();
    }
    match default {
        Value::Bool(b) => (!b).to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => (i + 3).to_string(),
            (None, Some(f)) => (f + 3.0).to_string(),
            _ => unreachable!("a JSON number is an integer or a float"),
        },
        Value::String(s) if s.parse::<f64>().is_ok() => format!("{s}.1"),
        Value::String(_) | Value::Null => format!("sample-{}", option.name.to_lowercase()),
        other => panic!("no sample for {} (default {other})", option.name),
    }
}

/// Every option the configuration knows is one of two kinds, and the test proves which:
/// - `Effect`: a value other than the default reaches the loaded configuration (the field the
///   server reads), and `check_runnable` accepts it;
/// - `NoEffect`: accepted, listed in docs/migrating-from-soketi.md, and one start-up line
///   (`Config::no_effect_notices`, which `start` logs) names it.
#[test]
fn every_option_takes_effect_or_is_documented_as_having_none() {
    let migrating = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/migrating-from-soketi.md"
    ))
    .expect("docs/migrating-from-soketi.md exists");
    let default = serde_json::to_value(Config::default()).unwrap();
    assert!(load(None, &[]).unwrap().no_effect_notices().is_empty());
    let mut kinds = HashMap::new();
    for option in ENV_OPTIONS {
        let default_value = env::value_at(&default, option.path);
        let value = sample(option, default_value);
        let name = format!("SOKETI_{}", option.name);
        let env = [(name.as_str(), value.as_str())];
        let kind = match option.kind {
            OptionKind::Effect => {
                if option.name == "METRICS_DRIVER" {
                    // prometheus is soketi's only metrics driver, and the only one accepted.
                    let e = load_only(None, &[(name.as_str(), "statsd")]).unwrap_err();
                    assert!(e.to_string().contains(&name), "{e}");
                    "Effect"
                } else {
                    let c = load_only(None, &env).unwrap_or_else(|e| {
                        panic!("{name}={value} does not load: {e}");
                    });
                    let loaded = serde_json::to_value(&c).unwrap();
                    assert_ne!(
                        env::value_at(&loaded, option.path),
                        default_value,
                        "{name}={value} does not reach {}",
                        option.path
                    );
                    if let Err(e) = c.check_runnable() {
                        panic!("{name} takes effect, but start-up refuses it: {e}");
                    }
                    "Effect"
                }
            }
            OptionKind::NoEffect(_) => {
                let c = load(None, &env).unwrap_or_else(|e| {
                    panic!("{name}={value} has no effect, yet does not start: {e}")
                });
                let notices = c.no_effect_notices();
                assert_eq!(notices.len(), 1, "{name}: {notices:?}");
                assert!(notices[0].contains(&name), "{}", notices[0]);
                assert!(
                    migrating.contains(&format!("`{}`", option.name)),
                    "{} has no effect but docs/migrating-from-soketi.md does not list it",
                    option.name
                );
                "NoEffect"
            }
        };
        kinds.insert(option.name, kind);
    }
    assert_eq!(kinds.len(), ENV_OPTIONS.len(), "an option is listed twice");
    let of = |kind| {
        let mut names: Vec<&str> = kinds
            .iter()
            .filter(|(_, k)| **k == kind)
            .map(|(n, _)| *n)
            .collect();
        names.sort_unstable();
        names
    };
    assert_eq!(
        of("NoEffect"),
        [
            "ADAPTER_NATS_NODES_NUMBER",
            "APP_MANAGER_MYSQL_USE_V2",
            "APP_MANAGER_MYSQL_VERSION",
            "APP_MANAGER_POSTGRES_VERSION",
            "CLUSTER_IGNORE_PROCESS",
        ]
    );
}

/// The keys of soketi's ioredis options that this server applies, for one user of Redis.
#[derive(Clone, Debug, PartialEq)]
struct RedisSeen {
    topology: soketi_adapter_redis::Topology,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    key_prefix: String,
    tls: bool,
}

/// Loads `env` (on top of the cache, the queue and the rate limiter on Redis) and returns what
/// `user` connects with, or the error's text.
fn redis_seen(user: RedisUser, env: &[(&str, &str)]) -> Result<RedisSeen, String> {
    let mut all = vec![
        ("SOKETI_CACHE_DRIVER", "redis"),
        ("SOKETI_QUEUE_DRIVER", "redis"),
        ("SOKETI_RATE_LIMITER_DRIVER", "redis"),
    ];
    all.extend_from_slice(env);
    let c = load(None, &all).map_err(|e| e.to_string())?;
    let endpoint = c.redis_endpoint(user).map_err(|e| e.to_string())?;
    Ok(RedisSeen {
        topology: endpoint.topology,
        db: endpoint.db,
        username: endpoint.username,
        password: endpoint.password,
        key_prefix: c.redis_key_prefix(user).map_err(|e| e.to_string())?,
        tls: endpoint.tls.is_some(),
    })
}

fn single(host: &str, port: u16) -> soketi_adapter_redis::Topology {
    soketi_adapter_redis::Topology::Single(soketi_adapter_redis::HostPort {
        host: host.into(),
        port,
    })
}

#[test]
fn redis_options_keys_that_ioredis_shared_with_database_redis_take_effect() {
    let plain = RedisSeen {
        topology: single("127.0.0.1", 6379),
        db: 0,
        username: None,
        password: None,
        key_prefix: "shared:".into(),
        tls: false,
    };
    let base = [("SOKETI_DB_REDIS_KEY_PREFIX", "shared:")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        env
    };
    let cache_options = with(&[(
        "SOKETI_CACHE_REDIS_OPTIONS",
        r#"{"host":"10.0.0.9","port":"7000","username":"u","password":"p","db":3,"keyPrefix":"c:","tls":true}"#,
    )]);
    assert_eq!(
        redis_seen(RedisUser::Cache, &cache_options),
        Ok(RedisSeen {
            topology: single("10.0.0.9", 7000),
            db: 3,
            username: Some("u".into()),
            password: Some("p".into()),
            key_prefix: "c:".into(),
            tls: true,
        })
    );
    // The other users keep database.redis.
    for user in [RedisUser::Queue, RedisUser::RateLimiter, RedisUser::Adapter] {
        assert_eq!(redis_seen(user, &cache_options), Ok(plain.clone()));
    }
    // The adapter's two options add up, and must agree where both speak.
    let adapter = with(&[
        (
            "SOKETI_ADAPTER_REDIS_PUB_OPTIONS",
            r#"{"password":"p","db":1}"#,
        ),
        (
            "SOKETI_ADAPTER_REDIS_SUB_OPTIONS",
            r#"{"db":1,"username":"u"}"#,
        ),
    ]);
    let seen = redis_seen(RedisUser::Adapter, &adapter).unwrap();
    assert_eq!(
        (seen.db, seen.username.as_deref(), seen.password.as_deref()),
        (1, Some("u"), Some("p"))
    );
    let e = redis_seen(
        RedisUser::Adapter,
        &with(&[
            ("SOKETI_ADAPTER_REDIS_PUB_OPTIONS", r#"{"db":1}"#),
            ("SOKETI_ADAPTER_REDIS_SUB_OPTIONS", r#"{"db":2}"#),
        ]),
    )
    .unwrap_err();
    assert!(
        e.contains("ADAPTER_REDIS_PUB_OPTIONS") && e.contains("\"db\""),
        "{e}"
    );
    // Sentinels, their master's name and password from the options.
    let seen = redis_seen(
        RedisUser::Queue,
        &with(&[(
            "QUEUE_REDIS_OPTIONS",
            r#"{"sentinels":[{"host":"10.0.0.5","port":26379}],"name":"main","sentinelPassword":"s"}"#,
        )]),
    )
    .unwrap();
    assert_eq!(
        seen.topology,
        soketi_adapter_redis::Topology::Sentinel {
            sentinels: vec![soketi_adapter_redis::HostPort {
                host: "10.0.0.5".into(),
                port: 26379
            }],
            master_name: "main".into(),
            sentinel_password: Some("s".into()),
        }
    );
}

#[test]
fn redis_options_keys_not_applied_stop_start_up_naming_option_and_key() {
    // (environment, words the one-line refusal must hold)
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        // Whatever the drivers: the cache here is in memory.
        (
            &[("CACHE_REDIS_OPTIONS", r#"{"connectTimeout":1000}"#)],
            &["CACHE_REDIS_OPTIONS", "connectTimeout", "remove it"],
        ),
        (
            &[(
                "SOKETI_RATE_LIMITER_REDIS_OPTIONS",
                r#"{"maxRetriesPerRequest":2}"#,
            )],
            &["RATE_LIMITER_REDIS_OPTIONS", "maxRetriesPerRequest"],
        ),
        (
            &[("SOKETI_ADAPTER_REDIS_SUB_OPTIONS", r#"{"keyPrefix":"x:"}"#)],
            &[
                "ADAPTER_REDIS_SUB_OPTIONS",
                "keyPrefix",
                "ADAPTER_REDIS_PREFIX",
            ],
        ),
        (
            &[("SOKETI_QUEUE_REDIS_OPTIONS", r#"{"db":-1}"#)],
            &["QUEUE_REDIS_OPTIONS", "\"db\"", "-1"],
        ),
        (
            &[("SOKETI_QUEUE_REDIS_OPTIONS", "not json")],
            &["QUEUE_REDIS_OPTIONS", "JSON object"],
        ),
        (
            &[
                ("SOKETI_CACHE_REDIS_CLUSTER_MODE", "true"),
                ("SOKETI_DB_REDIS_CLUSTER_NODES", r#"["10.0.0.1:7000"]"#),
                ("SOKETI_CACHE_REDIS_OPTIONS", r#"{"host":"10.0.0.2"}"#),
            ],
            &["CACHE_REDIS_OPTIONS", "host", "DB_REDIS_CLUSTER_NODES"],
        ),
        (
            &[
                ("SOKETI_DB_REDIS_SENTINELS", r#"["10.0.0.1:26379"]"#),
                ("SOKETI_QUEUE_REDIS_OPTIONS", r#"{"port":6380}"#),
            ],
            &["QUEUE_REDIS_OPTIONS", "\"port\"", "sentinels"],
        ),
        (
            &[
                ("SOKETI_CACHE_DRIVER", "redis"),
                ("SOKETI_CACHE_REDIS_CLUSTER_MODE", "true"),
                ("SOKETI_DB_REDIS_CLUSTER_NODES", r#"["10.0.0.1:7000"]"#),
                ("SOKETI_CACHE_REDIS_OPTIONS", r#"{"db":4}"#),
            ],
            &["CACHE_REDIS_CLUSTER_MODE", "only database 0"],
        ),
    ];
    for (env, words) in cases {
        let e = load(None, env)
            .expect_err(&format!("{env:?} must stop start-up"))
            .to_string();
        for word in *words {
            assert!(e.contains(word), "{env:?}: {word:?} missing from: {e}");
        }
    }
}

#[test]
fn lambda_webhooks_read_soketi_s_options() {
    let hooks = r#"[
        {"lambda_function": "plain", "event_types": ["channel_occupied"]},
        {"lambda_function": "arn:aws:lambda:eu-west-1:1:function:f", "event_types": [],
         "lambda": {"async": true, "region": "eu-west-1"}},
        {"lambda_function": "g", "event_types": [],
         "lambda": {"region": "eu-west-1", "client_options": {"region": "eu-central-1",
           "endpoint": "http://127.0.0.1:9001",
           "credentials": {"accessKeyId": "AK", "secretAccessKey": "SK", "sessionToken": "T"}}}}
    ]"#;
    let config = load(None, &[("SOKETI_DEFAULT_APP_WEBHOOKS", hooks)]).unwrap();
    let app = config.apps().into_iter().next().expect("the default app");
    let targets: Vec<_> = app
        .webhooks
        .iter()
        .map(|w| (w.url.as_str(), w.lambda.clone().unwrap()))
        .collect();
    assert_eq!(targets.len(), 3);
    assert!(targets.iter().all(|(url, _)| url.is_empty()));
    assert_eq!(targets[0].1.function, "plain");
    assert!(!targets[0].1.asynchronous);
    assert_eq!(targets[0].1.region, None);
    assert!(targets[1].1.asynchronous);
    assert_eq!(targets[1].1.region.as_deref(), Some("eu-west-1"));
    assert_eq!(targets[2].1.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
        targets[2].1.endpoint.as_deref(),
        Some("http://127.0.0.1:9001")
    );
    assert_eq!(
        targets[2].1.credentials,
        Some(("AK".into(), "SK".into(), Some("T".into())))
    );
    assert!(!format!("{:?}", targets[2].1).contains("SK"));
}

#[test]
fn config_file_keys_that_name_no_option_are_named_at_start() {
    let config = file(
        "json",
        r#"{
            "eventLimits.maxNameLenght": 10,
            "adapter": {"redis": {"prefixx": "a", "prefix": "b"}},
            "bogus": true,
            "queue": {"sqs": {"clientOptions": {"region": "eu-west-1"}}},
            "appManager": {"mysql": {"useMysql2": true},
                "array": {"apps": [{"id": "i", "key": "k", "secret": "s", "Whatever": 1,
                    "max_connections": 5, "MaxBackendEventsPerSecond": 2, "enabled": true}]}},
            "database": {"redis": {"clusterNodes": [{"host": "h", "port": 1}]}}
        }"#,
    );
    let loaded = load(Some(config.path()), &[]).unwrap();
    let mut keys = loaded.unknown_file_keys.clone();
    keys.sort();
    assert_eq!(
        keys,
        [
            "adapter.redis.prefixx",
            "appManager.array.apps.0.Whatever",
            "bogus",
            "eventLimits.maxNameLenght"
        ]
    );
    let notices = loaded.no_effect_notices();
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("eventLimits.maxNameLenght in the config file names no option")),
        "{notices:?}"
    );
    assert!(load(None, &[]).unwrap().unknown_file_keys.is_empty());
}
