//! Real web apps no one here wrote: consecutive `swagger-ui-dist` releases from the npm registry,
//! pinned in `scripts/webapps.lock` and unpacked by `scripts/fetch-webapps.sh` into the directory
//! `BALEEN_WEBAPPS` names. A front-end team publishes them with the CLI; a device installs them
//! over HTTP and must serve every file byte for byte.
//!
//! Without `BALEEN_WEBAPPS` each test says so and does nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use client_core::Client;
use client_core::install::Method;
use tests::{Server, active_version, files_of};

const PACKAGE: &str = "swagger";
const ROUTE: &str = "https://m.example.com/swagger/";
/// The releases the update test walks through, oldest first: the newest pinned pair, the largest
/// change. One pair only: each publish costs the server a level-19 full pack of 12 MB and diff
/// packs from up to five earlier releases, seconds each in a debug build.
const UPDATES: [&str; 2] = ["5.34.1", "5.35.0"];

/// The unpacked build of each of `versions`, or `None` (after saying so) without `BALEEN_WEBAPPS`.
fn webapps(versions: &[&str]) -> Option<Vec<PathBuf>> {
    let Some(cache) = std::env::var_os("BALEEN_WEBAPPS") else {
        eprintln!(
            "skipped: set BALEEN_WEBAPPS to the cache dir printed by scripts/fetch-webapps.sh swagger-ui-dist"
        );
        return None;
    };
    let dirs = versions
        .iter()
        .map(|v| PathBuf::from(&cache).join(format!("swagger-ui-dist@{v}/package")))
        .collect::<Vec<_>>();
    for dir in &dirs {
        assert!(
            dir.is_dir(),
            "{} missing: run scripts/fetch-webapps.sh swagger-ui-dist",
            dir.display()
        );
    }
    Some(dirs)
}

/// Every file of `files` resolves to exactly its bytes; returns how many were checked.
fn assert_serves(client: &Client, files: &BTreeMap<String, Vec<u8>>) -> usize {
    for (path, bytes) in files {
        let url = format!("{ROUTE}{path}");
        let hit = client
            .resolve(&url)
            .unwrap_or_else(|| panic!("{url} missed"));
        assert_eq!(hit.size, bytes.len() as u64, "{url}");
        assert!(
            std::fs::read(&hit.path).unwrap() == *bytes,
            "{url}: bytes differ from the source"
        );
    }
    files.len()
}

#[test]
fn a_real_web_app_installs_and_every_file_resolves_to_its_source_bytes() {
    let Some(dirs) = webapps(&["5.34.0"]) else {
        return;
    };
    let server = Server::start();
    server.publish(
        &dirs[0],
        PACKAGE,
        "5.34.0",
        &["--channel", "production", "--route", ROUTE],
    );
    let files: BTreeMap<_, _> = files_of(&dirs[0]).into_iter().collect();
    let source_bytes: u64 = files.values().map(|b| b.len() as u64).sum();

    // A device asking in the first moments after a publish is sent to the blobs while the pack
    // builds; this one asks once the pack is there.
    tests::wait_for_final_pack(&server.base, &format!("/v1/packs/{PACKAGE}/5.34.0.zip"));
    let client = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    let outcome = client.check().unwrap();
    assert_eq!(outcome.updates.len(), 1);
    assert_eq!(outcome.updates[0].to.version.to_string(), "5.34.0");
    assert!(outcome.updates[0].from.is_none());
    let started = Instant::now();
    let report = client.install(&outcome.updates[0]).unwrap();
    eprintln!(
        "swagger-ui-dist 5.34.0: {} files, {source_bytes} bytes, installed by {:?} with {} bytes downloaded in {:?}",
        files.len(),
        report.method,
        report.downloaded_bytes,
        started.elapsed()
    );
    assert_eq!(
        report.method,
        Method::FullPack,
        "fallbacks: {:?}",
        report.fallbacks
    );
    assert!(report.fallbacks.is_empty(), "{:?}", report.fallbacks);
    // The pack is compressed: far less on the wire than the files on disk.
    assert!(
        report.downloaded_bytes * 2 < source_bytes,
        "downloaded {} for {source_bytes} bytes of files",
        report.downloaded_bytes
    );
    assert_eq!(active_version(&client), "5.34.0");
    assert_eq!(client.status().files, files.len());
    assert!(assert_serves(&client, &files) > 20);
    // The route's root is the entry page, and content types follow the file names.
    let root = client.resolve(ROUTE).unwrap();
    assert_eq!(std::fs::read(root.path).unwrap(), files["index.html"]);
    assert!(root.mime.starts_with("text/html"), "{}", root.mime);
    let css = client.resolve(&format!("{ROUTE}swagger-ui.css")).unwrap();
    assert!(css.mime.starts_with("text/css"), "{}", css.mime);
    assert!(client.store().temp_files().unwrap().is_empty());
}

