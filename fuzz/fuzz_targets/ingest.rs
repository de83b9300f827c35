//! The server's whole archive check (`ingest_zip`, what every publish runs on its upload) on any
//! bytes as the uploaded zip, with small limits so that they are reached. Whatever it accepts is
//! staged whole (every file's bytes hash to its sha256, at its size, within the limits); whatever
//! it refuses leaves the staging directory empty.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use manifests::Digest;
use server::ingest::{Limits, ingest_zip};

/// A directory of this process's own, in memory where the machine has one.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        // libFuzzer ends a process without unwinding: clear what ended runs left behind.
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("baleen-fuzz-ingest-"));
            if pid.is_some_and(|pid| !std::path::Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("baleen-fuzz-ingest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let zip = dir.join("upload.zip");
    let staging = dir.join("staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("staging directory");
    std::fs::write(&zip, data).expect("writing the upload");
    let limits = Limits {
        max_entries: 64,
        max_file_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_ratio: 100,
    };
    match ingest_zip(&zip, &limits, &staging) {
        Ok(ingested) => {
            assert!(ingested.files.len() <= 64, "more entries than the limit");
            assert!(ingested.total_bytes <= 4 << 20, "more bytes than the limit");
            let mut total = 0;
            for (path, file) in &ingested.files {
                let bytes = std::fs::read(&file.staged).expect("a staged file");
                assert_eq!(bytes.len() as u64, file.size, "{path}: size");
                assert!(file.size <= 1 << 20, "{path}: over the file limit");
                assert_eq!(Digest::of(&bytes), file.sha256, "{path}: sha256");
                total += file.size;
            }
            assert_eq!(total, ingested.total_bytes, "the total is the sum of the files");
        }
        Err(e) => {
            let left = std::fs::read_dir(&staging).expect("staging").count();
            assert_eq!(left, 0, "a refused upload ({e}) left {left} staged files");
        }
    }
});
