//! The image's root filesystem: the server at `/usr/local/bin/soketi-server`, the dynamic loader
//! and the shared libraries that `ldd` finds for it, the host's CA bundle, `/etc/passwd` and
//! `/etc/group` with the non-root user, a sticky `/tmp`, and the license texts of what ships.
//!
//! Nothing else: no shell, no package manager. Files keep the path the binary asks for (the
//! loader's path is written in the binary, the libraries' in the loader's default search path),
//! always as plain files, so the layout needs no symbolic link and no `ld.so.cache`.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{BINARY, CA_BUNDLE, GID, UID, USER};

/// One entry of the root filesystem, with its path relative to `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) path: String,
    pub(crate) mode: u32,
    /// `None` for a folder.
    pub(crate) contents: Option<Source>,
}

/// Where a file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A file of the host, read when the layer is written (symbolic links followed).
    Host(PathBuf),
    /// Text written here.
    Text(String),
}

impl Source {
    pub(crate) fn read(&self) -> Result<Vec<u8>> {
        match self {
            Self::Host(path) => {
                fs::read(path).with_context(|| format!("reading {}", path.display()))
            }
            Self::Text(text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

/// Every entry of the image's root filesystem for `binary`, parents first, sorted by path.
pub(crate) fn assemble(root: &Path, binary: &Path) -> Result<Vec<Entry>> {
    let mut files = vec![
        file(BINARY, 0o755, Source::Host(binary.to_path_buf())),
        file("etc/passwd", 0o644, Source::Text(passwd())),
        file("etc/group", 0o644, Source::Text(group())),
        // glibc reads `hosts` for the order of /etc/hosts and DNS; without the file it would ask
        // DNS first. Its `files` and `dns` modules are inside libc.so.6 since glibc 2.34.
        file(
            "etc/nsswitch.conf",
            0o644,
            Source::Text("passwd: files\ngroup: files\nhosts: files dns\n".to_owned()),
        ),
        file(
            "usr/share/doc/soketi-server/LICENSE-MIT",
            0o644,
            Source::Host(root.join("LICENSE-MIT")),
        ),
        file(
            "usr/share/doc/soketi-server/LICENSE-APACHE",
            0o644,
            Source::Host(root.join("LICENSE-APACHE")),
        ),
    ];
    // Redis and NATS over TLS trust the system's roots (rustls-native-certs reads this file);
    // the webhooks' client carries its own (webpki-roots).
    let ca_bundle = Path::new("/").join(CA_BUNDLE);
    if !ca_bundle.is_file() {
        bail!(
            "{} is missing: install Debian's ca-certificates (or your system's CA bundle there)",
            ca_bundle.display()
        );
    }
    files.push(file(CA_BUNDLE, 0o644, Source::Host(ca_bundle.clone())));

    let libraries = shared_libraries(binary)?;
    for library in &libraries {
        let path = library
            .to_str()
            .and_then(|path| path.strip_prefix('/'))
            .with_context(|| format!("ldd named a library at {}", library.display()))?;
        files.push(file(path, 0o755, Source::Host(library.clone())));
    }
    // glibc is LGPL, libgcc GPL with the runtime exception, the CA bundle MPL: each copy
    // carries its Debian copyright file, as distroless images do.
    let owners: Vec<&Path> = libraries
        .iter()
        .map(PathBuf::as_path)
        .chain([ca_bundle.as_path()])
        .collect();
    for package in packages(&owners) {
        let copyright = Path::new("/usr/share/doc").join(&package).join("copyright");
        if copyright.is_file() {
            let path = format!("usr/share/doc/{package}/copyright");
            files.push(file(&path, 0o644, Source::Host(copyright)));
        }
    }

    let mut entries = vec![Entry {
        path: "tmp".to_owned(),
        mode: 0o1777,
        contents: None,
    }];
    entries.extend(files);
    Ok(with_parents(entries))
}

fn file(path: &str, mode: u32, contents: Source) -> Entry {
    Entry {
        path: path.to_owned(),
        mode,
        contents: Some(contents),
    }
}

/// `root`, the fallback user `nobody`, and the server's own user, all without a login shell.
pub(crate) fn passwd() -> String {
    format!(
        "root:x:0:0:root:/root:/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
         {USER}:x:{UID}:{GID}:soketi-server:/nonexistent:/sbin/nologin\n"
    )
}

pub(crate) fn group() -> String {
    format!("root:x:0:\nnogroup:x:65534:\n{USER}:x:{GID}:\n")
}

/// `entries` with a folder (0755) for every parent that is not listed, sorted by path, so that
/// each folder comes before what it holds.
pub(crate) fn with_parents(mut entries: Vec<Entry>) -> Vec<Entry> {
    let mut folders = Vec::new();
    for entry in &entries {
        let mut parent = Path::new(&entry.path).parent();
        while let Some(folder) = parent.filter(|p| !p.as_os_str().is_empty()) {
            folders.push(folder.to_string_lossy().into_owned());
            parent = folder.parent();
        }
    }
    for folder in folders {
        if !entries.iter().any(|entry| entry.path == folder) {
            entries.push(Entry {
                path: folder,
                mode: 0o755,
                contents: None,
            });
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    entries
}

/// The shared objects the binary loads, the dynamic loader included, from `ldd`; none for a
/// static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running `ldd` (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    if text.contains("not a dynamic executable") || errors.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        bail!(
            "`ldd {}` failed ({}): {errors}",
            binary.display(),
            output.status
        );
    }
    parse_ldd(&text)
}

/// The paths of `ldd`'s output: `name => /path (0x...)` for a library, `/path (0x...)` for the
/// loader; the kernel's vDSO has no path. A library `ldd` could not find is an error.
pub(crate) fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        if line == "statically linked" {
            continue;
        }
        let target = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    bail!("ldd found no {} on this machine", name.trim());
                }
                target
            }
            None => line,
        };
        let path = target.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            paths.push(PathBuf::from(path));
        } else if !path.starts_with("linux-vdso")
            && !path.starts_with("linux-gate")
            && !path.is_empty()
        {
            bail!("an `ldd` line this task does not understand: {line:?}");
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// The Debian packages that own `paths`, from `dpkg-query --search` (none where there is no
/// dpkg). The CA bundle is generated rather than shipped, so it counts as `ca-certificates`'.
fn packages(paths: &[&Path]) -> Vec<String> {
    let mut packages = Vec::new();
    let mut search = Command::new("dpkg-query");
    search.arg("--search");
    for path in paths {
        if path.ends_with("ca-certificates.crt") {
            packages.push("ca-certificates".to_owned());
        } else {
            search.arg(path);
        }
    }
    let Ok(output) = search.output() else {
        eprintln!("image: no dpkg-query here, so no copyright files of the libraries");
        return packages;
    };
    // A path no package owns is reported on stderr with a failure, and the others still listed.
    packages.extend(parse_dpkg_search(&String::from_utf8_lossy(&output.stdout)));
    packages.sort();
    packages.dedup();
    packages
}

/// The package names of `dpkg-query --search` lines such as
/// `libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6`.
pub(crate) fn parse_dpkg_search(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .flat_map(|(owners, _)| owners.split(", "))
        .map(|owner| owner.split(':').next().unwrap_or(owner).trim().to_owned())
        .filter(|name| !name.is_empty() && !name.starts_with("diversion"))
        .collect()
}

/// Writes `entries` as a folder tree under `dir` (which must be empty or absent), with their
/// modes, for deploy/Dockerfile's `COPY --from=build /rootfs/ /` or a `chroot`.
pub(crate) fn write_tree(entries: &[Entry], dir: &Path) -> Result<()> {
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty", dir.display());
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for entry in entries {
        let path = dir.join(&entry.path);
        match &entry.contents {
            None => fs::create_dir(&path),
            Some(source) => fs::write(&path, source.read()?),
        }
        .with_context(|| format!("creating {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    Ok(())
}
