//! A device against a real server: install, update by diff, serve from disk, roll back, report.

use std::collections::BTreeMap;

use client_core::Client;
use manifests::PackageId;
use tests::{ROUTE, Server, active_version, files_of, write_build};

fn checkout() -> PackageId {
    PackageId::parse("checkout").unwrap()
}

/// Every file of `dir` resolves, through both URL forms, to the same bytes.
fn assert_serves(client: &Client, dir: &std::path::Path) {
    for (path, bytes) in files_of(dir) {
        for url in [
            format!("{ROUTE}{path}"),
            format!("baleen://m.example.com/checkout/{path}"),
        ] {
            let hit = client
                .resolve(&url)
                .unwrap_or_else(|| panic!("{url} missed"));
            assert_eq!(std::fs::read(&hit.path).unwrap(), bytes, "{url}");
            assert_eq!(hit.size, bytes.len() as u64);
        }
    }
}

#[test]
fn install_then_update_by_diff_pack_then_follow_a_rollback() {
    let server = Server::start();
    let build = server.dir.path().join("dist");
    write_build(&build, "one");
    server.publish(
        &build,
        "checkout",
        "1.0.0",
        &["--channel", "production", "--route", ROUTE, "--spa"],
    );

    let store = server.dir.path().join("device");
    let client = server.client(&store, "device-1", "6.0");
    assert!(
        client.resolve(&format!("{ROUTE}index.html")).is_none(),
        "nothing before the first install"
    );
    let installed = tests::update_now(&client).unwrap();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].0.to.version.to_string(), "1.0.0");
    assert_serves(&client, &build);
    // A client-side route falls back to the entry page.
    let spa = client.resolve(&format!("{ROUTE}orders/42")).unwrap();
    assert_eq!(
        std::fs::read(spa.path).unwrap(),
        std::fs::read(build.join("index.html")).unwrap()
    );

    // Release 2: the device downloads a diff pack, far smaller than the release.
    let v1_files = files_of(&build);
    write_build(&build, "two");
    let answer = server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    let release_bytes = answer["release"]["size_bytes"].as_u64().unwrap();
    let outcome = client.check().unwrap();
    assert_eq!(outcome.updates.len(), 1);
    let report = client.install(&outcome.updates[0]).unwrap();
    assert_eq!(
        report.method,
        client_core::install::Method::DiffPack,
        "fallbacks: {:?}",
        report.fallbacks
    );
    assert!(
        report.downloaded_bytes * 5 < release_bytes,
        "downloaded {} of {release_bytes}",
        report.downloaded_bytes
    );
    assert_serves(&client, &build);
    let status = client.status();
    assert_eq!(
        status.packages[0].active.as_ref().unwrap().to_string(),
        "1.1.0"
    );
    assert_eq!(
        status.packages[0].previous.as_ref().unwrap().to_string(),
        "1.0.0"
    );
    assert!(status.packages[0].pending);

    // The release engineer rolls back: the device returns to 1.0.0 with nothing to download.
    server.release("rollback", "checkout", &["--reason", "blank page"]);
    let before = client.status().sequence;
    let outcome = client.check().unwrap();
    assert!(outcome.sequence > before, "a rollback is a newer index");
    let report = client.install(&outcome.updates[0]).unwrap();
    assert_eq!(report.method, client_core::install::Method::Nothing);
    let v1: BTreeMap<String, Vec<u8>> = v1_files.into_iter().collect();
    for (path, bytes) in &v1 {
        let hit = client.resolve(&format!("{ROUTE}{path}")).unwrap();
        assert_eq!(&std::fs::read(hit.path).unwrap(), bytes, "{path}");
    }

    // Nothing new: a conditional request, 304.
    let again = client.check().unwrap();
    assert!(!again.changed && again.updates.is_empty());
    assert!(client.store().temp_files().unwrap().is_empty());
}

