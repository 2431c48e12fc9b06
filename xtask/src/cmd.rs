//! Spawning child processes: cargo, node and npm, echoed before they run.

use std::{env, ffi::OsStr, path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A `cargo` command in the workspace root. `CARGO` is the cargo that runs xtask, so children use
/// the same toolchain even when `cargo` on `PATH` is another.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    without_package_vars(&mut cmd);
    cmd
}

/// Leaves out of `cmd`'s environment the variables `cargo run` set for xtask itself
/// (`CARGO_PKG_NAME=xtask`, `CARGO_MANIFEST_DIR`, ...). Build scripts such as ring's declare
/// `rerun-if-env-changed` on those names, so a cargo started with them would run those scripts
/// again and rebuild everything above them, and a plain `cargo build` afterwards would do it
/// once more.
pub(crate) fn without_package_vars(cmd: &mut Command) {
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(is_package_var) {
            cmd.env_remove(&name);
        }
    }
}

/// Whether cargo sets `name` for the package it runs, rather than for itself or the user.
fn is_package_var(name: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
        || name == "CARGO_PRIMARY_PACKAGE"
}

/// A `node` or `npm` command in `dir`.
pub(crate) fn node_tool(program: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    cmd
}

/// Runs a command with inherited stdio and fails unless it exits with success.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    eprintln!("$ {line}");
    let status = cmd.status().with_context(|| spawn_error(cmd, &line))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// `cargo metadata --format-version 1 --no-deps` of the workspace, parsed.
pub(crate) fn metadata(root: &Path) -> Result<Value> {
    let mut cmd = cargo(root);
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    let line = display(&cmd);
    let output = cmd.output().with_context(|| spawn_error(&cmd, &line))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("parsing the output of `{line}`"))
}

fn spawn_error(cmd: &Command, line: &str) -> String {
    let program = cmd.get_program().to_string_lossy();
    let hint = match program.as_ref() {
        "node" | "npm" => "; the interop suite needs Node 20 and npm on PATH",
        _ => "",
    };
    format!("could not start `{line}`{hint}")
}

/// The command as a shell would show it: variables it sets, the program's file name, its
/// arguments.
fn display(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(key, value)| {
            Some(format!(
                "{}={}",
                key.to_string_lossy(),
                value?.to_string_lossy()
            ))
        })
        .collect();
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(OsStr::new("?"));
    words.push(program.to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    words.join(" ")
}

/// A plain HTTP/1.1 `GET` of `path` on `addr` that closes the connection; returns the whole
/// answer, head and body.
pub(crate) fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    use std::time::Duration;

    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// `--name=value` as the name and the value; `--name` as the name alone.
pub(crate) fn split_option(option: &str) -> (&str, Option<String>) {
    match option.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (option, None),
    }
}

/// The value of the option `name`: the one written after `=`, or else the next argument.
pub(crate) fn option_value(
    name: &str,
    inline: &Option<String>,
    rest: &mut std::slice::Iter<'_, String>,
) -> Result<String> {
    inline
        .clone()
        .or_else(|| rest.next().cloned())
        .with_context(|| format!("`{name}` needs a value"))
}

/// The whole number `text` given to the option `name`, within `range`.
pub(crate) fn number_in<T>(name: &str, text: &str, range: std::ops::RangeInclusive<T>) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    text.parse()
        .ok()
        .filter(|n| range.contains(n))
        .with_context(|| {
            format!(
                "`{name} {text}`: expected {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// Asserts that `parse` turns `args` into `expected` (an error by its message): the option
/// parsers' tests share it.
#[cfg(test)]
pub(crate) fn check_parse<T: PartialEq + std::fmt::Debug>(
    parse: impl Fn(&[String]) -> anyhow::Result<T>,
    args: &[&str],
    expected: Result<T, &str>,
) {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let actual = parse(&args).map_err(|err| err.to_string());
    assert_eq!(actual, expected.map_err(str::to_owned), "args: {args:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_running_package_s_variables_are_left_out() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            assert!(is_package_var(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "RUSTFLAGS",
        ] {
            assert!(!is_package_var(name), "{name}");
        }
    }
}
