//! Preset packages: a release shipped inside the app opens pages on the very first launch with
//! no network, verified like a download, and later updates build on it.

use std::path::Path;

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::install::Method;
use client_core::{BaleenError, Client};
use manifests::ReleaseVersion;
use tests::{ROUTE, Server, active_version, files_of, write_build};

fn get(server: &Server, path: &str) -> Vec<u8> {
    let (status, body) = server.get(path);
    assert_eq!(status, 200, "GET {path}");
    body
}

/// What an app build step downloads to ship `checkout@1.0.0`: its signed manifest and full pack
/// (compact).
fn preset(server: &Server, manifest_digest: &str) -> (Vec<u8>, Vec<u8>) {
    (
        get(server, &format!("/v1/manifests/{manifest_digest}")),
        get(server, "/v1/packs/checkout/1.0.0.bpk"),
    )
}

/// A device whose server cannot be reached: a first launch on a plane.
fn offline_device(server: &Server, store: &Path) -> Client {
    let mut config = server.client_config(store, "device-1", "6.0");
    config.server = "http://127.0.0.1:9".to_owned();
    Client::open(config, std::sync::Arc::new(BuiltinFetcher::default())).unwrap()
}

fn first_release() -> (Server, std::path::PathBuf, String) {
    let server = Server::start();
    let build = server.dir.path().join("dist");
    write_build(&build, "one");
    let published = server.publish(
        &build,
        "checkout",
        "1.0.0",
        &["--channel", "production", "--route", ROUTE],
    );
    let digest = published["release"]["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    (server, build, digest)
}

#[test]
fn a_preset_serves_every_file_on_the_first_launch_without_network() {
    let (server, build, digest) = first_release();
    let (manifest, pack) = preset(&server, &digest);
    let device = offline_device(&server, &server.dir.path().join("device"));
    assert!(tests::update_now(&device).is_err(), "no network");

    let seeded = device.seed(&manifest, &pack).unwrap();
    assert_eq!(seeded, Some(ReleaseVersion::parse("1.0.0").unwrap()));
    for (path, bytes) in files_of(&build) {
        let hit = device
            .resolve(&format!("{ROUTE}{path}"))
            .unwrap_or_else(|| panic!("{path} resolves"));
        assert_eq!(std::fs::read(&hit.path).unwrap(), bytes, "{path}");
    }
    let status = device.status();
    assert!(!status.packages[0].pending, "a preset shipped with the app");
    assert_eq!(
        device.seed(&manifest, &pack).unwrap(),
        None,
        "seeding twice is a no-op"
    );
    drop(device);

    // Back online: the next release arrives as a diff from the preset.
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    let device = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    let installed = tests::update_now(&device).unwrap();
    assert_eq!(installed[0].1, Method::DiffPack);
    let hit = device.resolve(&format!("{ROUTE}index.html")).unwrap();
    assert!(std::fs::read(hit.path).unwrap().ends_with(b"two"));

    // An older preset does not replace a newer installed release.
    assert_eq!(device.seed(&manifest, &pack).unwrap(), None);
    assert_eq!(active_version(&device), "1.1.0");
}

#[test]
fn a_preset_from_an_app_built_with_the_zip_pack_still_installs() {
    let (server, build, digest) = first_release();
    let manifest = get(&server, &format!("/v1/manifests/{digest}"));
    let zip = get(&server, "/v1/packs/checkout/1.0.0.zip");
    assert!(zip.starts_with(b"PK"));
    let device = offline_device(&server, &server.dir.path().join("device"));
    assert_eq!(
        device.seed(&manifest, &zip).unwrap(),
        Some(ReleaseVersion::parse("1.0.0").unwrap())
    );
    for (path, bytes) in files_of(&build) {
        let hit = device.resolve(&format!("{ROUTE}{path}")).unwrap();
        assert_eq!(std::fs::read(&hit.path).unwrap(), bytes, "{path}");
    }
}

#[test]
fn a_tampered_or_foreign_preset_is_refused_and_nothing_is_installed() {
    let (server, _build, digest) = first_release();
    let (manifest, pack) = preset(&server, &digest);
    let device = offline_device(&server, &server.dir.path().join("device"));

    // Bytes flipped across the pack (one in 64: whatever the layout, the payload is hit; a flip
    // in a field no reader looks at, such as a local header's timestamp, would be harmless).
    let mut bad_pack = pack.clone();
    for i in (40..bad_pack.len()).step_by(64) {
        bad_pack[i] ^= 0x01;
    }
    let err = device.seed(&manifest, &bad_pack).unwrap_err();
    assert!(
        matches!(BaleenError::from(err), BaleenError::Verification { .. }),
        "a tampered pack"
    );

    // A manifest whose signed content was changed.
    let text = String::from_utf8(manifest.clone()).unwrap();
    let forged = text.replacen("1.0.0", "9.0.0", 1).into_bytes();
    let err = device.seed(&forged, &pack).unwrap_err();
    assert!(matches!(
        BaleenError::from(err),
        BaleenError::Verification { .. }
    ));

    // A release signed by another server's key.
    let (other, _, other_digest) = first_release();
    let (foreign_manifest, foreign_pack) = preset(&other, &other_digest);
    let err = device.seed(&foreign_manifest, &foreign_pack).unwrap_err();
    assert!(matches!(
        BaleenError::from(err),
        BaleenError::Verification { .. }
    ));

    // Garbage instead of a pack.
    let err = device.seed(&manifest, b"not a zip").unwrap_err();
    assert!(matches!(
        BaleenError::from(err),
        BaleenError::Verification { .. }
    ));

    assert!(device.status().packages.is_empty(), "nothing installed");
    assert!(device.resolve(&format!("{ROUTE}index.html")).is_none());
}
