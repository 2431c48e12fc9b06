use std::{fs, io::Read, path::Path};

use flate2::read::GzDecoder;

use super::{Entry, archive_folder, pack, parse_host, parse_status, sha256_file};

/// Every entry of a `.tar.gz`: path, kind, mode, owner, date and contents.
fn entries(archive: &Path) -> Vec<(String, char, u32, u64, u64, Vec<u8>)> {
    let file = fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    tar.entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let kind = if header.entry_type().is_dir() {
                'd'
            } else {
                'f'
            };
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            (
                entry.path().unwrap().display().to_string(),
                kind,
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.mtime().unwrap(),
                contents,
            )
        })
        .collect()
}

#[test]
fn archive_holds_the_files_under_one_folder() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    fs::create_dir(&source).unwrap();
    fs::write(source.join("bin"), b"\x7fELF fake").unwrap();
    fs::write(source.join("readme"), b"# read me\n").unwrap();
    fs::write(source.join("config"), b"# options\n").unwrap();
    let entry = |file: &str, path: &'static str, executable: bool| Entry {
        source: source.join(file),
        path,
        executable,
    };
    let out = dir.path().join("out");
    let packed = pack(
        "soketi-server-1.2.3-x86_64-unknown-linux-gnu",
        &[
            entry("bin", "soketi-server", true),
            entry("readme", "README.md", false),
            entry("config", "docs/configuration.md", false),
        ],
        &out,
        1_700_000_000,
    )
    .unwrap();

    assert_eq!(
        packed.archive,
        out.join("soketi-server-1.2.3-x86_64-unknown-linux-gnu.tar.gz")
    );
    let top = "soketi-server-1.2.3-x86_64-unknown-linux-gnu";
    let date = 1_700_000_000;
    assert_eq!(
        entries(&packed.archive),
        [
            (format!("{top}/"), 'd', 0o755, 0, date, vec![]),
            (format!("{top}/docs/"), 'd', 0o755, 0, date, vec![]),
            (
                format!("{top}/soketi-server"),
                'f',
                0o755,
                0,
                date,
                b"\x7fELF fake".to_vec()
            ),
            (
                format!("{top}/README.md"),
                'f',
                0o644,
                0,
                date,
                b"# read me\n".to_vec()
            ),
            (
                format!("{top}/docs/configuration.md"),
                'f',
                0o644,
                0,
                date,
                b"# options\n".to_vec()
            ),
        ]
    );

    // sha256sum's format: the hex digest of the archive's bytes, two spaces, the file name.
    assert_eq!(
        packed.checksum_file,
        out.join("soketi-server-1.2.3-x86_64-unknown-linux-gnu.tar.gz.sha256")
    );
    let sha256 = sha256_file(&packed.archive).unwrap();
    assert_eq!(packed.sha256, sha256);
    assert_eq!(
        fs::read_to_string(&packed.checksum_file).unwrap(),
        format!("{sha256}  soketi-server-1.2.3-x86_64-unknown-linux-gnu.tar.gz\n")
    );

    // The same files and date give the same bytes.
    let again = pack(
        "soketi-server-1.2.3-x86_64-unknown-linux-gnu",
        &[
            entry("bin", "soketi-server", true),
            entry("readme", "README.md", false),
            entry("config", "docs/configuration.md", false),
        ],
        &dir.path().join("again"),
        1_700_000_000,
    )
    .unwrap();
    assert_eq!(again.sha256, packed.sha256);
}

#[test]
fn a_missing_file_fails_the_packing() {
    let dir = tempfile::tempdir().unwrap();
    let err = pack(
        "x",
        &[Entry {
            source: dir.path().join("absent"),
            path: "absent",
            executable: false,
        }],
        dir.path(),
        0,
    )
    .unwrap_err();
    assert!(format!("{err:#}").starts_with("opening "), "{err:#}");
}

#[test]
fn sha256_of_a_known_text() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("abc");
    fs::write(&file, b"abc").unwrap();
    assert_eq!(
        sha256_file(&file).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn host_lines() {
    let check = |text: &str, expected: Option<&str>| {
        assert_eq!(parse_host(text).as_deref(), expected, "{text:?}");
    };
    check(
        "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n",
        Some("x86_64-unknown-linux-gnu"),
    );
    check("host: aarch64-apple-darwin", Some("aarch64-apple-darwin"));
    check("rustc 1.95.0\nrelease: 1.95.0\n", None);
    check("host: \n", None);
}

#[test]
fn status_lines() {
    let check = |answer: &str, expected: Option<u16>| {
        assert_eq!(parse_status(answer), expected, "{answer:?}");
    };
    check("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK", Some(200));
    check("HTTP/1.0 503 Service Unavailable\r\n\r\n", Some(503));
    check("SSH-2.0-OpenSSH\r\n", None);
    check("", None);
}

#[test]
fn archive_folders() {
    let check = |archive: &str, expected: Option<&str>| {
        let actual = archive_folder(Path::new(archive)).ok();
        assert_eq!(actual.as_deref(), expected, "{archive}");
    };
    check(
        "target/dist/soketi-server-0.1.0-x86_64-unknown-linux-gnu.tar.gz",
        Some("soketi-server-0.1.0-x86_64-unknown-linux-gnu"),
    );
    check("a.zip", None);
    check(".tar.gz", None);
}
