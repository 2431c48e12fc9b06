//! The files under `deploy/` against the binary they deploy: the systemd unit passes
//! `systemd-analyze verify` and stops later than the shutdown grace period.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use soketi_server::Config;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
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
