//! `cargo xtask image`: the server's container image, written without a container engine and
//! without pulling anything.
//!
//! The image is `FROM scratch` plus one layer: the root filesystem of `rootfs` (the binary, the
//! loader and shared libraries `ldd` finds, the CA bundle, a non-root user). `oci` writes it as
//! an OCI image layout in a tar file that `podman load` and `docker load` both read. Writing the
//! layout here rather than with buildah keeps the build free of a container engine, of root and
//! of a storage driver, and makes it reproducible: the same binary gives the same digests.
//!
//! `--check` loads the archive into a scratch podman storage and runs the interop suite's
//! `image-check.mjs` against a container of it; `cargo xtask test` does the same with an image of
//! the debug binary, which it has just built, as a dist build takes minutes and the layout is the
//! same. `--rootfs DIR` writes the root filesystem as a folder instead, which deploy/Dockerfile
//! copies onto `scratch`, so that both ways give the same layout.

mod oci;
mod rootfs;
#[cfg(test)]
mod tests;

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd::{self, cargo, node_tool, option_value, run, split_option};

/// The image's name without its tag, which is the package's version. The Kubernetes manifests
/// of `deploy/kubernetes` name the image this way, and `tests/deploy.rs` of soketi-server reads
/// this line to check that they do.
pub(crate) const REPOSITORY: &str = "soketi-rs/soketi-server";

/// The package that the image runs.
const PACKAGE: &str = "soketi-server";

/// The binary's path inside the image, relative to `/`.
const BINARY: &str = "usr/local/bin/soketi-server";

/// The CA bundle, at the path Debian and rustls-native-certs use.
const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// The user the server runs as: distroless's `nonroot` ids, which the Kubernetes manifests'
/// `runAsUser` names, so the image of deploy/Dockerfile before this one runs the same.
const USER: &str = "soketi";
const UID: u32 = 65532;
const GID: u32 = 65532;

/// The ports the server listens on by default: WebSocket and HTTP API, then operations.
const PORTS: [u16; 2] = [6001, 9601];

/// The health check, as deploy/Dockerfile's `HEALTHCHECK` writes it: seconds for the interval,
/// the timeout and the start period, then the retries.
const HEALTH: (u64, u64, u64, u64) = (10, 5, 5, 3);

/// The interop suite's file that runs a container of the image. It is not a `*.test.mjs`: the
/// suite's own step, which has no image, leaves it out.
const CHECK_FILE: &str = "image-check.mjs";

/// Which build of the server goes into the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Profile {
    /// The `dist` profile, as `cargo xtask dist` ships it.
    Dist,
    /// The debug build of `cargo build`, for quick loops; its tag ends in `-debug`.
    Debug,
}

impl Profile {
    /// The folder of `target/` that cargo builds the profile into.
    fn folder(self) -> &'static str {
        match self {
            Self::Dist => crate::dist::PROFILE,
            Self::Debug => "debug",
        }
    }

    /// What follows the version in the tag.
    fn suffix(self) -> &'static str {
        match self {
            Self::Dist => "",
            Self::Debug => "-debug",
        }
    }
}

/// What `image` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) profile: Profile,
    /// Where the archive goes, instead of `target/image/`.
    pub(crate) out: Option<PathBuf>,
    /// A folder to write the root filesystem to, instead of an archive.
    pub(crate) rootfs: Option<PathBuf>,
    /// Run a container of the image with podman and check it.
    pub(crate) check: bool,
}

