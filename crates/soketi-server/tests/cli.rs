//! The binary's command line: `--version` names the version and the commit it was built from.

use std::process::{Command, Output};

use soketi_server::config::ENV_OPTIONS;

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