#[test]
fn a_release_that_never_becomes_ready_rolls_back_and_the_server_sees_it() {
    let (server, build) = Server::with_first_release("good");
    let store = server.dir.path().join("device");
    let client = server.client(&store, "device-1", "6.0");
    tests::update_now(&client).unwrap();
    client.mark_ready(&checkout()).unwrap();

    write_build(&build, "broken");
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    tests::update_now(&client).unwrap();
    assert_eq!(active_version(&client), "1.1.0");
    // Two launches are allowed; the third without a ready signal rolls back.
    assert!(client.on_launch().unwrap().is_empty());
    assert!(client.on_launch().unwrap().is_empty());
    assert_eq!(client.on_launch().unwrap(), vec![checkout()]);
    let status = client.status();
    assert_eq!(
        status.packages[0].active.as_ref().unwrap().to_string(),
        "1.0.0"
    );
    assert!(!status.packages[0].pending);
    // The failed release is not installed again.
    assert!(client.check().unwrap().updates.is_empty());

    client.report_open(&format!("{ROUTE}index.html"), 420);
    client.report_open(&format!("{ROUTE}index.html"), 1_800);
    // A page of the package that was not on the device: an open, but not an offline hit.
    client.report_open(&format!("{ROUTE}missing.js"), 2_500);
    client.report_open("https://elsewhere.example.com/", 100);
    assert!(client.flush_events().unwrap() > 0);
    let stats = tests::baleen(
        &[
            "stats",
            "--app",
            "shop",
            "--channel",
            "production",
            "--json",
        ],
        &server.env(),
    );
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let row = |v: &str| {
        stats
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["version"] == v)
            .unwrap()
            .clone()
    };
    assert_eq!(row("1.1.0")["failed"], 1);
    assert_eq!(row("1.1.0")["rolled_back"], 1);
    assert_eq!(row("1.0.0")["ready"], 1);
    assert_eq!(row("1.0.0")["opens"], 3);
    assert_eq!(row("1.0.0")["under_1s"], 1);
    assert_eq!(row("1.0.0")["offline_hits"], 2);
}

#[test]
fn a_state_file_torn_or_garbage_is_never_trusted() {
    let (server, _build) = Server::with_first_release("one");
    let store = server.dir.path().join("device");
    {
        let client = server.client(&store, "device-1", "6.0");
        tests::update_now(&client).unwrap();
        client.mark_ready(&checkout()).unwrap();
    }
    // Corrupt the newest slot: the older one is used, and still serves the release.
    let newest = ["state-a.json", "state-b.json"]
        .into_iter()
        .max_by_key(|n| {
            std::fs::metadata(store.join(n))
                .and_then(|m| m.modified())
                .ok()
        })
        .unwrap();
    std::fs::write(store.join(newest), b"{\"checksum\":\"garbage").unwrap();
    let client = server.client(&store, "device-1", "6.0");
    assert_eq!(
        client.status().recovery,
        client_core::store::Recovery::IgnoredBadSlot
    );
    assert!(client.resolve(&format!("{ROUTE}index.html")).is_some());
    drop(client);
    // Both slots garbage: the state starts over, blobs are reused, the floor still holds.
    for slot in ["state-a.json", "state-b.json"] {
        std::fs::write(store.join(slot), b"\x00\x01garbage").unwrap();
    }
    let mut config = server.client_config(&store, "device-1", "6.0");
    config.sequence_floor = 1;
    let client = Client::open(
        config,
        std::sync::Arc::new(client_core::fetch::builtin::BuiltinFetcher::default()),
    )
    .unwrap();
    assert_eq!(
        client.status().recovery,
        client_core::store::Recovery::Reset
    );
    assert!(client.resolve(&format!("{ROUTE}index.html")).is_none());
    let installed = tests::update_now(&client).unwrap();
    assert_eq!(
        installed[0].1,
        client_core::install::Method::Nothing,
        "blobs were kept"
    );
    assert!(client.resolve(&format!("{ROUTE}index.html")).is_some());
}

#[test]
fn the_planner_waits_on_a_metered_link_and_fetches_on_wifi() {
    use client_core::plan::{Conditions, Network, Wait};
    let (server, _build) = Server::with_first_release("one");
    let client = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    let mut conditions = Conditions {
        network: Network::Cellular,
        metered: true,
        free_space_bytes: 1 << 30,
        ..Conditions::unrestricted()
    };
    let planned = client.update(&conditions).unwrap();
    assert!(planned.installed.is_empty());
    assert_eq!(planned.waiting, vec![(checkout(), Wait::Wifi)]);
    conditions.free_space_bytes = 10;
    conditions.network = Network::Wifi;
    conditions.metered = false;
    assert_eq!(
        client.update(&conditions).unwrap().waiting,
        vec![(checkout(), Wait::Space)]
    );
    conditions.free_space_bytes = 1 << 30;
    let planned = client.update(&conditions).unwrap();
    assert_eq!(planned.installed.len(), 1, "{planned:?}");
    assert!(client.resolve(&format!("{ROUTE}index.html")).is_some());
}

