//! Stateless replicas: two `baleen serve --config scaled.toml` processes on one PostgreSQL and one
//! Garage bucket. A change made on either is served by both within a second; each pack is built
//! by one replica, which the other waits for; a replica killed mid-build loses its lease and the
//! other builds the pack. Skips, saying why, where Garage or PostgreSQL is missing, unless
//! `BALEEN_REQUIRE_GARAGE` and `BALEEN_REQUIRE_POSTGRES` are set.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;
#[path = "support/cli.rs"]
mod support;
#[path = "../src/test_service.rs"]
mod test_service;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{Response, request};
use support::{Serve, baleen, ok};
use test_service::{Kind, TestService};

/// A replica: its process and its address.
struct Replica {
    serve: Serve,
    base: String,
}

fn start_replica(config: &Path, data: &Path, env: &BTreeMap<String, String>) -> Replica {
    let (serve, base) = Serve::start(
        &[
            std::ffi::OsStr::new("--config"),
            config.as_os_str(),
            std::ffi::OsStr::new("--data-dir"),
            data.as_os_str(),
        ],
        env,
    );
    Replica { serve, base }
}

fn get(base: &str, path: &str) -> Response {
    request(base, "GET", path, &[], None)
}

/// The index sequence and stable version of `checkout` a replica serves.
fn served(base: &str) -> (u64, Option<String>) {
    let index = get(base, "/v1/apps/shop/channels/production/index");
    if index.status == 404 {
        return (0, None);
    }
    assert_eq!(index.status, 200, "{}", index.text());
    let index = index.json();
    (
        index["signed"]["sequence"].as_u64().unwrap(),
        index["signed"]["packages"]["checkout"]["stable"]["version"]
            .as_str()
            .map(str::to_owned),
    )
}

/// Polls both replicas until both serve `version`; returns how long that took.
fn until_served(replicas: &[&Replica], version: &str) -> Duration {
    let started = Instant::now();
    let mut last = vec![0; replicas.len()];
    loop {
        let mut all = true;
        for (replica, last) in replicas.iter().zip(&mut last) {
            let (sequence, stable) = served(&replica.base);
            assert!(
                sequence >= *last,
                "index sequence went back: {last} then {sequence}"
            );
            *last = sequence;
            all &= stable.as_deref() == Some(version);
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{version} never served by every replica"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Final packs a replica built (fast ones, which every replica may build, aside).
fn final_builds(base: &str) -> u64 {
    let metrics = get(base, "/metrics").text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("baleen_pack_final_builds_total "))
        .unwrap_or_else(|| panic!("no final pack build counter in {metrics}"))
        .parse()
        .unwrap()
}

/// Polls `path` on `base` until the final pack (immutable) is served; returns the 503s seen.
/// (With the token, so that packs of releases on no channel yet can be read.)
fn until_final_pack(base: &str, token: &str, path: &str, within: Duration) -> u32 {
    let started = Instant::now();
    let mut not_ready = 0;
    let bearer = format!("Bearer {token}");
    loop {
        let pack = request(base, "GET", path, &[("Authorization", &bearer)], None);
        match pack.status {
            200 if pack
                .header("cache-control")
                .is_some_and(|c| c.contains("immutable")) =>
            {
                return not_ready;
            }
            200 => {}
            503 => not_ready += 1,
            other => panic!("{path}: {other} {}", pack.text()),
        }
        assert!(
            started.elapsed() < within,
            "{path}: no final pack within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn publish(base: &str, token: &str, build: &Path, version: &str, promote: bool) {
    let mut args = vec![
        "publish",
        build.to_str().unwrap(),
        "--app",
        "shop",
        "--package",
        "checkout",
        "--version",
        version,
        "--route",
        "https://m.example.com/checkout/",
    ];
    if promote {
        args.extend(["--channel", "production", "--create-channel"]);
    }
    ok(&baleen(
        &args,
        &[("BALEEN_SERVER", base), ("BALEEN_TOKEN", token)],
    ));
}

fn write_build(dir: &Path, page: &str, big_bytes: usize, seed: u64) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), page).unwrap();
    // Text of a small alphabet in random order: it compresses, but slowly at the final pack's
    // level, so that a large one keeps its builder busy for seconds.
    let mut state = seed.max(1);
    let big: Vec<u8> = (0..big_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b"abcdefghijklmnop"[(state >> 60) as usize]
        })
        .collect();
    std::fs::write(dir.join("assets/app.js"), big).unwrap();
}

