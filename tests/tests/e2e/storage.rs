//! Full disks and quotas: a full disk fails a device's install cleanly, and a server's publish
//! with a 507 that stores nothing; a quota makes the least recently opened packages give way.

use client_core::plan::{Conditions, Network, Wait};
use client_core::quota::Eviction;
use client_core::{BaleenError, Client};
use manifests::{Digest, PackageId};
use tests::{ROUTE, Server, SmallDisk, active_version, files_of, write_build};

fn serves(device: &Client, url: &str, tail: &[u8]) -> bool {
    device
        .resolve(url)
        .is_some_and(|hit| std::fs::read(hit.path).unwrap().ends_with(tail))
}

#[test]
fn a_full_disk_fails_the_install_and_the_active_release_serves_on() {
    let (server, build) = Server::with_first_release("one");
    let store = server.dir.path().join("device");
    let device = server.client(&store, "device-1", "6.0");
    tests::update_now(&device).unwrap();
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);

    // Every new blob of 1.1.0 is written through `tmp/`: mount a file system there too small
    // for them, which answers their writes with ENOSPC, as a full disk does.
    let new_blobs: Vec<Digest> = files_of(&build)
        .iter()
        .map(|(_, bytes)| Digest::of(bytes))
        .filter(|d| !device.store().has_blob(d))
        .collect();
    assert!(!new_blobs.is_empty());
    let Some(full) = SmallDisk::mount(&store.join("tmp"), 8 * 1024) else {
        return;
    };
    let err = tests::update_now(&device).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(
        matches!(BaleenError::from(err), BaleenError::Storage { .. }),
        "the host is told to free space"
    );
    assert!(serves(&device, &format!("{ROUTE}index.html"), b"one"));
    assert_eq!(active_version(&device), "1.0.0");
    for digest in &new_blobs {
        assert!(!device.store().has_blob(digest), "no half-written blob");
    }

    // Space comes back: the same update goes through.
    drop(full);
    tests::update_now(&device).unwrap();
    assert!(serves(&device, &format!("{ROUTE}index.html"), b"two"));
}

/// `n` bytes that do not compress (xorshift), different for each `seed`.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Uploads `build` zipped as `checkout@version` to production; the status and the body.
fn publish_zip(server: &Server, build: &std::path::Path, version: &str) -> (u16, String) {
    let query = format!("version={version}&channel=production");
    server.upload("checkout", &query, &tests::zip_of(build))
}

fn index_sequence(server: &Server) -> u64 {
    let (status, body) = server.get("/v1/apps/shop/channels/production/index");
    assert_eq!(status, 200);
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    index["signed"]["sequence"].as_u64().unwrap()
}

#[test]
fn a_publish_that_fills_the_servers_disk_answers_507_stores_nothing_and_serving_goes_on() {
    let disk_dir = tempfile::tempdir().unwrap();
    let data = disk_dir.path().join("data");
    let Some(disk) = SmallDisk::mount(&data, 32 << 20) else {
        return;
    };
    let server = Server::start_on(&data);
    let build = server.publish_first_release("one");
    let sequence = index_sequence(&server);

    // 1.1.0 brings 6 MiB that do not compress; the disk keeps room for the upload alone.
    write_build(&build, "two");
    for i in 0..6 {
        std::fs::write(
            build.join(format!("assets/media-{i}.bin")),
            noise(i, 1 << 20),
        )
        .unwrap();
    }
    disk.fill(&data.join("filler"), 8 << 20);
    let (status, body) = publish_zip(&server, &build, "1.1.0");
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("\"storage_full\""), "{body}");

    // Nothing half-stored: no release, the same index, no staging left, every blob whole.
    let releases = tests::baleen(
        &["releases", "--package", "checkout", "--json"],
        &server.env(),
    );
    assert!(!releases.contains("1.1.0"), "{releases}");
    assert_eq!(index_sequence(&server), sequence);
    let staged: Vec<_> = std::fs::read_dir(data.join("tmp")).unwrap().collect();
    assert!(staged.is_empty(), "staging left: {staged:?}");
    for fan in std::fs::read_dir(data.join("blobs")).unwrap() {
        let fan = fan.unwrap().path();
        for file in std::fs::read_dir(&fan).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if fan.ends_with("tmp") {
                panic!("blob temp file left: {name}");
            }
            if name.len() == 64 {
                assert_eq!(Digest::of(&std::fs::read(&path).unwrap()).to_string(), name);
            }
        }
    }

    // Serving goes on: a new device installs 1.0.0 from the full server.
    let device = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    tests::update_now(&device).unwrap();
    assert!(serves(&device, &format!("{ROUTE}index.html"), b"one"));

    // Space comes back: the same publish goes through, and the device takes it.
    std::fs::remove_file(data.join("filler")).unwrap();
    let (status, body) = publish_zip(&server, &build, "1.1.0");
    assert_eq!(status, 201, "{body}");
    assert!(index_sequence(&server) > sequence);
    tests::update_now(&device).unwrap();
    assert!(serves(&device, &format!("{ROUTE}index.html"), b"two"));
    drop(server);
}