impl Options {
    pub(crate) fn parse(options: &[String]) -> Result<Self> {
        let mut parsed = Self {
            profile: Profile::Dist,
            out: None,
            rootfs: None,
            check: false,
        };
        let mut options = options.iter();
        while let Some(option) = options.next() {
            let (name, inline) = split_option(option);
            let mut value = || option_value(name, &inline, &mut options);
            match name {
                "--profile" => {
                    parsed.profile = match value()?.as_str() {
                        "dist" => Profile::Dist,
                        "debug" => Profile::Debug,
                        other => bail!("`--profile {other}`: expected dist or debug"),
                    }
                }
                "--out" => parsed.out = Some(PathBuf::from(value()?)),
                "--rootfs" => parsed.rootfs = Some(PathBuf::from(value()?)),
                "--check" => parsed.check = true,
                other => bail!("unknown option `{other}` for `image`"),
            }
        }
        if parsed.rootfs.is_some() && (parsed.out.is_some() || parsed.check) {
            bail!(
                "`--rootfs` writes a folder, not an archive: it takes neither `--out` nor `--check`"
            );
        }
        Ok(parsed)
    }
}

/// Builds the server, writes its image (or root filesystem), checks it if asked, and prints the
/// path written.
#[expect(
    clippy::print_stdout,
    reason = "the path is the task's result, for scripts to read"
)]
pub(crate) fn image(root: &Path, options: &Options) -> Result<()> {
    let started = Instant::now();
    let mut build = cargo(root);
    build.args(["build", "-p", PACKAGE]);
    if options.profile == Profile::Dist {
        build.args(["--profile", crate::dist::PROFILE]);
    }
    run(&mut build)?;
    eprintln!("build: {:.0} s", started.elapsed().as_secs_f64());
    let binary = crate::binary(root, options.profile.folder(), PACKAGE)?;

    if let Some(dir) = &options.rootfs {
        rootfs::write_tree(&rootfs::assemble(root, &binary)?, dir)?;
        eprintln!("root filesystem written to {}", dir.display());
        println!("{}", dir.display());
        return Ok(());
    }

    let about = About::read(root)?;
    let name = about.name(options.profile);
    let out = match &options.out {
        Some(out) => std::path::absolute(out)
            .with_context(|| format!("finding where {} is", out.display()))?,
        None => target_dir(root)?.join("image").join(format!(
            "{PACKAGE}-{}{}-{}.tar",
            about.version,
            options.profile.suffix(),
            architecture()?
        )),
    };
    let written = write(root, &binary, &about, &name, &out)?;
    eprintln!(
        "image {name}: {} bytes compressed ({} uncompressed), archive {} bytes; id {}, \
         manifest {}; {:.0} s in all",
        written.layer.size,
        written.diff.size,
        file_size(&out)?,
        written.config.digest,
        written.manifest.digest,
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "load it with `podman load -i {0}` or `docker load -i {0}`",
        out.display()
    );
    if options.check {
        check(root, &out, &name)?;
    }
    println!("{}", out.display());
    Ok(())
}

/// For `cargo xtask test`: the image of the debug `binary` that the test has built, written to
/// a scratch folder and checked.
pub(crate) fn test_debug(root: &Path, binary: &Path) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("soketi-image-")
        .tempdir()
        .context("creating a scratch folder")?;
    let about = About::read(root)?;
    let name = about.name(Profile::Debug);
    let out = scratch.path().join("image.tar");
    let written = write(root, binary, &about, &name, &out)?;
    eprintln!(
        "image {name}: {} bytes compressed, {} uncompressed",
        written.layer.size, written.diff.size
    );
    check(root, &out, &name)
}

/// Writes the archive of `binary`'s image named `name` to `out`.
fn write(
    root: &Path,
    binary: &Path,
    about: &About,
    name: &str,
    out: &Path,
) -> Result<oci::Written> {
    let entries = rootfs::assemble(root, binary)?;
    let folder = out.parent().context("the archive's path has no folder")?;
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    oci::write_archive(
        &entries,
        config(about, architecture()?),
        name,
        about.time,
        out,
    )
}

/// Runs the interop suite's `image-check.mjs` against the archive: podman loads it as `name`,
/// runs it, and the file checks what a user of the image would.
fn check(root: &Path, archive: &Path, name: &str) -> Result<()> {
    let interop = root.join(crate::INTEROP_DIR);
    crate::npm_ci_if_stale(&interop)?;
    let archive = archive
        .canonicalize()
        .with_context(|| format!("finding {}", archive.display()))?;
    run(node_tool("node", &interop)
        .args(["--test", CHECK_FILE])
        .env("SOKETI_TEST_IMAGE", archive)
        .env("SOKETI_TEST_IMAGE_NAME", name)
        .env(crate::REQUIRE_ALL.0, crate::REQUIRE_ALL.1))
}