#[test]
fn replicas_share_changes_within_a_second_and_build_each_pack_once() {
    let name = "replicas::replicas_share_changes_within_a_second_and_build_each_pack_once";
    let Some(garage) = TestService::start(Kind::Garage, name) else {
        return;
    };
    let Some(mut postgres) = TestService::start(Kind::Postgres, name) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = postgres.var("BALEEN_PG_URL").unwrap();
    let config = dir.path().join("scaled.toml");
    std::fs::write(
        &config,
        format!("[storage]\nblobs = \"s3://baleen\"\nmeta = \"{url}\"\n"),
    )
    .unwrap();
    // Every replica signs with the same key, each from a data directory of its own.
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&baleen(
        &[
            "keys",
            "generate",
            "--dir",
            data_a.join("keys").to_str().unwrap(),
        ],
        &[],
    ));
    std::fs::create_dir_all(data_b.join("keys")).unwrap();
    for entry in std::fs::read_dir(data_a.join("keys")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data_b.join("keys").join(entry.file_name())).unwrap();
    }
    let token = ok(&baleen(
        &[
            "token", "create", "--meta", &url, "--name", "ci", "--scope", "admin",
        ],
        &[],
    ))
    .trim()
    .to_owned();
    let a = start_replica(&config, &data_a, &garage.env);
    let b = start_replica(&config, &data_b, &garage.env);
    // Neither data directory holds metadata or blobs: everything is shared.
    assert!(!data_a.join("meta.sqlite3").exists());

    // Published and promoted on one, served by both.
    let build = dir.path().join("dist");
    write_build(&build, "<!doctype html><p>one</p>", 64 * 1024, 1);
    publish(&a.base, &token, &build, "1.0.0", true);
    let first = until_served(&[&a, &b], "1.0.0");
    // A second release published on the other, promoted on the first.
    // (A's own packs of 1.0.0 first, so that what it builds from here on can be told apart.)
    until_final_pack(
        &a.base,
        &token,
        "/v1/packs/checkout/1.0.0.zip",
        Duration::from_secs(120),
    );
    let built_by_a = final_builds(&a.base);
    write_build(&build, "<!doctype html><p>two</p>", 64 * 1024, 2);
    publish(&b.base, &token, &build, "2.0.0", false);
    ok(&baleen(
        &[
            "promote",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--version",
            "2.0.0",
        ],
        &[("BALEEN_SERVER", &a.base), ("BALEEN_TOKEN", &token)],
    ));
    let second = until_served(&[&a, &b], "2.0.0");
    assert!(
        first < Duration::from_secs(1) && second < Duration::from_secs(1),
        "a change reached every replica after {first:?} and {second:?}"
    );
    // Both serve the same signed bytes.
    let index = |r: &Replica| get(&r.base, "/v1/apps/shop/channels/production/index").body;
    assert_eq!(index(&a), index(&b));

    // The final packs of 2.0.0 are built by the replica it was published on; the other serves
    // its own fast packs (the same bytes) meanwhile, and builds no final one.
    let diff = "/v1/packs/checkout/1.0.0..2.0.0.zip";
    until_final_pack(&a.base, &token, diff, Duration::from_secs(120));
    until_final_pack(
        &a.base,
        &token,
        "/v1/packs/checkout/2.0.0.zip",
        Duration::from_secs(120),
    );
    assert_eq!(
        final_builds(&a.base),
        built_by_a,
        "replica A built a final pack B was building"
    );
    assert!(final_builds(&b.base) > 0);

    // With the database down, the replicas keep serving the signed index they hold (it is
    // valid for days), and refuse writes as unavailable, to be retried.
    postgres.halt();
    std::thread::sleep(Duration::from_millis(1500));
    for replica in [&a, &b] {
        let during = get(&replica.base, "/v1/apps/shop/channels/production/index");
        assert_eq!(during.status, 200, "{}", during.text());
        assert_eq!(during.body, index(&a));
    }
    let refused = request(
        &a.base,
        "POST",
        "/v1/admin/packages/checkout/channels/production",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"action":"rollback"}"#),
    );
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.code(), "meta_unavailable");
    assert!(refused.header("retry-after").is_some());
    postgres.resume();

    // A replica killed while it builds a large pack loses its lease; the other builds it.
    write_build(&build, "<!doctype html><p>three</p>", 32 * 1024 * 1024, 3);
    publish(&b.base, &token, &build, "3.0.0", false);
    // B holds the job (its publish started it); A, asked for the pack meanwhile, answers with
    // its own fast pack once built ("not ready" until then), never with a final one.
    let full = "/v1/packs/checkout/3.0.0.zip";
    let bearer = format!("Bearer {token}");
    let held = Instant::now();
    loop {
        let pack = request(&a.base, "GET", full, &[("Authorization", &bearer)], None);
        if pack.status == 200 {
            let cache = pack.header("cache-control").unwrap_or_default().to_owned();
            assert!(
                !cache.contains("immutable"),
                "A served a final pack B was building: {cache}"
            );
            break;
        }
        assert_eq!(pack.status, 503, "{}", pack.text());
        assert!(
            held.elapsed() < Duration::from_secs(30),
            "A never served its fast pack"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let fast_on_a = held.elapsed();
    let Replica { serve, .. } = b;
    let mut killed = serve;
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    let before = final_builds(&a.base);
    let started = Instant::now();
    let not_ready = until_final_pack(&a.base, &token, full, Duration::from_secs(240));
    assert!(
        final_builds(&a.base) > before,
        "A never built the final pack"
    );
    eprintln!(
        "pack of a killed builder: fast on the other replica after {fast_on_a:?}, final built \
         there after {:?} ({not_ready} answers 503)",
        started.elapsed()
    );
    drop(a);
}