#[test]
fn real_app_updates_download_only_a_small_diff_and_serve_the_new_release_exactly() {
    let Some(dirs) = webapps(&UPDATES) else {
        return;
    };
    let server = Server::start();
    let client = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    let mut previous: Option<BTreeMap<String, Vec<u8>>> = None;
    for (version, dir) in UPDATES.iter().zip(&dirs) {
        let files: BTreeMap<_, _> = files_of(dir).into_iter().collect();
        let extra: &[&str] = if previous.is_none() {
            &["--channel", "production", "--route", ROUTE]
        } else {
            &["--channel", "production"]
        };
        server.publish(dir, PACKAGE, version, extra);
        let outcome = client.check().unwrap();
        assert_eq!(outcome.updates.len(), 1, "{version}");
        assert_eq!(outcome.updates[0].to.version.to_string(), *version);
        let report = client.install(&outcome.updates[0]).unwrap();
        assert_eq!(active_version(&client), *version);
        assert_serves(&client, &files);

        if let Some(old) = &previous {
            assert_eq!(
                report.method,
                Method::DiffPack,
                "{version}: fallbacks {:?}",
                report.fallbacks
            );
            assert!(report.fallbacks.is_empty(), "{:?}", report.fallbacks);
            // What a device without the previous release would download.
            let (status, full) = server.get(&format!("/v1/packs/{PACKAGE}/{version}.bpk"));
            assert_eq!(status, 200);
            // The bytes of files that are new or differ from the previous release.
            let changed: u64 = files
                .iter()
                .filter(|(path, bytes)| old.get(*path) != Some(*bytes))
                .map(|(_, bytes)| bytes.len() as u64)
                .sum();
            let removed: Vec<&String> = old.keys().filter(|p| !files.contains_key(*p)).collect();
            eprintln!(
                "swagger-ui-dist -> {version}: diff {} bytes, full pack {} bytes, changed files {changed} bytes, {} removed",
                report.downloaded_bytes,
                full.len(),
                removed.len()
            );
            assert!(changed > 0, "{version} changes nothing");
            assert!(
                report.downloaded_bytes * 10 < full.len() as u64,
                "{version}: downloaded {} of a {} byte full pack",
                report.downloaded_bytes,
                full.len()
            );
            // No more than the changed files themselves, plus the signed manifest.
            assert!(
                report.downloaded_bytes < changed + 64 * 1024,
                "{version}: downloaded {} for {changed} changed bytes",
                report.downloaded_bytes
            );
            for path in removed {
                assert!(
                    client.resolve(&format!("{ROUTE}{path}")).is_none(),
                    "{version}: removed {path} still resolves"
                );
            }
        }
        previous = Some(files);
    }

    // The pinned releases never remove a file, so the team's next release does: it stops
    // shipping source maps. Everything left is already on the device.
    let kept: BTreeMap<String, Vec<u8>> = previous
        .unwrap()
        .into_iter()
        .filter(|(path, _)| !path.ends_with(".map"))
        .collect();
    let build = server.dir.path().join("no-maps");
    for (path, bytes) in &kept {
        let file = build.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    server.publish(&build, PACKAGE, "5.35.1", &["--channel", "production"]);
    let installed = tests::update_now(&client).unwrap();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].0.to.version.to_string(), "5.35.1");
    assert_eq!(installed[0].1, Method::Nothing, "no blob to download");
    assert_serves(&client, &kept);
    let maps = files_of(dirs.last().unwrap())
        .into_iter()
        .filter(|(path, _)| path.ends_with(".map"))
        .collect::<Vec<_>>();
    assert!(maps.len() > 3);
    for (path, _) in maps {
        assert!(
            client.resolve(&format!("{ROUTE}{path}")).is_none(),
            "removed {path} still resolves"
        );
    }
    assert!(client.store().temp_files().unwrap().is_empty());
}
