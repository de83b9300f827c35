//! Health-gated rollouts with real devices: a fleet of client-core devices updates from a real
//! `baleen serve`, boots what it installs (or fails to, for a broken release, and rolls back on
//! its own), and reports through its event queue with the app's ingest key; the ramp, evaluated
//! on request (`baleen ramp evaluate`, steps with no minimum time stand in for the passing
//! hours), widens a good candidate step by step to stable and rolls a broken one back.

use client_core::Client;
use manifests::PackageId;
use serde_json::Value;
use tests::{Server, write_build};

const DEVICES: usize = 200;

fn checkout() -> PackageId {
    PackageId::parse("checkout").unwrap()
}

/// Each device checks, installs what it is offered and launches it: `broken` releases never
/// signal ready, so their third launch rolls the device back; then it sends its reports.
fn fleet_updates(clients: &[Client], broken: &str) {
    std::thread::scope(|scope| {
        for part in clients.chunks(DEVICES.div_ceil(4)) {
            scope.spawn(move || {
                for client in part {
                    let installed = tests::update_now(client).unwrap();
                    if let Some((update, _)) = installed.first() {
                        if update.to.version.to_string() == broken {
                            for _ in 0..3 {
                                client.on_launch().unwrap();
                            }
                        } else {
                            client.on_launch().unwrap();
                            client.mark_ready(&checkout()).unwrap();
                        }
                    }
                    client.flush_events().unwrap();
                }
            });
        }
    });
}

fn start_ramp(server: &Server, version: &str, policy: &[&str]) {
    let mut args = vec![
        "ramp",
        "start",
        "--package",
        "checkout",
        "--channel",
        "production",
        "--version",
        version,
    ];
    args.extend_from_slice(policy);
    tests::baleen(&args, &server.env());
}

fn evaluate(server: &Server) -> Value {
    let out = tests::baleen(&["ramp", "evaluate", "--json"], &server.env());
    let ramps: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ramps.as_array().unwrap().len(), 1, "{ramps}");
    ramps[0].clone()
}

fn on(clients: &[Client], version: &str) -> usize {
    clients
        .iter()
        .filter(|c| tests::active_version(c) == version)
        .count()
}

#[test]
fn a_ramp_widens_a_good_candidate_to_stable_and_rolls_a_broken_one_back_on_real_devices() {
    let (server, build) = Server::with_first_release_using("one", &["--ramp-interval-secs", "0"]);
    let clients: Vec<Client> = (0..DEVICES)
        .map(|i| {
            let id = format!("device-{i:04}");
            server.client(&server.dir.path().join("devices").join(&id), &id, "6.0")
        })
        .collect();
    fleet_updates(&clients, "");
    assert_eq!(on(&clients, "1.0.0"), DEVICES);

    // A good candidate: 25 %, 50 %, then stable, each step once its devices booted it. With
    // no failure among ~50 devices, the failed-boot rate is below 8 % at 95 % (Wilson), so
    // the margin is 8 points; a real fleet's steps are larger and its margin smaller.
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.1.0", &[]);
    let policy = [
        "--steps",
        "25,50,100",
        "--min-devices",
        "30",
        "--min-step-secs",
        "0",
        "--margin",
        "8",
        "--auto-rollback",
    ];
    start_ramp(&server, "1.1.0", &policy);
    let mut shares = Vec::new();
    loop {
        fleet_updates(&clients, "");
        shares.push(on(&clients, "1.1.0"));
        let ramp = evaluate(&server);
        let verdict = ramp["last"]["verdict"].as_str().unwrap().to_owned();
        assert!(
            verdict == "advance" || verdict == "complete",
            "a healthy candidate held or halted: {ramp}"
        );
        if verdict == "complete" {
            assert_eq!(ramp["state"], "completed");
            break;
        }
        assert!(shares.len() < 5, "{shares:?}");
    }
    // The share on devices grew with each step (about 25 % then 50 %, then everyone).
    assert_eq!(shares.len(), 3, "{shares:?}");
    assert!(
        (30..=70).contains(&shares[0]) && (80..=120).contains(&shares[1]),
        "{shares:?}"
    );
    assert!(shares.windows(2).all(|w| w[0] <= w[1]), "{shares:?}");
    fleet_updates(&clients, "");
    assert_eq!(on(&clients, "1.1.0"), DEVICES);

    // A broken candidate: every device in the first step fails to boot it and rolls back; the
    // ramp sees it in the devices' reports and drops it, so nobody else ever gets it.
    write_build(&build, "broken");
    server.publish(&build, "checkout", "1.2.0", &[]);
    start_ramp(&server, "1.2.0", &policy);
    fleet_updates(&clients, "1.2.0");
    let ramp = evaluate(&server);
    assert_eq!(ramp["last"]["verdict"], "rollback", "{ramp}");
    assert_eq!(ramp["state"], "rolled_back");
    let failed = ramp["last"]["candidate"]["failed"].as_u64().unwrap();
    assert!((30..=70).contains(&failed), "{ramp}");
    assert_eq!(ramp["last"]["candidate"]["activated"], failed, "{ramp}");
    assert_eq!(ramp["last"]["stable"]["failed"], 0, "{ramp}");
    // Every device runs 1.1.0 again or still, and the next checks offer 1.2.0 to nobody.
    assert_eq!(on(&clients, "1.1.0"), DEVICES);
    fleet_updates(&clients, "1.2.0");
    assert_eq!(on(&clients, "1.1.0"), DEVICES);
    let history = tests::baleen(
        &[
            "history",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--json",
        ],
        &server.env(),
    );
    let history: Value = serde_json::from_str(&history).unwrap();
    let last = &history[0];
    assert_eq!(
        (&last["action"], &last["actor"]),
        (&Value::from("rollback"), &Value::from("ramp")),
        "{last}"
    );
    assert!(
        last["reason"].as_str().unwrap().contains("clearly worse"),
        "{last}"
    );
}
