//! `cargo xtask dist`: the release archive that operators download.
//!
//! The server is built with the `dist` profile (the release profile, symbols stripped), packed
//! with the README, the license texts, the configuration reference and the systemd unit as
//! `target/dist/soketi-server-<version>-<target>.tar.gz`, with a `sha256sum` file beside it.
//! Before the path is printed, the archive is unpacked with the system's `tar`, checked with
//! `sha256sum --check`, and its binary is started and must answer `/ready`: what an operator
//! would do first. `cargo xtask test` runs the same packing and check on the debug binary, so
//! the path from binary to answering archive is tested without the minutes of a dist build.

#[cfg(test)]
mod tests;

use std::{
    fs::{self, File},
    io::{self, BufWriter, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use flate2::{Compression, write::GzEncoder};
use sha2::{Digest, Sha256};

use crate::cmd::{self, cargo, run};

/// The cargo profile of release archives, declared in the workspace's `Cargo.toml`.
pub(crate) const PROFILE: &str = "dist";

/// The package and binary that the archive ships.
const PACKAGE: &str = "soketi-server";

/// How long the unpacked server may take to answer `/ready`.
const READY_DEADLINE: Duration = Duration::from_secs(15);

/// One file of the archive: where it comes from, and its path under the archive's folder.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) source: PathBuf,
    pub(crate) path: &'static str,
    pub(crate) executable: bool,
}

/// A written archive and its checksum file.
#[derive(Debug)]
pub(crate) struct Packed {
    pub(crate) archive: PathBuf,
    pub(crate) checksum_file: PathBuf,
    pub(crate) sha256: String,
}

/// Builds the dist binary, packs it, checks the archive, and prints its path.
#[expect(
    clippy::print_stdout,
    reason = "the path is the task's result, for scripts to read"
)]
pub(crate) fn dist(root: &Path) -> Result<()> {
    let started = Instant::now();
    run(cargo(root).args(["build", "--profile", PROFILE, "-p", PACKAGE]))?;
    eprintln!("build: {:.0} s", started.elapsed().as_secs_f64());
    let binary = crate::binary(root, PROFILE, PACKAGE)?;
    let out_dir = binary
        .parent()
        .context("the binary has no parent folder")?
        .to_path_buf();
    let packed = pack_release(root, &binary, &out_dir)?;
    check(&packed)?;
    let size = |path: &Path| -> Result<u64> {
        Ok(path
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len())
    };
    eprintln!(
        "binary: {} bytes; archive: {} bytes; sha256 {}",
        size(&binary)?,
        size(&packed.archive)?,
        packed.sha256
    );
    println!("{}", packed.archive.display());
    Ok(())
}

/// Packs `binary` with the files that go with it into `out_dir`, named after the package's
/// version and the host's target triple.
pub(crate) fn pack_release(root: &Path, binary: &Path, out_dir: &Path) -> Result<Packed> {
    let name = format!(
        "{PACKAGE}-{}-{}",
        package_version(root)?,
        host_target(root)?
    );
    let entries = [
        Entry {
            source: binary.to_path_buf(),
            path: PACKAGE,
            executable: true,
        },
        Entry {
            source: root.join("README.md"),
            path: "README.md",
            executable: false,
        },
        // Both licenses ask that their text travel with every copy of the binary.
        Entry {
            source: root.join("LICENSE-MIT"),
            path: "LICENSE-MIT",
            executable: false,
        },
        Entry {
            source: root.join("LICENSE-APACHE"),
            path: "LICENSE-APACHE",
            executable: false,
        },
        Entry {
            source: root.join("docs/configuration.md"),
            path: "docs/configuration.md",
            executable: false,
        },
        Entry {
            source: root.join("deploy/soketi-server.service"),
            path: "deploy/soketi-server.service",
            executable: false,
        },
    ];
    pack(&name, &entries, out_dir, commit_time(root))
}

