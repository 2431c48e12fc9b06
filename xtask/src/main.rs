//! The workspace's one entry point for automation: `cargo xtask <task>`.
//!
//! Each task is plain Rust over `std::process::Command`, so it runs the same on a laptop and in CI
//! (`.ci/run` only installs system packages and then calls `cargo xtask test`). Progress goes to
//! stderr, like cargo's own; only `dist` prints its result to stdout.

mod bench;
mod cmd;
mod dist;
mod fuzz;
mod image;
mod layers;
mod moto;
mod soak;
mod steps;
mod tidy;

use std::{
    env,
    path::{Path, PathBuf},
    process::ExitCode,
    time::SystemTime,
};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{cargo, node_tool, run},
    steps::{OnFailure, Steps},
};

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  lint    cargo fmt --check, cargo clippy -D warnings, then tidy
  test    lint, cargo test, cargo package, each fuzz target for 3 s, then the dist archive
          and container image checks and the Node interop suite against the debug server
            --no-lint       skip lint
            --rust-only     skip the build and the Node interop suite
            --interop-only  only build the server and run the Node interop suite
  tidy    the workspace policy checks alone (layers, docs, dbg!/todo!, names, lints,
          inherited dependencies, crates.io)
  dist    build with the dist profile, pack target/dist/soketi-server-VERSION-TARGET.tar.gz and
          its .sha256, check that the unpacked binary answers /ready, print the archive's path
  image   build with the dist profile and write the container image (OCI layout and Docker's
          manifest.json in one tar, for `podman load` / `docker load`) to target/image/, print
          its path
            --profile dist|debug      which build goes in (default dist; debug tags -debug)
            --out PATH                write the archive there
            --check                   then run it with podman: /ready, a pusher-js round trip,
                                      a non-root user, 4200 and a clean exit on SIGTERM
            --rootfs DIR              write the root filesystem to DIR instead (for
                                      deploy/Dockerfile, or a chroot)
  bench   build release, run the benchmark scenarios, print the table, write docs/benchmarks.md
            --against soketi,sockudo  also measure these peers (installed under target/bench-peers)
            --nodes N                 also measure N nodes of ours over the cluster adapter
            --scenario NAME[,NAME]    only these: fan-out, many-channels, idle-memory,
                                      connect-storm, http-publish, presence-churn,
                                      cluster (with --nodes), hostile,
                                      subscription-count, sequential-publisher, console
            --quick                   small sizes, a smoke run (table in target/bench-results)
  fuzz    run the cargo-fuzz targets of fuzz/ on the nightly toolchain, from fuzz/seeds, and
          print the inputs each ran
            --seconds N               per target (default 60, unless --runs is given)
            --runs N                  per target, at most this many inputs
            --target NAME[,NAME]      only these: ws_frames, client_message, names,
                                      signed_query, peer_envelope, config_env,
                                      http_bodies, session, cluster_wire,
                                      config_file
            --no-sanitizer            build without AddressSanitizer (the workspace forbids
                                      unsafe; several times faster, for the long counts)
  soak    build release and run every kind of traffic at once for N minutes against our server
          (19k connections, 1 % reconnecting each second, presence joins and leaves, 200
          publishes/s, client events, API reads); print a row a minute (RSS, descriptors, p99,
          losses) and the drift, and write target/soak-results/
            --minutes N               how long (default 30)
            --nodes N                 N nodes over the cluster adapter on loopback (default 1)
            --connections N           in all, spread over the nodes (default 19000)
  help    print this message";

/// The environment variable that turns a skipped test into a failure.
const REQUIRE_ALL: (&str, &str) = ("SOKETI_TEST_REQUIRE_ALL", "1");

