//! A real on-device store for the benchmark examples: blobs under `blobs/`, signed manifests under
//! `manifests/` and a committed state naming them active, built with the public API only (the
//! `store` module and `manifests` signing), as an install would leave it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use client_core::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use client_core::store::{Installed, PackageState, Store};
use client_core::{Client, Config};
use manifests::{
    AppId, Channel, Digest, FileEntry, HostRequirement, HostVersion, KeyPair, MimeType, PackageId,
    RelPath, Release, ReleaseVersion, Route, Timestamp, UrlPrefix,
};

/// The URL prefix of `package`.
pub fn prefix(package: &str) -> String {
    format!("https://m.example.com/{package}/")
}

/// The path of file `i` inside a package: hashed chunks in 64 folders, a mix of kinds.
pub fn file_path(i: usize) -> String {
    let ext = ["js", "js", "js", "css", "png", "svg", "json", "html"][i % 8];
    format!("assets/chunk-{}/part-{i:05}.{ext}", i % 64)
}

fn mime(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        _ => "text/html; charset=utf-8",
    }
}

/// The bytes of file `i` of `package` (a few hundred bytes, distinct per file).
pub fn content(package: &str, i: usize) -> Vec<u8> {
    format!("/* {package} file {i} */\n{}", "x".repeat(200 + i % 300)).into_bytes()
}

/// A release of `package` with `files` files; the entry page is `index.html`.
pub fn release(package: &str, files: usize) -> Release {
    let mut map = BTreeMap::new();
    for i in 0..files {
        let path = file_path(i);
        let bytes = content(package, i);
        map.insert(
            RelPath::parse(&path).unwrap(),
            FileEntry {
                sha256: Digest::of(&bytes),
                size: bytes.len() as u64,
                mime: MimeType::parse(mime(&path)).unwrap(),
            },
        );
    }
    let entry = RelPath::parse("index.html").unwrap();
    let page = format!("<!doctype html>{package}").into_bytes();
    map.insert(
        entry.clone(),
        FileEntry {
            sha256: Digest::of(&page),
            size: page.len() as u64,
            mime: MimeType::parse("text/html; charset=utf-8").unwrap(),
        },
    );
    Release {
        package: PackageId::parse(package).unwrap(),
        version: ReleaseVersion::parse("1.0.0").unwrap(),
        files: map,
        entry: entry.clone(),
        routes: vec![Route {
            prefix: UrlPrefix::parse(&prefix(package)).unwrap(),
            fallback: Some(entry),
        }],
        requires: HostRequirement::any(),
        created_at: Timestamp::from_unix_secs(1_700_000_000),
        notes: String::new(),
        source_revision: None,
    }
}

/// The signing key of the fixtures.
pub fn key() -> KeyPair {
    KeyPair::from_seed(&[7; 32])
}

/// Writes a store in `dir` with one active, signed release per `(package, files)`, blobs included.
/// Returns the total bytes of the signed manifests.
pub fn build_store(dir: &Path, packages: &[(&str, usize)]) -> u64 {
    let key = key();
    let (store, mut state, _) = Store::open(dir).unwrap();
    let mut manifest_bytes = 0;
    for &(package, files) in packages {
        let release = release(package, files);
        for i in 0..files {
            write_blob(&store, &content(package, i));
        }
        write_blob(&store, format!("<!doctype html>{package}").as_bytes());
        let signed = release.sign(&[&key]).unwrap();
        store.write_manifest(&signed.digest, &signed.bytes).unwrap();
        manifest_bytes += signed.bytes.len() as u64;
        state.packages.insert(
            release.package.clone(),
            PackageState {
                active: Some(Installed {
                    version: release.version.clone(),
                    manifest: signed.digest,
                }),
                ..PackageState::default()
            },
        );
    }
    store.save(&state).unwrap();
    manifest_bytes
}

/// Stores a blob without the per-file fsync of an install (the content is what matters here).
fn write_blob(store: &Store, bytes: &[u8]) {
    let path = store.blob_path(&Digest::of(bytes));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A fetcher for a device that is offline: the benchmarks never touch the network.
#[derive(Debug)]
pub struct Offline;

impl Fetcher for Offline {
    fn fetch(&self, _: &FetchRequest) -> Result<FetchResponse, FetchError> {
        Err(FetchError {
            message: "offline".to_owned(),
        })
    }
}

/// Opens a client on the store in `dir`.
pub fn open(dir: &Path) -> Client {
    let config = Config {
        dir: dir.to_path_buf(),
        server: "http://127.0.0.1:9".to_owned(),
        app: AppId::parse("shop").unwrap(),
        channel: Channel::parse("production").unwrap(),
        device_id: "bench".to_owned(),
        host_version: HostVersion::parse("6.0").unwrap(),
        trusted_keys: vec![key().public().clone()],
        threshold: 1,
        custom_scheme: Some("baleen".to_owned()),
        max_pending_launches: 3,
        sequence_floor: 0,
        ingest_key: None,
    };
    Client::open(config, Arc::new(Offline)).unwrap()
}
