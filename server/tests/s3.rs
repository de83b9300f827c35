//! `baleen serve --blobs s3://…` against a real Garage node: a release published through the CLI
//! is served (index, manifest, blobs, a pack) with its bytes in the bucket and none in the data
//! directory. Skips, saying why, when no Garage binary is built (see `scripts/garage`), unless
//! `BALEEN_REQUIRE_GARAGE` is set.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;
#[path = "support/cli.rs"]
mod support;
#[path = "../src/test_service.rs"]
mod test_service;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::request;
use manifests::Digest;
use server::blob_store::BlobStore;
use server::blob_store::s3::{S3BlobStore, S3Config};
use support::{Serve, baleen, init, ok};
use test_service::{Kind, TestService};

#[test]
fn serve_with_blobs_in_s3_publishes_and_serves_a_release_from_the_bucket() {
    let Some(node) = TestService::start(
        Kind::Garage,
        "s3::serve_with_blobs_in_s3_publishes_and_serves_a_release",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let token = init(&data, "ci", "admin").trim().to_owned();

    let (serve, base) = Serve::start(
        &[
            "--data-dir",
            data_arg,
            "--blobs",
            "s3://baleen",
            "--pack-wait-ms",
            "60000",
        ],
        &node.env,
    );

    // A build big enough that the server precompresses a file, with a file over one part.
    let build = dir.path().join("dist");
    std::fs::create_dir_all(build.join("assets")).unwrap();
    let page = "<!doctype html><p>offline</p>".repeat(200);
    let big: Vec<u8> = (0..9 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(build.join("index.html"), &page).unwrap();
    std::fs::write(build.join("assets/big.bin"), &big).unwrap();
    let remote = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", token.as_str()),
    ];
    ok(&baleen(
        &[
            "publish",
            build.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            "1.0.0",
            "--channel",
            "production",
            "--create-channel",
            "--route",
            "https://m.example.com/checkout/",
        ],
        &remote,
    ));

    // What a device fetches: the index, the manifest it names, every blob, the pack.
    let index = request(
        &base,
        "GET",
        "/v1/apps/shop/channels/production/index",
        &[],
        None,
    );
    assert_eq!(index.status, 200, "{}", index.text());
    let index = index.json();
    let manifest_digest = index["signed"]["packages"]["checkout"]["stable"]["manifest"]
        .as_str()
        .unwrap_or_else(|| panic!("no manifest digest in {index}"))
        .to_owned();
    let manifest = request(
        &base,
        "GET",
        &format!("/v1/manifests/{manifest_digest}"),
        &[],
        None,
    );
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    let manifest = manifest.json();
    let files = manifest["signed"]["files"].as_object().unwrap();
    let mut blob_digests = BTreeSet::new();
    for (path, file) in files {
        let sha = file["sha256"].as_str().unwrap();
        let blob = request(&base, "GET", &format!("/v1/blobs/{sha}"), &[], None);
        assert_eq!(blob.status, 200, "{path}: {}", blob.text());
        let expected = if path == "index.html" {
            page.as_bytes()
        } else {
            &big[..]
        };
        assert_eq!(Digest::of(&blob.body), Digest::of(expected), "{path}");
        blob_digests.insert(Digest::parse(sha).unwrap());
    }
    assert_eq!(blob_digests.len(), 2);
    // A ranged read of the big blob, through a ranged GET to the bucket.
    let big_sha = Digest::of(&big).to_string();
    let part = request(
        &base,
        "GET",
        &format!("/v1/blobs/{big_sha}"),
        &[("Range", "bytes=8388600-8388615")],
        None,
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, big[8_388_600..8_388_616]);

    // The pack: the first answer may be the fast build, held in memory; the final one is stored
    // in the bucket and served under its sha256 as ETag. The build runs in the server process,
    // so this polls for it (level 19 on a 9 MiB file takes seconds).
    let deadline = Instant::now() + Duration::from_secs(300);
    let pack_digest = loop {
        let pack = request(&base, "GET", "/v1/packs/checkout/1.0.0.zip", &[], None);
        assert_eq!(pack.status, 200, "{}", pack.text());
        let etag = pack.header("etag").unwrap().trim_matches('"').to_owned();
        let immutable = pack
            .header("cache-control")
            .is_some_and(|c| c.contains("immutable"));
        if immutable {
            assert_eq!(Digest::of(&pack.body).to_string(), etag);
            break Digest::parse(&etag).unwrap();
        }
        assert!(Instant::now() < deadline, "the final pack was never stored");
        std::thread::sleep(Duration::from_millis(200));
    };

    // Every byte is in the bucket, and none in the data directory. The precompressed copy of the
    // page is written after the fast pack, by the same background job, so this waits for it too.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = S3Config::from_env("baleen", |k| node.var(k)).unwrap();
    let store = runtime.block_on(S3BlobStore::open(&config)).unwrap();
    let stored = loop {
        let stored = runtime.block_on(store.list()).unwrap();
        if stored.iter().any(|b| !b.variants.is_empty()) {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "no precompressed copy in the bucket: {stored:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let in_bucket: BTreeSet<Digest> = stored
        .iter()
        .filter(|b| b.size_bytes.is_some())
        .map(|b| b.digest)
        .collect();
    assert!(in_bucket.is_superset(&blob_digests), "{stored:?}");
    assert!(in_bucket.contains(&pack_digest), "{stored:?}");
    assert_eq!(blob_files(&data.join("blobs")), 0);
    drop(serve);
}

/// Files under a directory, or 0 if it does not exist.
fn blob_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() { blob_files(&path) } else { 1 }
        })
        .sum()
}
