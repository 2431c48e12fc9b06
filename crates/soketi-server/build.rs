//! Names the commit that `soketi-server --version` reports, and compiles the live console's
//! node-to-node messages with protox, so no system `protoc` is needed.
//!
//! `SOKETI_BUILD_COMMIT` and `SOKETI_BUILD_DATE` win (a container build has no `.git`; its
//! Dockerfile passes them in), then `git`, then `unknown`: a crates.io tarball or a copy
//! without `.git` still builds. The script reruns only when HEAD moves (the HEAD file, the ref
//! it points to, or the packed refs), not on every build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/soketi/console/v1/console.proto"];
    for file in protos {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOKETI_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOKETI_BUILD_DATE");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let from_git = git_files_to_watch(&manifest_dir).is_some_and(|files| {
        for file in files {
            println!("cargo:rerun-if-changed={}", file.display());
        }
        true
    });

    let commit = override_or("SOKETI_BUILD_COMMIT", || {
        from_git
            .then(|| git(&manifest_dir, &["rev-parse", "--short", "HEAD"]))
            .flatten()
    });
    let date = override_or("SOKETI_BUILD_DATE", || {
        from_git
            .then(|| git(&manifest_dir, &["log", "-1", "--format=%cs", "HEAD"]))
            .flatten()
    });
    let described = match (commit, date) {
        (Some(commit), Some(date)) => format!("{commit} {date}"),
        (Some(commit), None) => commit,
        (None, _) => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=SOKETI_BUILD_COMMIT={described}");
    Ok(())
}

/// The variable's value when set and not empty, else `fallback`'s answer.
fn override_or(name: &str, fallback: impl FnOnce() -> Option<String>) -> Option<String> {
    match env::var(name) {
        Ok(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
        _ => fallback(),
    }
}

/// The files whose change means HEAD moved: `HEAD` itself, the branch file it names, and
/// `packed-refs`, where git keeps refs it has packed. Only existing files are listed, since
/// cargo reruns the script every time for a file that does not exist. `None` when this is not a
/// git checkout or git is missing.
fn git_files_to_watch(dir: &Path) -> Option<Vec<PathBuf>> {
    // `--git-path` answers relative to `dir` unless the path is absolute; `join` handles both.
    let git_path = |name: &str| git(dir, &["rev-parse", "--git-path", name]).map(|p| dir.join(p));
    let mut files = vec![git_path("HEAD")?];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        files.extend(git_path(&branch));
    }
    files.extend(git_path("packed-refs"));
    files.retain(|file| file.is_file());
    Some(files)
}

/// The trimmed output of a successful `git` command run in `dir`, if any.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
