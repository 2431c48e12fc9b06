use std::{
    fs,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    About, Options, Profile, REPOSITORY, config,
    oci::{self, Blob},
    rfc3339,
    rootfs::{self, Entry, Source},
};
use crate::cmd::check_parse;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn about() -> About {
    About {
        version: "1.2.3".to_owned(),
        revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        license: "MIT OR Apache-2.0".to_owned(),
        source: "https://example.com/soketi-rs".to_owned(),
        time: 1_700_000_000,
    }
}

#[test]
fn options() {
    let check = |args: &[&str], expected: Result<Options, &str>| {
        check_parse(Options::parse, args, expected);
    };
    let options = |profile, out: Option<&str>, rootfs: Option<&str>, check| Options {
        profile,
        out: out.map(PathBuf::from),
        rootfs: rootfs.map(PathBuf::from),
        check,
    };
    check(&[], Ok(options(Profile::Dist, None, None, false)));
    check(
        &["--profile", "debug", "--out=/tmp/i.tar", "--check"],
        Ok(options(Profile::Debug, Some("/tmp/i.tar"), None, true)),
    );
    check(
        &["--rootfs", "/rootfs"],
        Ok(options(Profile::Dist, None, Some("/rootfs"), false)),
    );
    check(
        &["--profile", "release"],
        Err("`--profile release`: expected dist or debug"),
    );
    check(&["--out"], Err("`--out` needs a value"));
    check(
        &["--rootfs", "/r", "--check"],
        Err("`--rootfs` writes a folder, not an archive: it takes neither `--out` nor `--check`"),
    );
    check(&["--push"], Err("unknown option `--push` for `image`"));
}

#[test]
fn ldd_output() {
    let check = |text: &str, expected: Result<&[&str], &str>| {
        let actual = rootfs::parse_ldd(text).map_err(|err| err.to_string());
        let expected = expected
            .map(|paths| paths.iter().map(PathBuf::from).collect::<Vec<_>>())
            .map_err(str::to_owned);
        assert_eq!(actual, expected, "{text:?}");
    };
    check(
        "\tlinux-vdso.so.1 (0x00007ffd5b7f2000)\n\
         \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f5a1c9b1000)\n\
         \tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f5a1c8d2000)\n\
         \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5a1c6f1000)\n\
         \t/lib64/ld-linux-x86-64.so.2 (0x00007f5a1ca0e000)\n",
        Ok(&[
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/lib64/ld-linux-x86-64.so.2",
        ]),
    );
    check("\tstatically linked\n", Ok(&[]));
    check("", Ok(&[]));
    check(
        "\tlibssl.so.3 => not found\n",
        Err("ldd found no libssl.so.3 on this machine"),
    );
    check(
        "\tsomething odd\n",
        Err("an `ldd` line this task does not understand: \"something odd\""),
    );
}

#[test]
fn dpkg_search() {
    let check = |text: &str, expected: &[&str]| {
        assert_eq!(rootfs::parse_dpkg_search(text), expected, "{text:?}");
    };
    check(
        "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6\n\
         libgcc-s1:amd64: /lib/x86_64-linux-gnu/libgcc_s.so.1\n",
        &["libc6", "libgcc-s1"],
    );
    check(
        "libc6:amd64, libc6:i386: /usr/share/doc/libc6\n",
        &["libc6", "libc6"],
    );
    check("diversion by dash from: /bin/sh\n", &[]);
    check("", &[]);
}

#[test]
fn folders_come_before_what_they_hold() {
    let file = |path: &str| Entry {
        path: path.to_owned(),
        mode: 0o644,
        contents: Some(Source::Text(String::new())),
    };
    let tmp = Entry {
        path: "tmp".to_owned(),
        mode: 0o1777,
        contents: None,
    };
    let entries = rootfs::with_parents(vec![
        file("usr/local/bin/soketi-server"),
        tmp,
        file("etc/passwd"),
        file("etc/ssl/certs/ca-certificates.crt"),
    ]);
    let listed: Vec<(&str, u32, bool)> = entries
        .iter()
        .map(|e| (e.path.as_str(), e.mode, e.contents.is_none()))
        .collect();
    assert_eq!(
        listed,
        [
            ("etc", 0o755, true),
            ("etc/passwd", 0o644, false),
            ("etc/ssl", 0o755, true),
            ("etc/ssl/certs", 0o755, true),
            ("etc/ssl/certs/ca-certificates.crt", 0o644, false),
            ("tmp", 0o1777, true),
            ("usr", 0o755, true),
            ("usr/local", 0o755, true),
            ("usr/local/bin", 0o755, true),
            ("usr/local/bin/soketi-server", 0o644, false),
        ]
    );
}

