//! The files under `deploy/` against the binary they deploy, without a container engine: every
//! environment name is one the configuration accepts, the Dockerfile builds the dist profile
//! with the pinned toolchain and serves the server's ports, and the systemd unit passes
//! `systemd-analyze verify`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use soketi_server::Config;
use soketi_server::config::ENV_OPTIONS;

/// Variables of the build, not of the configuration: `build.rs` reads them to name the commit.
const BUILD_VARIABLES: [&str; 2] = ["SOKETI_BUILD_COMMIT", "SOKETI_BUILD_DATE"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every file under `deploy/`, sorted.
fn deploy_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root().join("deploy")];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "deploy/ holds no file");
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Whether the configuration reads `name` from the environment.
fn accepted(name: &str) -> bool {
    ENV_OPTIONS.iter().any(|option| {
        name.strip_prefix("SOKETI_") == Some(option.name)
            || (!option.prefix_only && name == option.name)
    })
}

/// Every `SOKETI_NAME` written in `text`, comments included.
fn prefixed_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("SOKETI_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.len() > "SOKETI_".len() {
            names.push(name.trim_end_matches('_').to_owned());
        }
        rest = &rest[at + "SOKETI_".len()..];
    }
    names
}

/// The keys of `KEY=value` settings on lines that start with `prefix` (`ENV `, `Environment=`).
fn assignments(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(prefix))
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|word| word.trim_matches('"').split_once('='))
        .map(|(key, _)| key.to_owned())
        .collect()
}

#[test]
fn deploy_names_only_options_the_configuration_accepts() {
    assert!(
        BUILD_VARIABLES
            .iter()
            .all(|name| read(&root().join("crates/soketi-server/build.rs")).contains(name)),
        "build.rs no longer reads one of {BUILD_VARIABLES:?}"
    );
    let mut unknown = Vec::new();
    let mut check = |path: &Path, name: &str| {
        if !accepted(name) && !BUILD_VARIABLES.contains(&name) {
            unknown.push(format!("{}: {name}", relative(path)));
        }
    };
    for path in deploy_files() {
        let text = read(&path);
        for name in prefixed_names(&text) {
            check(&path, &name);
        }
        // Names without the prefix count where they are set: the Dockerfile's `ENV` and the
        // unit's `Environment=`.
        for key in assignments(&text, "ENV ")
            .into_iter()
            .chain(assignments(&text, "Environment="))
        {
            check(&path, &key);
        }
    }
    assert!(
        unknown.is_empty(),
        "names the configuration does not accept (see docs/configuration.md):\n  {}",
        unknown.join("\n  ")
    );
}

/// A Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn dockerfile_builds_the_dist_profile_and_serves_the_ports() {
    let root = root();
    let dockerfile = instructions(&read(&root.join("deploy/Dockerfile")));
    let all = |keyword: &str| -> Vec<&str> {
        dockerfile
            .iter()
            .filter_map(|line| line.strip_prefix(keyword))
            .map(str::trim)
            .collect()
    };

    // The builder's toolchain is the one rust-toolchain.toml pins.
    let toolchain = read(&root.join("rust-toolchain.toml"));
    let channel = toolchain
        .lines()
        .find_map(|line| line.trim().strip_prefix("channel"))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("rust-toolchain.toml names a channel");
    let stages = all("FROM ");
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");
    assert!(
        stages[0].starts_with(&format!("rust:{channel}-")),
        "the builder {} is not rust:{channel}",
        stages[0]
    );

    // It builds the dist profile, which Cargo.toml declares, and ships that binary.
    assert!(read(&root.join("Cargo.toml")).contains("[profile.dist]"));
    let runs = all("RUN ").join("\n");
    assert!(runs.contains("--profile dist -p soketi-server"), "{runs}");
    assert!(runs.contains("target/dist/soketi-server"), "{runs}");

    for copy in all("COPY ") {
        if copy.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(root.join(source).exists(), "COPY {source}: no such path");
        }
    }
    let ignored = read(&root.join(".dockerignore"));
    for entry in ["target", ".git", "**/node_modules"] {
        assert!(
            ignored.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }

    let defaults = Config::default();
    let exposed: Vec<&str> = all("EXPOSE ")
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    for port in [defaults.port, defaults.metrics.port] {
        assert!(
            exposed.contains(&port.to_string().as_str()),
            "EXPOSE lacks {port}"
        );
    }

    let user = all("USER ");
    let user = user.last().expect("the runtime image sets USER");
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        !["root", "0", ""].contains(&name),
        "the image runs as {user}"
    );

    let health = all("HEALTHCHECK ");
    let [health] = health[..] else {
        panic!("one HEALTHCHECK: {health:?}");
    };
    assert!(
        health.contains(r#"CMD ["/usr/local/bin/soketi-server", "health"]"#),
        "{health}"
    );
    assert!(
        all("COPY ")
            .iter()
            .any(|copy| copy.ends_with(" /usr/local/bin/soketi-server")),
        "the binary is not installed as /usr/local/bin/soketi-server"
    );
}

#[test]
fn systemd_unit_verifies() {
    let unit = read(&root().join("deploy/soketi-server.service"));
    let stop = unit
        .lines()
        .find_map(|line| line.strip_prefix("TimeoutStopSec="))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .expect("TimeoutStopSec= in seconds");
    let grace = Config::default().shutdown_grace_period;
    assert!(
        stop * 1000 > grace,
        "TimeoutStopSec={stop} must exceed the shutdown grace period ({grace} ms)"
    );

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        // .ci/run installs systemd when absent, so the README's test command never skips.
        assert!(
            std::env::var_os("SOKETI_TEST_REQUIRE_ALL").is_none(),
            "systemd-analyze is required under SOKETI_TEST_REQUIRE_ALL (Debian package systemd)"
        );
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success(), "{version:?}");

    // `verify` needs the binary of ExecStart to exist: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soketi-server.service");
    let binary = env!("CARGO_BIN_EXE_soketi-server");
    assert!(unit.contains("ExecStart=/usr/local/bin/soketi-server "));
    fs::write(&path, unit.replace("/usr/local/bin/soketi-server", binary)).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    // Unknown keys and bad values are only warnings, with success: any output fails the test.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify ({}):\n{stdout}{stderr}",
        output.status
    );
}

#[test]
fn names_in_text() {
    let check = |text: &str, expected: &[&str]| {
        assert_eq!(prefixed_names(text), expected, "{text:?}");
    };
    check(
        "SOKETI_PORT=6001 and SOKETI_METRICS_SERVER_PORT",
        &["SOKETI_PORT", "SOKETI_METRICS_SERVER_PORT"],
    );
    check("(SOKETI_* variables", &[]);
    check("`SOKETI_DEFAULT_APP_`", &["SOKETI_DEFAULT_APP"]);
    check("no names", &[]);
    assert!(accepted("SOKETI_PORT"));
    assert!(!accepted("PORT"), "generic names need the prefix");
    assert!(accepted("ADAPTER_DRIVER"));
    assert!(!accepted("SOKETI_NO_SUCH_OPTION"));
}
