use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use soketi_protocol::AppLimits;

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
        let apps = load(Some(f.path()), &[]).unwrap().apps();
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
        &[("APP_MANAGER_DRIVER", "dynamodb")],
        &["APP_MANAGER_DRIVER", "array"],
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