#[test]
fn full_names() {
    let check = |name: &str, expected: &str| assert_eq!(oci::full_name(name), expected);
    check(
        "soketi-rs/soketi-server:0.1.0",
        "docker.io/soketi-rs/soketi-server:0.1.0",
    );
    check(
        "soketi-server:0.1.0",
        "docker.io/library/soketi-server:0.1.0",
    );
    check(
        "ghcr.io/soketi-rs/soketi-server:1",
        "ghcr.io/soketi-rs/soketi-server:1",
    );
    check("localhost/soketi-server:1", "localhost/soketi-server:1");
    check(
        "registry:5000/soketi-server:1",
        "registry:5000/soketi-server:1",
    );
}

#[test]
fn dates() {
    let check = |seconds: u64, expected: &str| assert_eq!(rfc3339(seconds), expected);
    check(0, "1970-01-01T00:00:00Z");
    check(951_782_400, "2000-02-29T00:00:00Z");
    check(1_700_000_000, "2023-11-14T22:13:20Z");
    check(1_709_251_199, "2024-02-29T23:59:59Z");
    check(4_102_444_800, "2100-01-01T00:00:00Z");
}

#[test]
fn the_name_is_the_repository_and_the_version() {
    assert_eq!(about().name(Profile::Dist), format!("{REPOSITORY}:1.2.3"));
    assert_eq!(
        about().name(Profile::Debug),
        format!("{REPOSITORY}:1.2.3-debug")
    );
}

#[test]
fn config_runs_the_server_as_a_non_root_user() {
    let config = config(&about(), "amd64");
    let expected = json!({
        "created": "2023-11-14T22:13:20Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "65532:65532",
            "ExposedPorts": { "6001/tcp": {}, "9601/tcp": {} },
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": ["/usr/local/bin/soketi-server"],
            "Cmd": ["start"],
            "WorkingDir": "/",
            "StopSignal": "SIGTERM",
            "Healthcheck": {
                "Test": ["CMD", "/usr/local/bin/soketi-server", "health"],
                "Interval": 10_000_000_000_u64,
                "Timeout": 5_000_000_000_u64,
                "StartPeriod": 5_000_000_000_u64,
                "Retries": 3,
            },
            "Labels": {
                "org.opencontainers.image.title": "soketi-server",
                "org.opencontainers.image.description": "A Pusher Channels protocol 7 server",
                "org.opencontainers.image.version": "1.2.3",
                "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
                "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
                "org.opencontainers.image.source": "https://example.com/soketi-rs",
            },
        },
        "history": [{ "created": "2023-11-14T22:13:20Z", "created_by": "cargo xtask image" }],
    });
    assert_eq!(config, expected);
    assert!(rootfs::passwd().contains("\nsoketi:x:65532:65532:"));
    assert!(rootfs::group().contains("\nsoketi:x:65532:\n"));
}

/// A Dockerfile's instructions of its last stage, continuation lines joined, comments dropped.
fn last_stage(text: &str) -> Vec<String> {
    let mut stages: Vec<Vec<String>> = Vec::new();
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
                let instruction = std::mem::take(&mut current);
                if instruction.starts_with("FROM ") {
                    stages.push(Vec::new());
                }
                if let Some(stage) = stages.last_mut() {
                    stage.push(instruction);
                }
            }
        }
    }
    stages.pop().unwrap_or_default()
}

