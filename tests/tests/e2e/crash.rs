//! Crash safety of installing and rolling back: a device process is killed (`SIGKILL`) at random
//! moments of an install, or of an install followed by a rollback, 200 times (`BALEEN_SOAK_KILLS`
//! times under `scripts/soak`); after each restart the store must serve one complete, verified
//! release and hold no stray temp files.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client_core::Client;
use manifests::Digest;
use tests::{ROUTE, Server, write_build};

/// Kills in the normal suite; `scripts/soak` asks for more with `BALEEN_SOAK_KILLS`.
const ITERATIONS: u32 = 200;

/// A small deterministic generator, so a failing iteration can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_9_at_any_moment_of_an_install_leaves_a_complete_release_active() {
    let server = Server::start();
    let build = server.dir.path().join("dist");
    let mut versions = Vec::new();
    for (i, variant) in ["alpha", "beta", "gamma"].iter().enumerate() {
        write_build(&build, variant);
        let channel: &[&str] = if i == 0 {
            &["--channel", "production", "--route", ROUTE]
        } else {
            &[]
        };
        let v = format!("1.{i}.0");
        server.publish(&build, "checkout", &v, channel);
        versions.push(v);
    }
    let store = server.dir.path().join("device");
    let key = server.key.public().to_hex();
    let device = |store: &std::path::Path, rollback: bool| {
        Command::new(env!("CARGO_BIN_EXE_device"))
            .arg(store)
            .arg(&server.base)
            .arg(&key)
            .args(rollback.then_some("rollback"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let iterations = tests::soak_kills(ITERATIONS.into());

    // Calibrate on a scratch store: how long does a whole install take here?
    let started = Instant::now();
    assert!(
        device(&server.dir.path().join("calibrate"), false)
            .wait()
            .unwrap()
            .success()
    );
    let full = started.elapsed();

    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut completed = 0;
    let mut interrupted = 0;
    let mut rolled_back = 0;
    for i in 0..iterations {
        // Point production at the next of three releases: neither active nor kept as previous,
        // so after garbage collection every iteration has blobs to download.
        let target = &versions[(i % 3) as usize];
        let out = Command::new(tests::baleen_bin())
            .args([
                "promote",
                "--package",
                "checkout",
                "--channel",
                "production",
                "--version",
                target,
            ])
            .envs(server.env())
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already stable")
        );

        // Every other run rolls back after installing: the kills then land in either.
        let rollback = i % 2 == 1;
        let mut child = device(&store, rollback);
        let delay = full.mul_f64((rng.next() % 1_000) as f64 / 1_000.0 * 1.3);
        std::thread::sleep(delay.min(Duration::from_secs(3)));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let status = child.wait().unwrap();
        let done = finished && status.success();
        if done {
            completed += 1;
            rolled_back += u64::from(rollback);
        } else {
            interrupted += 1;
        }

        // Restart: whatever is active is whole and verified, and nothing half-written remains.
        let client = Client::open(
            server.client_config(&store, "crash-device", "6.0"),
            std::sync::Arc::new(client_core::fetch::builtin::BuiltinFetcher::default()),
        )
        .unwrap();
        assert!(
            client.store().temp_files().unwrap().is_empty(),
            "iteration {i}: temp files left"
        );
        let status = client.status();
        if let Some(active) = status.packages.first().and_then(|p| p.active.clone()) {
            assert!(
                versions.contains(&active.to_string()),
                "iteration {i}: active {active}"
            );
            if done && rollback {
                assert_ne!(
                    &active.to_string(),
                    target,
                    "iteration {i}: not rolled back"
                );
            }
            let hit = client
                .resolve(&format!("{ROUTE}index.html"))
                .unwrap_or_else(|| panic!("iteration {i}: no entry page"));
            let bytes = std::fs::read(&hit.path).unwrap();
            assert_eq!(bytes.len() as u64, hit.size, "iteration {i}");
            // Every blob of the store is named by its content: a torn write would show here.
            let blobs = client.store().root().join("blobs");
            let mut checked = BTreeSet::new();
            for fan in std::fs::read_dir(&blobs).unwrap() {
                for file in std::fs::read_dir(fan.unwrap().path()).unwrap() {
                    let path = file.unwrap().path();
                    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                    assert_eq!(
                        Digest::of(&std::fs::read(&path).unwrap()).to_string(),
                        name,
                        "iteration {i}"
                    );
                    checked.insert(name);
                }
            }
            assert!(!checked.is_empty());
        } else {
            assert!(client.resolve(&format!("{ROUTE}index.html")).is_none());
        }
        // Keep only the active and previous releases' blobs, as a device short of space would.
        client.collect_garbage().unwrap();
    }
    eprintln!(
        "{iterations} kills over a {full:?} install: {completed} completed ({rolled_back} rolled \
         back), {interrupted} interrupted"
    );
    assert!(
        interrupted > iterations / 10,
        "kills should land during installs ({interrupted})"
    );
    assert!(
        rolled_back > 0 && rolled_back < iterations / 2,
        "kills should land before and after rollbacks ({rolled_back})"
    );
}
