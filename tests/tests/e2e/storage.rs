//! The device's disk: a full disk fails an install cleanly, and a quota makes the least recently
//! opened packages give way.

use client_core::plan::{Conditions, Network, Wait};
use client_core::quota::Eviction;
use client_core::{BaleenError, Client};
use manifests::{Digest, PackageId};
use tests::{ROUTE, Server, active_version, files_of, write_build};

fn serves(device: &Client, url: &str, tail: &[u8]) -> bool {
    device
        .resolve(url)
        .is_some_and(|hit| std::fs::read(hit.path).unwrap().ends_with(tail))
}

/// A tmpfs of a few KB mounted over a directory, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// `None` when this process may not mount (not root).
    fn mount(dir: &std::path::Path, size_bytes: u64) -> Option<SmallDisk> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
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
        eprintln!("skipped: mounting a small tmpfs needs root");
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