/// deploy/Dockerfile gives the same image: the root filesystem of `--rootfs` on `scratch`, and
/// the config written here.
#[test]
fn dockerfile_builds_the_same_image() {
    let dockerfile = fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("&& cargo xtask image --rootfs /rootfs\n"),
        "the build stage must assemble the root filesystem with `cargo xtask image --rootfs`"
    );
    let stage = last_stage(&dockerfile);
    let one = |keyword: &str| -> String {
        let found: Vec<&str> = stage
            .iter()
            .filter_map(|line| line.strip_prefix(keyword))
            .collect();
        let [found] = found[..] else {
            panic!("the last stage needs one {keyword}: {stage:?}");
        };
        found.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let config = config(&about(), "amd64");
    let run = &config["config"];
    let words = |value: &Value| {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|word| format!("\"{}\"", word.as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(", ")
    };

    assert_eq!(one("FROM "), "scratch");
    assert_eq!(one("COPY "), "--from=build /rootfs/ /");
    assert_eq!(one("USER "), run["User"]);
    let exposed: Vec<String> = one("EXPOSE ")
        .split_whitespace()
        .map(|port| format!("{port}/tcp"))
        .collect();
    let ports: Vec<&String> = run["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(exposed.iter().collect::<Vec<_>>(), ports);
    assert_eq!(
        one("ENTRYPOINT "),
        format!("[{}]", words(&run["Entrypoint"]))
    );
    assert_eq!(one("CMD "), format!("[{}]", words(&run["Cmd"])));
    assert_eq!(one("STOPSIGNAL "), run["StopSignal"]);
    let health = &run["Healthcheck"];
    let seconds = |key: &str| health[key].as_u64().unwrap() / 1_000_000_000;
    let test = health["Test"].as_array().unwrap();
    assert_eq!(test[0], "CMD");
    assert_eq!(
        one("HEALTHCHECK "),
        format!(
            "--interval={}s --timeout={}s --start-period={}s --retries={} CMD [{}]",
            seconds("Interval"),
            seconds("Timeout"),
            seconds("StartPeriod"),
            health["Retries"],
            words(&Value::from(test[1..].to_vec())),
        )
    );
    // The same labels; their values are the package's, which tests/deploy.rs checks.
    let label = one("LABEL ");
    let keys: Vec<&str> = label
        .split_whitespace()
        .filter_map(|word| word.split_once('=').map(|(key, _)| key))
        .filter(|key| key.starts_with("org.opencontainers."))
        .collect();
    let expected: Vec<&String> = run["Labels"].as_object().unwrap().keys().collect();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected);
}

/// An entry of a tar file: path, mode, uid plus gid, date, and the contents of a file.
type TarEntry = (String, u32, u64, u64, Option<Vec<u8>>);

fn tar_entries(reader: impl Read) -> Vec<TarEntry> {
    tar::Archive::new(reader)
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let contents = (!header.entry_type().is_dir()).then(|| {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                bytes
            });
            (
                entry.path().unwrap().display().to_string(),
                header.mode().unwrap(),
                header.uid().unwrap() + header.gid().unwrap(),
                header.mtime().unwrap(),
                contents,
            )
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn archive_is_an_oci_layout_and_a_docker_archive() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary");
    fs::write(&binary, b"\x7fELF fake").unwrap();
    let entries = rootfs::with_parents(vec![
        Entry {
            path: "tmp".to_owned(),
            mode: 0o1777,
            contents: None,
        },
        Entry {
            path: "usr/local/bin/soketi-server".to_owned(),
            mode: 0o755,
            contents: Some(Source::Host(binary)),
        },
        Entry {
            path: "etc/passwd".to_owned(),
            mode: 0o644,
            contents: Some(Source::Text(rootfs::passwd())),
        },
    ]);
    let name = "soketi-rs/soketi-server:1.2.3";
    let write = |file: &str| {
        let out = dir.path().join(file);
        let written = oci::write_archive(
            &entries,
            config(&about(), "amd64"),
            name,
            1_700_000_000,
            &out,
        )
        .unwrap();
        (out, written)
    };
    let (out, written) = write("a.tar");
    let (again, _) = write("b.tar");
    assert_eq!(
        fs::read(&out).unwrap(),
        fs::read(&again).unwrap(),
        "the same files give the same archive"
    );

    let files: Vec<(String, Vec<u8>)> = tar_entries(fs::File::open(&out).unwrap())
        .into_iter()
        .map(|(path, mode, owner, mtime, contents)| {
            assert_eq!((owner, mtime), (0, 1_700_000_000), "{path}");
            assert!(mode == 0o644 || mode == 0o755, "{path}: {mode:o}");
            (path, contents.unwrap_or_default())
        })
        .collect();
    let file = |path: &str| -> &[u8] {
        &files
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("no {path} in the archive"))
            .1
    };
    let json = |path: &str| -> Value { serde_json::from_slice(file(path)).unwrap() };
    // Every blob is named by its digest.
    for (path, bytes) in &files {
        if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(sha256(bytes), format!("sha256:{hex}"), "{path}");
        }
    }
    assert_eq!(json("oci-layout"), json!({ "imageLayoutVersion": "1.0.0" }));

    let index = json("index.json");
    let manifest_path = Blob {
        digest: index["manifests"][0]["digest"].as_str().unwrap().to_owned(),
        size: 0,
    }
    .path();
    assert_eq!(
        index,
        json!({
            "schemaVersion": 2,
            "mediaType": oci::INDEX_TYPE,
            "manifests": [{
                "mediaType": oci::MANIFEST_TYPE,
                "digest": written.manifest.digest,
                "size": file(&manifest_path).len(),
                "annotations": {
                    "io.containerd.image.name": "docker.io/soketi-rs/soketi-server:1.2.3",
                    "org.opencontainers.image.ref.name": "1.2.3",
                },
            }],
        })
    );
    let manifest = json(&manifest_path);
    assert_eq!(manifest["mediaType"], oci::MANIFEST_TYPE);
    assert_eq!(manifest["config"]["mediaType"], oci::CONFIG_TYPE);
    assert_eq!(manifest["config"]["digest"], written.config.digest);
    let [layer] = manifest["layers"].as_array().unwrap().as_slice() else {
        panic!("one layer: {manifest}");
    };
    assert_eq!(layer["mediaType"], oci::LAYER_TYPE);
    assert_eq!(layer["digest"], written.layer.digest);
    assert_eq!(layer["size"], written.layer.size);

    assert_eq!(
        json("manifest.json"),
        json!([{
            "Config": written.config.path(),
            "RepoTags": [name],
            "Layers": [written.layer.path()],
        }])
    );

    // The config is the one given, with the layer's uncompressed digest.
    let mut expected = config(&about(), "amd64");
    let compressed = file(&written.layer.path());
    let mut diff = Vec::new();
    GzDecoder::new(compressed).read_to_end(&mut diff).unwrap();
    expected["rootfs"] = json!({ "type": "layers", "diff_ids": [sha256(&diff)] });
    assert_eq!(json(&written.config.path()), expected);
    assert_eq!(written.diff.size, diff.len() as u64);

    let layer = tar_entries(diff.as_slice());
    let date = 1_700_000_000;
    assert_eq!(
        layer,
        [
            ("etc/".to_owned(), 0o755, 0, date, None),
            (
                "etc/passwd".to_owned(),
                0o644,
                0,
                date,
                Some(rootfs::passwd().into_bytes())
            ),
            ("tmp/".to_owned(), 0o1777, 0, date, None),
            ("usr/".to_owned(), 0o755, 0, date, None),
            ("usr/local/".to_owned(), 0o755, 0, date, None),
            ("usr/local/bin/".to_owned(), 0o755, 0, date, None),
            (
                "usr/local/bin/soketi-server".to_owned(),
                0o755,
                0,
                date,
                Some(b"\x7fELF fake".to_vec())
            ),
        ]
    );
}

