//! Configuration files: any contents, read as JSON, TOML or YAML (the first byte picks the
//! extension) and loaded as the server loads `--config`, then checked as at start-up. A bad
//! file is an error naming it; nothing panics.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use soketi_server::Config;

/// One file per extension in memory-backed `/dev/shm` when there is one, for this process.
fn path(extension: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let dir = base.join(format!("soketi-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the fuzzed files");
        dir
    });
    dir.join(format!("config.{extension}"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, contents)) = data.split_first() else {
        return;
    };
    let extension = ["json", "toml", "yaml", "yml"][usize::from(which) % 4];
    let file = path(extension);
    std::fs::write(&file, contents).expect("writing the fuzzed file");
    if let Ok(config) = Config::load_from(Some(&file), |_| None) {
        let _ = config.check_runnable();
        let _ = config.apps();
    }
});
