//! Release engineering seen from many devices: a staged rollout reaches its share of a fleet and
//! only grows, a rollback brings devices back and cannot be undone by replaying an old index, and
//! host-app requirements keep each device on the newest release it can run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use client_core::install::Method;
use client_core::{BaleenError, Client};
use manifests::{PackageId, Reason, ReleaseVersion};
use tests::{ROUTE, Server, files_of, write_build};

use super::faults::Tamper;

const DEVICES: usize = 1_000;

fn checkout() -> PackageId {
    PackageId::parse("checkout").unwrap()
}

fn active(client: &Client) -> Option<String> {
    client
        .status()
        .packages
        .first()
        .and_then(|p| p.active.as_ref())
        .map(ToString::to_string)
}

/// Every file of `files` resolves to exactly its bytes.
fn assert_serves(client: &Client, files: &[(String, Vec<u8>)], who: &str) {
    for (path, bytes) in files {
        let hit = client
            .resolve(&format!("{ROUTE}{path}"))
            .unwrap_or_else(|| panic!("{who}: {path} missed"));
        assert_eq!(&std::fs::read(hit.path).unwrap(), bytes, "{who}: {path}");
    }
}

/// Each device's check, in parallel: the version and reason of its update for `checkout`.
fn check_all(clients: &[(String, Client)]) -> Vec<Option<(String, Reason)>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let chunk = clients.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(id, client)| {
                            let outcome = client
                                .check()
                                .unwrap_or_else(|e| panic!("{id}: check failed: {e}"));
                            assert!(outcome.updates.len() <= 1, "{id}: {:?}", outcome.updates);
                            outcome
                                .updates
                                .first()
                                .map(|u| (u.to.version.to_string(), u.reason))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn a_staged_rollout_reaches_its_share_of_1000_devices_and_only_grows() {
    let started = Instant::now();
    let (server, build) = Server::with_first_release("one");
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.1.0", &[]);
    server.release(
        "rollout",
        "checkout",
        &["--version", "1.1.0", "--percent", "30"],
    );

    let clients: Vec<(String, Client)> = (0..DEVICES)
        .map(|i| {
            let id = format!("device-{i:04}");
            let store = server.dir.path().join("devices").join(&id);
            let client = server.client(&store, &id, "6.0");
            (id, client)
        })
        .collect();
    let candidate = ReleaseVersion::parse("1.1.0").unwrap();
    let bucket = |id: &str| manifests::rollout::bucket(id, &checkout(), &candidate);

    let mut had = vec![false; DEVICES];
    for (percent, low, high) in [("30", 250, 350), ("60", 550, 650)] {
        if percent != "30" {
            server.release("rollout", "checkout", &["--percent", percent]);
        }
        let basis_points: u16 = percent.parse::<u16>().unwrap() * 100;
        let got = check_all(&clients);
        let mut inside = 0;
        for ((id, _), (got, had)) in clients.iter().zip(got.iter().zip(had.iter_mut())) {
            // No update: the device already runs the candidate it installed earlier.
            let (version, reason) = got.clone().unwrap_or_else(|| {
                assert!(*had, "{id}: no update");
                ("1.1.0".to_owned(), Reason::Candidate)
            });
            let is_candidate = version == "1.1.0";
            if is_candidate {
                assert_eq!(reason, Reason::Candidate, "{id}");
                inside += 1;
            } else {
                assert_eq!(
                    (version.as_str(), reason),
                    ("1.0.0", Reason::Stable),
                    "{id}"
                );
            }
            // The device agrees with the contract's bucket function, which every port shares.
            assert_eq!(
                is_candidate,
                bucket(id) < basis_points,
                "{id} at {percent} %"
            );
            assert!(
                is_candidate || !*had,
                "{id} had the candidate and lost it at {percent} %"
            );
            *had = is_candidate;
        }
        eprintln!(
            "rollout at {percent} %: {inside} of {DEVICES} devices ({:?} so far)",
            started.elapsed()
        );
        assert!(
            (low..=high).contains(&inside),
            "{inside} of {DEVICES} devices at {percent} %"
        );

        // A device inside installs the candidate and is not offered anything else.
        let first = had.iter().position(|h| *h).unwrap();
        let (id, client) = &clients[first];
        if active(client).is_none() {
            let outcome = client.check().unwrap();
            client.install(&outcome.updates[0]).unwrap();
        }
        assert_eq!(active(client).as_deref(), Some("1.1.0"), "{id}");
        assert!(client.check().unwrap().updates.is_empty(), "{id}");
    }

    server.release("complete", "checkout", &[]);
    let got = check_all(&clients);
    for ((id, client), got) in clients.iter().zip(got) {
        match got {
            Some((version, reason)) => {
                assert_eq!(
                    (version.as_str(), reason),
                    ("1.1.0", Reason::Stable),
                    "{id}"
                );
            }
            None => assert_eq!(active(client).as_deref(), Some("1.1.0"), "{id}"),
        }
    }
    let elapsed = started.elapsed();
    eprintln!("{DEVICES} devices, three checks each: {elapsed:?}");
}

#[test]
fn devices_on_release_2_return_to_release_1_on_rollback_and_a_replayed_index_cannot_undo_it() {
    let (server, build) = Server::with_first_release("one");
    let v1 = files_of(&build);
    let devices: Vec<(Client, Arc<Tamper>)> = (0..3)
        .map(|i| {
            let tamper = Tamper::new();
            let store = server.dir.path().join(format!("device-{i}"));
            let config = server.client_config(&store, &format!("device-{i}"), "6.0");
            let client = Client::open(config, tamper.clone()).unwrap();
            tests::update_now(&client).unwrap();
            client.mark_ready(&checkout()).unwrap();
            (client, tamper)
        })
        .collect();

    // Release 2 goes to everyone; each device keeps a copy of the index that names it.
    write_build(&build, "two");
    let v2 = files_of(&build);
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    // The validly signed index naming release 2, as any device or attacker can fetch it.
    let named_2 = server.get("/v1/apps/shop/channels/production/index").1;
    let mut captured = Vec::new();
    for (i, (client, _)) in devices.iter().enumerate() {
        let copy = Arc::new(Mutex::new(named_2.clone()));
        let installed = tests::update_now(client).unwrap();
        assert_eq!(installed.len(), 1, "device-{i}");
        assert_eq!(installed[0].1, Method::DiffPack, "device-{i}");
        assert_eq!(active(client).as_deref(), Some("1.1.0"));
        assert_serves(client, &v2, &format!("device-{i}"));
        captured.push(copy);
    }

    // The release engineer rolls back: every device returns to release 1 at its next update,
    // with nothing to download and a newer index.
    server.release(
        "rollback",
        "checkout",
        &["--reason", "checkout button dead"],
    );
    let mut sequences = BTreeMap::new();
    for (i, (client, _)) in devices.iter().enumerate() {
        let before = client.status().sequence;
        let installed = tests::update_now(client).unwrap();
        assert_eq!(installed.len(), 1, "device-{i}");
        assert_eq!(installed[0].0.to.version.to_string(), "1.0.0");
        assert_eq!(installed[0].0.from.as_ref().unwrap().to_string(), "1.1.0");
        assert_eq!(installed[0].1, Method::Nothing, "release 1 was kept");
        let status = client.status();
        assert!(status.sequence > before, "device-{i}: {status:?}");
        assert_eq!(active(client).as_deref(), Some("1.0.0"));
        assert_serves(client, &v1, &format!("device-{i}"));
        sequences.insert(i, status.sequence);
    }

    // An attacker replays the validly signed index that named release 2.
    for (i, ((client, tamper), copy)) in devices.iter().zip(&captured).enumerate() {
        let replay = copy.lock().unwrap().clone();
        assert!(
            String::from_utf8_lossy(&replay).contains("1.1.0"),
            "device-{i}: the captured index names release 2"
        );
        tamper.replay_index(replay);
        let err = tests::update_now(client).unwrap_err();
        assert!(err.to_string().contains("replayed index"), "{err}");
        assert!(matches!(
            BaleenError::from(err),
            BaleenError::Verification { .. }
        ));
        assert_eq!(active(client).as_deref(), Some("1.0.0"), "device-{i}");
        assert_eq!(client.status().sequence, sequences[&i], "device-{i}");
        assert_serves(client, &v1, &format!("device-{i}"));
    }
}

#[test]
fn each_host_app_version_runs_the_newest_release_it_can() {
    let server = Server::start();
    let build = server.dir.path().join("dist");
    write_build(&build, "for-five");
    let v1 = files_of(&build);
    server.publish(
        &build,
        "checkout",
        "1.0.0",
        &[
            "--channel",
            "production",
            "--route",
            ROUTE,
            "--requires",
            ">=5",
        ],
    );
    let device = |name: &str, host: &str| {
        let store = server.dir.path().join(name);
        (server.client(&store, name, host), store)
    };
    let (five, five_store) = device("five", "5.4");
    let (six, _) = device("six", "6.1");
    let (four, _) = device("four", "4.9");
    for client in [&five, &six] {
        let installed = tests::update_now(client).unwrap();
        assert_eq!(installed[0].0.to.version.to_string(), "1.0.0");
    }
    assert!(
        tests::update_now(&four).unwrap().is_empty(),
        "host 4.9 runs nothing"
    );

    write_build(&build, "for-six");
    let v2 = files_of(&build);
    server.publish(
        &build,
        "checkout",
        "2.0.0",
        &["--channel", "production", "--requires", ">=6"],
    );
    // The 5.x device keeps release 1, the newest it can run; the 6.x device moves to release 2.
    assert!(five.check().unwrap().updates.is_empty());
    assert_eq!(active(&five).as_deref(), Some("1.0.0"));
    assert_serves(&five, &v1, "host 5.4");
    let installed = tests::update_now(&six).unwrap();
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].0.to.version.to_string(), "2.0.0");
    assert_eq!(installed[0].0.reason, Reason::Stable);
    assert_serves(&six, &v2, "host 6.1");
    assert!(
        tests::update_now(&four).unwrap().is_empty(),
        "host 4.9 still runs nothing"
    );

    // A new 5.x install gets release 1 as the older release for old host apps.
    let (fresh, _) = device("fresh-five", "5.0");
    let outcome = fresh.check().unwrap();
    assert_eq!(outcome.updates.len(), 1);
    assert_eq!(outcome.updates[0].to.version.to_string(), "1.0.0");
    assert_eq!(outcome.updates[0].reason, Reason::Older);

    // The user updates the host app to 6.0: the same store now gets release 2.
    drop(five);
    let upgraded = server.client(&five_store, "five", "6.0");
    let installed = tests::update_now(&upgraded).unwrap();
    assert_eq!(installed[0].0.to.version.to_string(), "2.0.0");
    assert_serves(&upgraded, &v2, "host 6.0");
}