const PROFILE: &str = "https://m.example.com/profile/";

fn wifi() -> Conditions {
    Conditions {
        network: Network::Wifi,
        free_space_bytes: 1 << 40,
        ..Conditions::unrestricted()
    }
}

fn blob_bytes(device: &Client) -> u64 {
    let mut total = 0;
    for fan in std::fs::read_dir(device.store().root().join("blobs")).unwrap() {
        for file in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            total += file.unwrap().metadata().unwrap().len();
        }
    }
    total
}

#[test]
fn over_the_quota_the_least_recently_opened_package_gives_way() {
    let (server, build) = Server::with_first_release("one");
    let profile_build = server.dir.path().join("profile");
    write_build(&profile_build, "profile-one");
    server.publish(
        &profile_build,
        "profile",
        "1.0.0",
        &["--channel", "production", "--route", PROFILE],
    );
    let device = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    tests::update_now(&device).unwrap();
    let checkout = PackageId::parse("checkout").unwrap();
    let profile = PackageId::parse("profile").unwrap();
    device.mark_ready(&checkout).unwrap();
    device.mark_ready(&profile).unwrap();

    // checkout gets 1.1.0 (its 1.0.0 stays as the rollback target); the user opens checkout.
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    tests::update_now(&device).unwrap();
    device.mark_ready(&checkout).unwrap();
    device.report_open(&format!("{ROUTE}index.html"), 300);
    device.flush_events().unwrap();

    let one_package: u64 = files_of(&build).iter().map(|(_, b)| b.len() as u64).sum();
    // Room for one release and a little: each release's page and chunk differ by a few KB.
    let quota = one_package + 8_000;
    // Releases share most bytes (vendor.js); each keeps its own page and chunk.
    assert!(blob_bytes(&device) > quota, "three releases held");

    // Profile (never opened) and the rollback target go.
    let evicted = device.set_quota_bytes(Some(quota)).unwrap();
    assert_eq!(
        evicted,
        [
            Eviction::Previous(checkout.clone()),
            Eviction::Package(profile.clone())
        ]
    );
    assert!(blob_bytes(&device) <= quota);
    assert!(serves(&device, &format!("{ROUTE}index.html"), b"two"));
    assert!(
        device.resolve(&format!("{PROFILE}index.html")).is_none(),
        "to the network"
    );
    assert_eq!(device.status().packages[0].previous, None);

    // A new profile release would push out checkout, which the user opens: it waits.
    write_build(&profile_build, "profile-two");
    server.publish(
        &profile_build,
        "profile",
        "1.0.1",
        &["--channel", "production"],
    );
    let planned = device.update(&wifi()).unwrap();
    assert!(planned.installed.is_empty(), "{planned:?}");
    assert_eq!(planned.waiting, [(profile.clone(), Wait::Quota)]);
    assert!(serves(&device, &format!("{ROUTE}index.html"), b"two"));

    // The user opens profile pages, from the network now: they still count, and profile
    // becomes the more recently used package. At the next update it returns and checkout
    // gives way.
    device.report_open(&format!("{PROFILE}index.html"), 1_500);
    device.report_open(&format!("{PROFILE}index.html"), 1_200);
    device.flush_events().unwrap();
    let planned = device.update(&wifi()).unwrap();
    assert_eq!(planned.installed.len(), 1, "{planned:?}");
    assert!(serves(
        &device,
        &format!("{PROFILE}index.html"),
        b"profile-two"
    ));
    assert!(device.resolve(&format!("{ROUTE}index.html")).is_none());
    assert!(blob_bytes(&device) <= quota);

    // With the limit lifted checkout comes back too.
    assert!(device.set_quota_bytes(None).unwrap().is_empty());
    let planned = device.update(&wifi()).unwrap();
    assert_eq!(planned.installed.len(), 1, "{planned:?}");
    assert!(serves(&device, &format!("{ROUTE}index.html"), b"two"));
    assert!(serves(
        &device,
        &format!("{PROFILE}index.html"),
        b"profile-two"
    ));
}