/// The root filesystem of a real binary of this toolchain (this test's own): its loader and
/// libraries, the CA bundle and the user, written as a folder with their modes.
#[test]
fn root_filesystem_of_a_rust_binary() {
    let binary = std::env::current_exe().unwrap();
    let entries = rootfs::assemble(&root(), &binary).unwrap();
    let find = |path: &str| {
        entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no /{path} in {entries:#?}"))
    };
    assert_eq!(find("usr/local/bin/soketi-server").mode, 0o755);
    assert_eq!(find("tmp").mode, 0o1777);
    assert_eq!(
        find("etc/ssl/certs/ca-certificates.crt").contents,
        Some(Source::Host(PathBuf::from(
            "/etc/ssl/certs/ca-certificates.crt"
        )))
    );
    find("usr/share/doc/soketi-server/LICENSE-MIT");
    // glibc's loader, where the binary's PT_INTERP names it, and libc beside it.
    let loader = entries
        .iter()
        .find(|e| e.path.contains("/ld-linux"))
        .expect("the dynamic loader");
    assert_eq!(loader.mode, 0o755);
    assert!(entries.iter().any(|e| e.path.ends_with("/libc.so.6")));

    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("rootfs");
    rootfs::write_tree(&entries, &tree).unwrap();
    let mode = |path: &str| fs::metadata(tree.join(path)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("usr/local/bin/soketi-server"), 0o755);
    assert_eq!(
        fs::read(tree.join("usr/local/bin/soketi-server")).unwrap(),
        fs::read(&binary).unwrap()
    );
    assert_eq!(
        fs::read_to_string(tree.join("etc/passwd")).unwrap(),
        rootfs::passwd()
    );
    let again = rootfs::write_tree(&entries, &tree).unwrap_err();
    assert_eq!(
        again.to_string(),
        format!("{} is not empty", tree.display())
    );
}
