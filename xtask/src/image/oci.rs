//! The image archive: one OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) in a
//! tar file, with Docker's `manifest.json` beside it, the shape `docker save` has written since
//! Docker 25. podman and Docker's containerd image store read the layout; Docker's classic image
//! store reads `manifest.json`, whose entries point at the same blobs.
//!
//! The image is one gzip-compressed layer holding the root filesystem, and a config. Every tar
//! entry is owned by root and dated `mtime`, and gzip's header carries no name or time, so the
//! same files give the same digests.

use std::{
    fs::File,
    io::{self, BufWriter, Seek, Write},
    os::unix::fs::PermissionsExt,
    path::Path,
};

use anyhow::{Context, Result};
use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::rootfs::Entry;

/// The layout's index is OCI's; the image it lists is in Docker's format (image manifest v2,
/// schema 2), as `docker buildx build --output type=docker` writes it: podman reads the health
/// check from a Docker config only, and ignores it in an image with OCI media types. Every engine
/// and registry reads both.
pub(crate) const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A content-addressed blob: `sha256:<hex>` and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Blob {
    pub(crate) digest: String,
    pub(crate) size: u64,
}

impl Blob {
    fn of(bytes: &[u8]) -> Self {
        Self {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            size: bytes.len() as u64,
        }
    }

    /// Its path inside the layout, `blobs/sha256/<hex>`.
    pub(crate) fn path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }
}

/// What was written: the blobs and the layer's uncompressed size.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) config: Blob,
    pub(crate) manifest: Blob,
    pub(crate) layer: Blob,
    /// The layer's tar before compression: its digest is the config's `diff_id`.
    pub(crate) diff: Blob,
}

/// Writes the archive of one image to `out`: the root filesystem `entries` as its layer,
/// `config` (an image config without `rootfs`, which is filled in here) and the name `name`
/// (`repository:tag`, as Docker and Kubernetes write it).
pub(crate) fn write_archive(
    entries: &[Entry],
    mut config: Value,
    name: &str,
    mtime: u64,
    out: &Path,
) -> Result<Written> {
    let folder = out.parent().context("the archive's path has no folder")?;
    // The layer goes to a scratch file first: its digest names it inside the archive.
    let mut layer_file = tempfile::tempfile_in(folder)
        .with_context(|| format!("creating a scratch file in {}", folder.display()))?;
    let (diff, layer) = write_layer(entries, mtime, &mut layer_file)?;

    config["rootfs"] = json!({ "type": "layers", "diff_ids": [diff.digest] });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_blob = Blob::of(&config_bytes);
    let manifest_bytes = serde_json::to_vec(&manifest(&config_blob, &layer))?;
    let manifest_blob = Blob::of(&manifest_bytes);
    let index_bytes = serde_json::to_vec_pretty(&index(&manifest_blob, name))?;
    let docker_bytes = serde_json::to_vec_pretty(&docker_manifest(&config_blob, &layer, name))?;

    let mut partial = tempfile::NamedTempFile::new_in(folder)
        .with_context(|| format!("creating a scratch file in {}", folder.display()))?;
    let mut tar = tar::Builder::new(BufWriter::new(partial.as_file_mut()));
    for folder in ["blobs/", "blobs/sha256/"] {
        let mut header = header(tar::EntryType::Directory, 0o755, 0, mtime);
        tar.append_data(&mut header, folder, io::empty())?;
    }
    layer_file.rewind()?;
    let mut header = header(tar::EntryType::Regular, 0o644, layer.size, mtime);
    tar.append_data(&mut header, layer.path(), &mut layer_file)?;
    let files = [
        (config_blob.path(), &config_bytes),
        (manifest_blob.path(), &manifest_bytes),
        ("index.json".to_owned(), &index_bytes),
        ("manifest.json".to_owned(), &docker_bytes),
    ];
    for (path, bytes) in files {
        append(&mut tar, &path, bytes, mtime)?;
    }
    append(
        &mut tar,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        mtime,
    )?;
    tar.into_inner()?
        .flush()
        .with_context(|| format!("writing {}", out.display()))?;
    // A scratch file is private (0600); the archive is for whoever may read the folder.
    partial
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", out.display()))?;
    partial
        .persist(out)
        .with_context(|| format!("moving the archive to {}", out.display()))?;
    Ok(Written {
        config: config_blob,
        manifest: manifest_blob,
        layer,
        diff,
    })
}

/// Writes the layer, a gzip-compressed tar of `entries`, to `out`; returns the uncompressed tar
/// (the `diff_id`) and the compressed blob.
pub(crate) fn write_layer(entries: &[Entry], mtime: u64, out: &mut File) -> Result<(Blob, Blob)> {
    let compressed = Hashing::new(BufWriter::new(out));
    // gzip's default level, as for the dist archive; flate2 writes no name and time 0.
    let gzip = GzEncoder::new(compressed, Compression::default());
    let mut tar = tar::Builder::new(Hashing::new(gzip));
    for entry in entries {
        match &entry.contents {
            None => {
                let mut header = header(tar::EntryType::Directory, entry.mode, 0, mtime);
                tar.append_data(&mut header, format!("{}/", entry.path), io::empty())
            }
            Some(source) => {
                let bytes = source.read()?;
                let size = bytes.len() as u64;
                let mut header = header(tar::EntryType::Regular, entry.mode, size, mtime);
                tar.append_data(&mut header, &entry.path, bytes.as_slice())
            }
        }
        .with_context(|| format!("adding /{} to the layer", entry.path))?;
    }
    let uncompressed = tar.into_inner()?;
    let diff = uncompressed.blob();
    let mut compressed = uncompressed.inner.finish()?;
    compressed.flush()?;
    Ok((diff, compressed.blob()))
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8], mtime: u64) -> Result<()> {
    let mut header = header(tar::EntryType::Regular, 0o644, bytes.len() as u64, mtime);
    tar.append_data(&mut header, path, bytes)
        .with_context(|| format!("adding {path} to the archive"))
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    // ustar, as Go's archive/tar writes the layers of Docker and podman.
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn descriptor(media_type: &str, blob: &Blob) -> Value {
    json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.size })
}

pub(crate) fn manifest(config: &Blob, layer: &Blob) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, config),
        "layers": [descriptor(LAYER_TYPE, layer)],
    })
}

/// The layout's index. Its one manifest is named twice: `io.containerd.image.name`, the full
/// reference that containerd (Docker 25+, `ctr import`, kind) and podman read, and
/// `org.opencontainers.image.ref.name`, the tag alone, as the OCI layout defines it.
pub(crate) fn index(manifest: &Blob, name: &str) -> Value {
    let mut entry = descriptor(MANIFEST_TYPE, manifest);
    let tag = name.rsplit_once(':').map_or("latest", |(_, tag)| tag);
    entry["annotations"] = json!({
        "io.containerd.image.name": full_name(name),
        "org.opencontainers.image.ref.name": tag,
    });
    json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry] })
}

/// Docker's `manifest.json`, which `docker load` of every version reads.
pub(crate) fn docker_manifest(config: &Blob, layer: &Blob, name: &str) -> Value {
    json!([{ "Config": config.path(), "RepoTags": [name], "Layers": [layer.path()] }])
}

/// `name` as a full reference: Docker Hub's `docker.io/` before a name without a registry,
/// which is how Docker and Kubernetes read `soketi-rs/soketi-server:0.1.0`.
pub(crate) fn full_name(name: &str) -> String {
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        name.to_owned()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn blob(&self) -> Blob {
        Blob {
            digest: format!("sha256:{}", hex::encode(self.hasher.clone().finalize())),
            size: self.size,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