#[test]
fn the_publishers_priority_and_prefetch_policy_steer_the_device() {
    use client_core::plan::{Conditions, Network, Wait};
    let (server, _build) = Server::with_first_release("one");
    let route = "https://m.example.com/profile/";
    server.publish_package("profile", &["--prefetch", "on-first-use"]);
    server.publish_package("urgent", &["--priority", "90"]);
    let client = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    // On a metered cellular link only the urgent package comes; profile waits for its first use.
    let cellular = Conditions {
        network: Network::Cellular,
        metered: true,
        ..Conditions::unrestricted()
    };
    let outcome = client.update(&cellular).unwrap();
    let installed: Vec<String> = outcome
        .installed
        .iter()
        .map(|(u, _)| u.package.to_string())
        .collect();
    assert_eq!(installed, ["urgent"]);
    assert_eq!(
        outcome.waiting,
        [
            (checkout(), Wait::Wifi),
            (PackageId::parse("profile").unwrap(), Wait::FirstUse)
        ]
    );
    // On Wi-Fi checkout comes too; profile still waits, as nobody opened it.
    let outcome = client.update(&Conditions::unrestricted()).unwrap();
    assert_eq!(outcome.installed.len(), 1);
    assert_eq!(
        outcome.waiting,
        [(PackageId::parse("profile").unwrap(), Wait::FirstUse)]
    );
    // The user opens a profile page (from the network): the open counts, and profile comes.
    let page = format!("{route}index.html");
    assert!(client.resolve(&page).is_none());
    client.report_open(&page, 1_800);
    client.flush_events().unwrap();
    let outcome = client.update(&Conditions::unrestricted()).unwrap();
    assert_eq!(outcome.installed.len(), 1, "{outcome:?}");
    assert!(client.resolve(&page).is_some());
}

#[test]
fn a_tiny_release_comes_as_its_full_pack_in_one_request() {
    let server = Server::start();
    let dir = server.dir.path().join("tiny");
    let page = |text: &str| {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("index.html"),
            format!("<!doctype html><p>{text}</p>"),
        )
        .unwrap();
    };
    page("one");
    server.publish(
        &dir,
        "checkout",
        "1.0.0",
        &["--channel", "production", "--route", ROUTE],
    );
    let client = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    tests::update_now(&client).unwrap();
    page("two, a little longer");
    server.publish(&dir, "checkout", "1.0.1", &["--channel", "production"]);
    let update = client.check().unwrap().updates.remove(0);
    let report = client.install(&update).unwrap();
    // The diff request was answered with the (smaller) full pack: no fallback, one pack.
    assert_eq!(report.method, client_core::install::Method::FullPack);
    assert!(report.fallbacks.is_empty(), "{:?}", report.fallbacks);
    assert_eq!(active_version(&client), "1.0.1");
}

/// The device sends its events with the app's ingest key and its id; without a key it sends
/// none, and what the server refuses for good (a revoked key) is dropped, not queued forever.
#[test]
fn events_go_with_the_ingest_key_and_are_dropped_when_the_key_is_refused() {
    let (server, _build) = Server::with_first_release("good");
    let stats = || -> serde_json::Value {
        serde_json::from_str(&tests::baleen(
            &[
                "stats",
                "--app",
                "shop",
                "--channel",
                "production",
                "--json",
            ],
            &server.env(),
        ))
        .unwrap()
    };

    let mut config = server.client_config(&server.dir.path().join("keyless"), "keyless", "6.0");
    config.ingest_key = None;
    let keyless = Client::open(
        config,
        std::sync::Arc::new(client_core::fetch::builtin::BuiltinFetcher::default()),
    )
    .unwrap();
    tests::update_now(&keyless).unwrap();
    keyless.mark_ready(&checkout()).unwrap();
    assert_eq!(keyless.flush_events().unwrap(), 0);
    assert_eq!(keyless.status().queued_events, 0);
    assert_eq!(
        stats(),
        serde_json::json!([]),
        "a device without a key counts nothing"
    );

    let client = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    tests::update_now(&client).unwrap();
    client.mark_ready(&checkout()).unwrap();
    assert!(client.flush_events().unwrap() > 0);
    assert_eq!(stats()[0]["ready"], 1);

    tests::baleen(
        &["ingest-key", "revoke", "--app", "shop", "e2e"],
        &server.env(),
    );
    client.report_open(&format!("{ROUTE}index.html"), 100);
    let refused = client.flush_events().unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    assert_eq!(
        client.status().queued_events,
        0,
        "refused events are dropped"
    );
    assert_eq!(stats()[0]["opens"], 0);
}