/// What the labels and the tag say about the build.
#[derive(Debug)]
pub(crate) struct About {
    pub(crate) version: String,
    pub(crate) revision: String,
    pub(crate) license: String,
    pub(crate) source: String,
    /// The commit's time, in seconds since the epoch: the date of every file and of the image.
    pub(crate) time: u64,
}

impl About {
    fn read(root: &Path) -> Result<Self> {
        let metadata = cmd::metadata(root)?;
        let package = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|package| package["name"] == PACKAGE)
            .with_context(|| format!("`cargo metadata` lists no {PACKAGE}"))?;
        let field = |key: &str| {
            package[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{PACKAGE}'s Cargo.toml has no {key}"))
        };
        Ok(Self {
            version: field("version")?,
            revision: revision(root),
            license: field("license")?,
            source: field("repository")?,
            time: crate::dist::commit_time(root),
        })
    }

    /// The image's name: the repository, tagged with the version (and `-debug` for the debug
    /// build).
    fn name(&self, profile: Profile) -> String {
        format!("{REPOSITORY}:{}{}", self.version, profile.suffix())
    }
}

/// The image config: how to run the server, and the labels.
pub(crate) fn config(about: &About, architecture: &str) -> Value {
    let created = rfc3339(about.time);
    let binary = format!("/{BINARY}");
    let (interval, timeout, start, retries) = HEALTH;
    let nanos = |seconds: u64| seconds * 1_000_000_000;
    let ports: serde_json::Map<String, Value> = PORTS
        .iter()
        .map(|port| (format!("{port}/tcp"), json!({})))
        .collect();
    json!({
        "created": created,
        "architecture": architecture,
        "os": "linux",
        "config": {
            "User": format!("{UID}:{GID}"),
            "ExposedPorts": ports,
            // What Docker's builder gives a `FROM scratch` image.
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": [binary],
            "Cmd": ["start"],
            "WorkingDir": "/",
            "StopSignal": "SIGTERM",
            // Docker's extension of the config, which podman reads too; Kubernetes uses the
            // manifests' probes instead.
            "Healthcheck": {
                "Test": ["CMD", binary, "health"],
                "Interval": nanos(interval),
                "Timeout": nanos(timeout),
                "StartPeriod": nanos(start),
                "Retries": retries,
            },
            "Labels": labels(about),
        },
        "history": [{ "created": created, "created_by": "cargo xtask image" }],
    })
}

/// The OCI annotations of the image, as labels.
pub(crate) fn labels(about: &About) -> Value {
    json!({
        "org.opencontainers.image.title": PACKAGE,
        "org.opencontainers.image.description": "A Pusher Channels protocol 7 server",
        "org.opencontainers.image.version": about.version,
        "org.opencontainers.image.revision": about.revision,
        "org.opencontainers.image.licenses": about.license,
        "org.opencontainers.image.source": about.source,
    })
}

/// The commit: `SOKETI_BUILD_COMMIT` when set (as build.rs reads it), else `git rev-parse HEAD`,
/// else `unknown`.
fn revision(root: &Path) -> String {
    if let Some(commit) = env::var("SOKETI_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        return commit.trim().to_owned();
    }
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The OCI name of the architecture this xtask (and so the binary beside it) was built for.
fn architecture() -> Result<&'static str> {
    match env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => bail!("no OCI architecture name known for {other}"),
    }
}

fn target_dir(root: &Path) -> Result<PathBuf> {
    let metadata = cmd::metadata(root)?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` gave no target_directory")
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(path
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

/// `seconds` since the epoch as an RFC 3339 date in UTC, `2024-05-06T07:08:09Z`.
pub(crate) fn rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    // Howard Hinnant's `civil_from_days`, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}
