//! The binary's own subcommands that deployments rely on: `--version` names the commit, and
//! `health` (the container health check) answers like the operations server's `/ready`.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use soketi_server::config::ENV_OPTIONS;
use soketi_server::probe::{self, ProbeError};
use support::{DEADLINE, RawWs, eventually, server};

const BIN: &str = env!("CARGO_BIN_EXE_soketi-server");

/// Runs the binary to completion off the runtime's threads, with no inherited soketi option.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args);
    for option in ENV_OPTIONS {
        command
            .env_remove(option.name)
            .env_remove(format!("SOKETI_{}", option.name));
    }
    command.envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task ends");
    output.expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn version_names_the_commit() {
    let output = run(&["--version"], &[]).await;
    assert!(output.status.success(), "{output:?}");
    let line = text(&output.stdout);
    let prefix = format!("soketi-server {} (", env!("CARGO_PKG_VERSION"));
    let inner = line
        .trim_end()
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?} is not `{prefix}COMMIT DATE)`"));
    // The tests run from a git checkout, where build.rs finds the commit; `unknown` is only for
    // copies without `.git`.
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| text(&output.stdout).trim().to_owned());
    match head {
        Some(head) => {
            let (commit, date) = inner
                .split_once(' ')
                .unwrap_or_else(|| panic!("{inner:?} is not `COMMIT DATE`"));
            assert_eq!(commit, head, "{line:?}");
            let digits: Vec<&str> = date.split('-').collect();
            assert!(
                digits.len() == 3 && digits.iter().all(|d| d.bytes().all(|b| b.is_ascii_digit())),
                "{date:?} is not a YYYY-MM-DD date"
            );
        }
        None => assert_eq!(inner, "unknown", "{line:?}"),
    }
}

#[tokio::test]
async fn probe_follows_ready() {
    let server = server(|c| c.shutdown_grace_period = 5000).await;
    let url = format!("http://{}/ready", server.metrics_addr());
    probe::ready(&url, DEADLINE)
        .await
        .expect("a running server is ready");

    // A connected client keeps the server draining for the grace period, with `/ready` at 503.
    let (client, _) = RawWs::connect_app(server.local_addr()).await;
    let shutdown = tokio::spawn(server.shutdown());
    eventually("/ready to answer 503 while draining", || async {
        matches!(
            probe::ready(&url, DEADLINE).await,
            Err(ProbeError::NotReady { status, .. }) if status == 503
        )
    })
    .await;
    drop(client);
    shutdown.await.expect("shutdown completes");
    let err = probe::ready(&url, DEADLINE).await.unwrap_err();
    assert!(matches!(err, ProbeError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn probe_gives_up_at_the_timeout() {
    // A listener that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ready", silent.local_addr().unwrap());
    let err = probe::ready(&url, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn health_subcommand() {
    let server = server(|_| {}).await;
    let port = server.metrics_addr().port().to_string();
    let url = format!("http://{}/ready", server.metrics_addr());

    let output = run(&["health", "--url", &url], &[]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), format!("{url}: ready\n"));

    // Without --url, the operations port comes from the configuration, as in the image's
    // HEALTHCHECK.
    let output = run(&["health"], &[("SOKETI_METRICS_SERVER_PORT", &port)]).await;
    assert!(output.status.success(), "{output:?}");

    server.shutdown().await;
    let output = run(&["health", "--url", &url, "--timeout", "2"], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!("soketi-server: {url} is unreachable")),
        "{stderr}"
    );
}