/// The folder of the Node interop suite, relative to the workspace root.
const INTEROP_DIR: &str = "crates/soketi-server/tests/interop";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match try_main(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(args: &[String]) -> Result<ExitCode> {
    let Some((task, options)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    let root = workspace_root()?;
    match task.as_str() {
        "lint" => {
            no_options(task, options)?;
            lint(&root)?;
        }
        "test" => test(&root, TestOptions::parse(options)?)?,
        "tidy" => {
            no_options(task, options)?;
            tidy::run(&root)?;
            eprintln!("tidy: ok");
        }
        "dist" => {
            no_options(task, options)?;
            dist::dist(&root)?;
        }
        "image" => image::image(&root, &image::Options::parse(options)?)?,
        "bench" => bench::bench(&root, &bench::Options::parse(options)?)?,
        "fuzz" => fuzz::fuzz(&root, &fuzz::Options::parse(options)?)?,
        "soak" => soak::soak(&root, &soak::Options::parse(options)?)?,
        "help" | "-h" | "--help" => eprintln!("{USAGE}"),
        other => {
            eprintln!("unknown task `{other}`\n\n{USAGE}");
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn no_options(task: &str, options: &[String]) -> Result<()> {
    match options.first() {
        Some(option) => bail!("`{task}` takes no options, got `{option}`\n\n{USAGE}"),
        None => Ok(()),
    }
}

/// The workspace root is the parent of this package's folder. The runtime variable (set by
/// `cargo run`) wins over the compile-time one, so a moved checkout still finds itself.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = manifest_dir
        .parent()
        .with_context(|| format!("{} has no parent folder", manifest_dir.display()))?;
    Ok(root.to_path_buf())
}

fn lint(root: &Path) -> Result<()> {
    // Every check runs even after one fails, so a single run shows all that needs fixing.
    let mut steps = Steps::new("lint", OnFailure::KeepGoing);
    lint_steps(&mut steps, root);
    steps.finish()
}

fn lint_steps(steps: &mut Steps, root: &Path) {
    steps.run("fmt", || {
        run(cargo(root).args(["fmt", "--all", "--", "--check"]))
    });
    steps.run("clippy", || {
        run(cargo(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    steps.run("tidy", || tidy::run(root));
}

/// Which parts of `test` run.
#[derive(Debug)]
struct TestOptions {
    lint: bool,
    rust: bool,
    interop: bool,
}

impl TestOptions {
    fn parse(options: &[String]) -> Result<Self> {
        let (mut no_lint, mut rust_only, mut interop_only) = (false, false, false);
        for option in options {
            match option.as_str() {
                "--no-lint" => no_lint = true,
                "--rust-only" => rust_only = true,
                "--interop-only" => interop_only = true,
                other => bail!("unknown option `{other}` for `test`\n\n{USAGE}"),
            }
        }
        if rust_only && interop_only {
            bail!("`--rust-only` and `--interop-only` exclude each other");
        }
        Ok(Self {
            lint: !no_lint && !interop_only,
            rust: !interop_only,
            interop: !rust_only,
        })
    }
}

fn test(root: &Path, options: TestOptions) -> Result<()> {
    let mut steps = Steps::new("test", OnFailure::Stop);
    if options.lint {
        lint_steps(&mut steps, root);
    }
    if options.rust {
        steps.run("cargo test", || {
            run(cargo(root)
                .args(["test", "--workspace"])
                .env(REQUIRE_ALL.0, REQUIRE_ALL.1))
        });
        // What `cargo publish` would upload, for each crate meant for reuse, built from its
        // tarball. The builds reuse the dependencies that `cargo test` just built, and the
        // crates.io index that it fetched, so this takes seconds and no network.
        steps.run("cargo package", || {
            let packages = tidy::published_packages(&cmd::metadata(root)?);
            if packages.is_empty() {
                bail!("no workspace package is meant for publishing");
            }
            let mut package = cargo(root);
            package.args(["package", "--allow-dirty", "--offline"]);
            for name in &packages {
                package.args(["-p", name]);
            }
            run(&mut package)
        });
        // Every fuzz target builds and runs from its seeds for a few seconds, so that none
        // rots; the long runs are `cargo xtask fuzz` on its own.
        steps.run("fuzz", || {
            fuzz::fuzz(
                root,
                &fuzz::Options {
                    seconds: Some(3),
                    runs: None,
                    targets: fuzz::TARGETS.to_vec(),
                    no_sanitizer: false,
                },
            )
        });
    }
    if options.interop {
        let mut server = PathBuf::new();
        steps.run("build server", || {
            run(cargo(root).args(["build", "-p", "soketi-server"]))?;
            server = binary(root, "debug", "soketi-server")?;
            Ok(())
        });
        // The packing and check of `cargo xtask dist`, on the debug binary: a dist build takes
        // minutes, and what it adds (the profile) is cargo's own work.
        steps.run("dist archive", || {
            let scratch = tempfile::Builder::new()
                .prefix("soketi-dist-")
                .tempdir()
                .context("creating a scratch folder")?;
            let packed = dist::pack_release(root, &server, scratch.path())?;
            dist::check(&packed)
        });
        let interop = root.join(INTEROP_DIR);
        steps.run("npm ci", || npm_ci_if_stale(&interop));
        // The image of the debug binary, run with podman: the layout and the container are what
        // `cargo xtask image` makes of the dist binary, without the minutes of a dist build.
        steps.run("image", || image::test_debug(root, &server));
        let mut moto = PathBuf::new();
        steps.run("moto venv", || {
            moto = moto::ensure_venv(root)?;
            Ok(())
        });
        steps.run("interop", || interop_suite(&interop, &server, &moto));
    }
    steps.finish()
}

/// The path of a built binary, from cargo's own idea of the target folder (which honours
/// `CARGO_TARGET_DIR` and `build.target-dir`).
fn binary(root: &Path, profile: &str, name: &str) -> Result<PathBuf> {
    let metadata = cmd::metadata(root)?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` gave no target_directory")?;
    let path = Path::new(target_dir)
        .join(profile)
        .join(format!("{name}{}", env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "cargo reported success but {} does not exist",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `npm ci` when `node_modules` is missing or older than `package-lock.json`.
fn npm_ci_if_stale(interop: &Path) -> Result<()> {
    let lock = interop.join("package-lock.json");
    let lock_time = modified(&lock)?;
    let modules = interop.join("node_modules");
    // npm writes `node_modules/.package-lock.json` last, so it dates the whole install; the folder
    // itself only changes when an entry is added or removed.
    let hidden_lock = modules.join(".package-lock.json");
    let stamp = if hidden_lock.is_file() {
        hidden_lock
    } else {
        modules
    };
    let installed = stamp.exists().then(|| modified(&stamp)).transpose()?;
    match installed {
        Some(installed) if installed >= lock_time => {
            eprintln!("node_modules is up to date with package-lock.json; skipping npm ci");
            Ok(())
        }
        _ => run(node_tool("npm", interop).args(["ci", "--no-audit", "--no-fund"])),
    }
}

fn modified(path: &Path) -> Result<SystemTime> {
    path.metadata()
        .and_then(|metadata| metadata.modified())
        .with_context(|| format!("reading the modification time of {}", path.display()))
}

/// Runs every `*.test.mjs` of the suite against `server`, with `moto` as the AWS tests' moto
/// server.
fn interop_suite(interop: &Path, server: &Path, moto: &Path) -> Result<()> {
    let files = tidy::files_under(interop, &|name| name.ends_with(".test.mjs"))?;
    if files.is_empty() {
        // `node --test` without files would search on its own; an empty suite is a failure.
        bail!("no *.test.mjs files under {}", interop.display());
    }
    let mut node = node_tool("node", interop);
    node.args(["--test", "--test-concurrency=1"])
        .env("SOKETI_BIN", server)
        .env("SOKETI_TEST_MOTO", moto)
        .env(REQUIRE_ALL.0, REQUIRE_ALL.1);
    for file in &files {
        node.arg(file.strip_prefix(interop).unwrap_or(file));
    }
    run(&mut node)
}

#[cfg(test)]
mod tests {
    use super::TestOptions;

    fn check(args: &[&str], expected: Result<(bool, bool, bool), &str>) {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let actual = TestOptions::parse(&args)
            .map(|options| (options.lint, options.rust, options.interop))
            .map_err(|err| {
                err.to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
        assert_eq!(actual, expected.map_err(str::to_owned), "args: {args:?}");
    }

    #[test]
    fn test_options() {
        check(&[], Ok((true, true, true)));
        check(&["--no-lint"], Ok((false, true, true)));
        check(&["--rust-only"], Ok((true, true, false)));
        check(&["--rust-only", "--no-lint"], Ok((false, true, false)));
        check(&["--interop-only"], Ok((false, false, true)));
        check(
            &["--rust-only", "--interop-only"],
            Err("`--rust-only` and `--interop-only` exclude each other"),
        );
        check(&["--fast"], Err("unknown option `--fast` for `test`"));
    }
}