/// Writes `<out_dir>/<name>.tar.gz`, whose entries sit under the folder `<name>/`, owned by
/// root and dated `mtime` (so the same files give the same bytes), and `<name>.tar.gz.sha256`
/// in `sha256sum`'s format.
pub(crate) fn pack(name: &str, entries: &[Entry], out_dir: &Path, mtime: u64) -> Result<Packed> {
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let file_name = format!("{name}.tar.gz");
    let archive = out_dir.join(&file_name);
    let file = File::create(&archive).with_context(|| format!("creating {}", archive.display()))?;
    // gzip's default level: level 9 made the release archive 0.5% smaller for twice the time,
    // and three times the time on the 200 MB debug binary that `cargo xtask test` packs.
    let mut tar = tar::Builder::new(GzEncoder::new(BufWriter::new(file), Compression::default()));
    let mut folders = vec![name.to_owned()];
    for entry in entries {
        let mut parent = Path::new(entry.path).parent();
        while let Some(folder) = parent.filter(|p| !p.as_os_str().is_empty()) {
            folders.push(format!("{name}/{}", folder.display()));
            parent = folder.parent();
        }
    }
    folders.sort();
    folders.dedup();
    for folder in &folders {
        let mut header = header(tar::EntryType::Directory, 0o755, 0, mtime);
        tar.append_data(&mut header, format!("{folder}/"), io::empty())
            .with_context(|| format!("adding {folder}/ to {file_name}"))?;
    }
    for entry in entries {
        let mut source = File::open(&entry.source)
            .with_context(|| format!("opening {}", entry.source.display()))?;
        let size = source.metadata()?.len();
        let mode = if entry.executable { 0o755 } else { 0o644 };
        let mut header = header(tar::EntryType::Regular, mode, size, mtime);
        let path = format!("{name}/{}", entry.path);
        tar.append_data(&mut header, &path, &mut source)
            .with_context(|| format!("adding {path} to {file_name}"))?;
    }
    let mut writer = tar
        .into_inner()
        .and_then(GzEncoder::finish)
        .with_context(|| format!("writing {}", archive.display()))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", archive.display()))?;
    drop(writer);

    let sha256 = sha256_file(&archive)?;
    let checksum_file = out_dir.join(format!("{file_name}.sha256"));
    fs::write(&checksum_file, format!("{sha256}  {file_name}\n"))
        .with_context(|| format!("writing {}", checksum_file.display()))?;
    Ok(Packed {
        archive,
        checksum_file,
        sha256,
    })
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// The lowercase hex SHA-256 of a file's bytes.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Checks an archive as an operator would use it: `sha256sum --check` on the checksum file,
/// `tar -xzf` into a scratch folder, then the binary's `--version` and `/ready`.
pub(crate) fn check(packed: &Packed) -> Result<()> {
    let out_dir = packed
        .checksum_file
        .parent()
        .context("the checksum file has no parent folder")?;
    let checksum_name = packed
        .checksum_file
        .file_name()
        .context("the checksum file has no name")?;
    run(Command::new("sha256sum")
        .arg("--check")
        .arg(checksum_name)
        .current_dir(out_dir))?;

    let scratch = tempfile::Builder::new()
        .prefix("soketi-dist-check-")
        .tempdir()
        .context("creating a scratch folder")?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&packed.archive)
        .arg("-C")
        .arg(scratch.path()))?;
    let folder = archive_folder(&packed.archive)?;
    let binary = scratch.path().join(folder).join(PACKAGE);

    let version = Command::new(&binary)
        .arg("--version")
        .env_clear()
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let version = String::from_utf8_lossy(&version.stdout);
    if !version.starts_with(&format!("{PACKAGE} ")) || !version.contains(" (") {
        bail!("`{PACKAGE} --version` printed {version:?}, not `{PACKAGE} VERSION (COMMIT DATE)`");
    }
    eprintln!("unpacked: {}", version.trim_end());
    answers_ready(&binary, scratch.path())
}

/// The folder an archive unpacks into: its name without `.tar.gz`.
fn archive_folder(archive: &Path) -> Result<String> {
    let name = archive
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.strip_suffix(".tar.gz") {
        Some(folder) if !folder.is_empty() => Ok(folder.to_owned()),
        _ => bail!("{} is not a .tar.gz archive", archive.display()),
    }
}

/// Starts `binary` on free loopback ports, with no inherited environment (so no option of the
/// caller's shell applies), and waits until `GET /ready` on the operations port answers 200.
fn answers_ready(binary: &Path, scratch: &Path) -> Result<()> {
    let port = free_port()?;
    let ops_port = free_port()?;
    let log_path = scratch.join("server.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new(binary)
        .arg("start")
        .env_clear()
        .env("SOKETI_HOST", "127.0.0.1")
        .env("SOKETI_PORT", port.to_string())
        .env("SOKETI_METRICS_HOST", "127.0.0.1")
        .env("SOKETI_METRICS_SERVER_PORT", ops_port.to_string())
        .current_dir(scratch)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut child = KillOnDrop(child);
    let ops = SocketAddr::from(([127, 0, 0, 1], ops_port));
    let started = Instant::now();
    let result = loop {
        if let Some(status) = child.0.try_wait()? {
            break Err(anyhow::anyhow!(
                "the server exited before it was ready ({status})"
            ));
        }
        match get_status(ops, "/ready") {
            Ok(200) => break Ok(()),
            Ok(_) | Err(_) if started.elapsed() < READY_DEADLINE => {
                thread::sleep(Duration::from_millis(50));
            }
            Ok(status) => break Err(anyhow::anyhow!("GET /ready answered {status}")),
            Err(err) => break Err(err.context(format!("GET /ready on {ops}"))),
        }
    };
    drop(child);
    match result {
        Ok(()) => {
            eprintln!(
                "GET http://{ops}/ready: 200 after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(err) => {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            Err(err.context(format!(
                "the unpacked server did not get ready; its output:\n{log}"
            )))
        }
    }
}

/// A child process killed when the guard goes, so that a failed check leaves no server behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free on loopback a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The status code of a plain `GET`.
fn get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let answer = cmd::http_get(addr, path)?;
    parse_status(&answer).with_context(|| format!("not an HTTP answer: {answer:?}"))
}

/// The status of an HTTP/1 answer's first line.
fn parse_status(answer: &str) -> Option<u16> {
    let mut words = answer.lines().next()?.split_whitespace();
    words
        .next()
        .filter(|version| version.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

/// The version of the shipped package, from `cargo metadata`.
fn package_version(root: &Path) -> Result<String> {
    let metadata = cmd::metadata(root)?;
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == PACKAGE)
        .and_then(|package| package["version"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("`cargo metadata` lists no {PACKAGE} with a version"))
}

/// The host's target triple, from the `host:` line of `rustc -vV` (the toolchain that built the
/// binary, as `rust-toolchain.toml` pins it for this folder).
fn host_target(root: &Path) -> Result<String> {
    let output = Command::new("rustc")
        .arg("-vV")
        .current_dir(root)
        .output()
        .context("running `rustc -vV`")?;
    if !output.status.success() {
        bail!("`rustc -vV` failed ({})", output.status);
    }
    parse_host(&String::from_utf8_lossy(&output.stdout))
        .context("`rustc -vV` printed no `host:` line")
}

fn parse_host(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("host:"))
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
}

/// The time of the HEAD commit, so that packing the same binary again gives the same archive;
/// 0 outside a git checkout.
pub(crate) fn commit_time(root: &Path) -> u64 {
    Command::new("git")
        .args(["log", "-1", "--format=%ct", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(0)
}
