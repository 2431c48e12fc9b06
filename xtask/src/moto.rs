//! The moto server of the interop suite's AWS tests (`aws-*.test.mjs`): a Python virtual
//! environment with the pinned packages of `xtask/moto-requirements.txt`, made under
//! `target/moto-venv` when it is missing, broken, or was made from other requirements.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::cmd::run;

/// The pinned packages, relative to the workspace root.
const REQUIREMENTS: &str = "xtask/moto-requirements.txt";

/// The virtual environment, relative to the workspace root; the tests look there too when
/// `SOKETI_TEST_MOTO` is not set.
const VENV: &str = "target/moto-venv";

/// A copy of the requirements the environment was made from, written once pip has succeeded,
/// so that a half-made environment is never taken for a finished one.
const MARKER: &str = "requirements.installed";

/// What to install when the environment cannot be made.
const PYTHON_HINT: &str = "the AWS tests need python3 with venv and pip (Debian: python3-venv)";

/// Makes the environment unless it is up to date, and returns the path of its `moto_server`.
pub(crate) fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let requirements_path = root.join(REQUIREMENTS);
    let requirements = fs::read_to_string(&requirements_path)
        .with_context(|| format!("reading {}", requirements_path.display()))?;
    let venv = root.join(VENV);
    let bin = venv.join("bin");
    let python = bin.join("python");
    let server = bin.join("moto_server");
    let installed = fs::read_to_string(venv.join(MARKER)).ok();
    if up_to_date(installed.as_deref(), &requirements, server.is_file()) && imports_moto(&python) {
        eprintln!("{VENV} is up to date with {REQUIREMENTS}; skipping pip install");
        return Ok(server);
    }
    // Whatever is there was made from other requirements, or half made: start again.
    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).context(PYTHON_HINT)?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--progress-bar",
            "off",
            "-r",
        ])
        .arg(&requirements_path))?;
    if !server.is_file() {
        bail!(
            "pip installed {REQUIREMENTS}, but {} does not exist",
            server.display()
        );
    }
    let marker = venv.join(MARKER);
    fs::write(&marker, &requirements).with_context(|| format!("writing {}", marker.display()))?;
    Ok(server)
}

/// Whether an environment whose marker holds `installed` (None without a marker) can be used
/// for `requirements` as it is.
fn up_to_date(installed: Option<&str>, requirements: &str, server_exists: bool) -> bool {
    server_exists && installed == Some(requirements)
}

/// Whether the environment's interpreter still runs and finds moto: the interpreter it links to
/// may have been removed or upgraded since it was made.
fn imports_moto(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::up_to_date;

    #[test]
    fn freshness() {
        let check = |installed: Option<&str>, server_exists: bool, expected: bool| {
            assert_eq!(
                up_to_date(installed, "moto==5.2.6\n", server_exists),
                expected,
                "installed {installed:?}, moto_server there: {server_exists}"
            );
        };
        check(Some("moto==5.2.6\n"), true, true);
        check(Some("moto==5.2.5\n"), true, false);
        check(None, true, false);
        check(Some("moto==5.2.6\n"), false, false);
    }
}
